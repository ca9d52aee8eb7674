"""timemon: a time-and-frequency synchronization monitoring agent."""

import os

__version__ = "0.1.0"

# numpy's OpenBLAS starts a thread per core for a large dot product; on the agent's
# short vectors that only adds spinning threads and, with the other cores busy, stalls
# of 20-200 ms (measured on bench/live_stats.py).  One thread unless the user says.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
