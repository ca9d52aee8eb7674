"""Measurement sources, one module per kind: ntp, chrony, ptp, gnss, kernel.

Timeouts inside a probe are ``async with asyncio.timeout(...)``, never
``asyncio.wait_for``: on Python 3.11, ``wait_for`` returns the awaited result when a
cancellation arrives in the same pass of the event loop as that result (CPython
gh-86296, fixed in 3.12).  The probe's task then goes on polling after the agent
cancelled it, and the agent's shutdown, or a SIGHUP that removes the source, waits for
it forever (tests/test_gnss_gpsd.py hung so once; tests/test_probe_cancel.py).
"""
