"""timemon: a time-and-frequency synchronization monitoring agent."""

__version__ = "0.1.0"
