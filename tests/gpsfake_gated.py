"""gpsfake with a start gate: Debian's gpsd, run by gpsfake's own library (gps.fake,
python3-gps), playing a capture once, but only after a line arrives on stdin.

Plain gpsfake starts playing as soon as its gpsd listens, so on a stalled machine a
short capture can be over before a test's clients are watching. Its -i (a prompt per
packet) would gate it, but gpsfake 3.22 crashes with -i on binary captures (its
hexdump calls ord() on bytes). Run with the interpreter gpsfake itself uses:

    python3 gpsfake_gated.py PORT CYCLE_SECONDS CAPTURE
"""

import sys
import threading
import time

from gps import fake


def main() -> None:
    port, cycle, capture = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
    start = threading.Event()

    def go(index: int, device: fake.FakeGPS) -> bool:
        """gpsfake's go predicate: False once every packet was written (play once)."""
        if index >= len(device.testload.sentences):
            return False
        start.wait()
        time.sleep(cycle)
        return True

    session = fake.TestSession(port=port, options="-n")  # -n: gpsd opens it at once
    session.spawn()
    session.gps_add(capture, speed=4800, pred=go, oneshot=True)  # gpsfake's default
    threading.Thread(target=lambda: (sys.stdin.readline(), start.set()), daemon=True).start()
    session.run()


if __name__ == "__main__":
    main()
