"""Kernel packet timestamps for UDP sockets (Linux).

Python's ``socket`` module does not export the ``SO_TIMESTAMPING`` family, so
the numbers come from ``<asm-generic/socket.h>`` and ``<linux/net_tstamp.h>``.

Receive stamps are taken by the kernel when the datagram reaches the socket
layer; transmit stamps (software, ``SOF_TIMESTAMPING_TX_SOFTWARE``) when the
packet is handed to the device, and are read back from the socket's error
queue.  Both are CLOCK_REALTIME, in integer nanoseconds, so Python's own
scheduling delays never enter a measured offset.

A socket that sends more than one datagram tells their transmit stamps apart by
``SOF_TIMESTAMPING_OPT_ID``: the kernel numbers the datagrams a socket sends from
0 and puts that number in ``ee_data`` of the ``sock_extended_err`` that comes
with each stamp (Linux ``Documentation/networking/timestamping.rst``).
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass

# <asm-generic/socket.h>
SO_TIMESTAMPNS = 35
SO_TIMESTAMPING = 37
SCM_TIMESTAMPNS = SO_TIMESTAMPNS
SCM_TIMESTAMPING = SO_TIMESTAMPING

# <linux/net_tstamp.h>
SOF_TIMESTAMPING_TX_SOFTWARE = 1 << 1
SOF_TIMESTAMPING_RX_SOFTWARE = 1 << 3
SOF_TIMESTAMPING_SOFTWARE = 1 << 4
SOF_TIMESTAMPING_OPT_ID = 1 << 7
SOF_TIMESTAMPING_OPT_TSONLY = 1 << 11

# <linux/in.h>, <linux/in6.h>: the control message carrying struct sock_extended_err
IP_RECVERR = 11
IPV6_RECVERR = 25
_EXTENDED_ERR = struct.Struct("=IBBBBII")  # ee_errno, origin, type, code, pad, info, data

# <bits/socket.h>
MSG_ERRQUEUE = 0x2000
_ERRQUEUE_NOWAIT = MSG_ERRQUEUE | int(socket.MSG_DONTWAIT)  # a plain int: IntFlag's | is slow

_TIMESPEC = struct.Struct("@qq")  # struct timespec on 64-bit Linux: tv_sec, tv_nsec
_ANCILLARY_SIZE = 512


@dataclass(slots=True)
class Received:
    """One datagram with the kernel's receive time (ns since the Unix epoch).
    Not frozen: see ``ntp_packet.ServerReply``."""

    data: bytes
    address: tuple
    rx_ns: int
    kernel_stamp: bool


def _timespec_ns(raw: bytes, index: int = 0) -> int:
    sec, nsec = _TIMESPEC.unpack_from(raw, index * _TIMESPEC.size)
    return sec * 1_000_000_000 + nsec


def enable_timestamps(sock: socket.socket) -> bool:
    """Ask for software RX and TX stamps; fall back to RX-only ``SO_TIMESTAMPNS``.

    Returns True when transmit stamps were enabled.
    """
    flags = (
        SOF_TIMESTAMPING_RX_SOFTWARE
        | SOF_TIMESTAMPING_TX_SOFTWARE
        | SOF_TIMESTAMPING_SOFTWARE
        | SOF_TIMESTAMPING_OPT_TSONLY
        | SOF_TIMESTAMPING_OPT_ID
    )
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPING, flags)
        return True
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        return False


def _stamp_from_ancillary(ancdata: list) -> int | None:
    for level, kind, raw in ancdata:
        if level != socket.SOL_SOCKET:
            continue
        if kind == SCM_TIMESTAMPING and len(raw) >= _TIMESPEC.size:
            # struct scm_timestamping { timespec ts[3]; }: ts[0] is the software stamp.
            stamp = _timespec_ns(raw, 0)
            if stamp:
                return stamp
        elif kind == SCM_TIMESTAMPNS and len(raw) >= _TIMESPEC.size:
            return _timespec_ns(raw, 0)
    return None


def receive(sock: socket.socket, bufsize: int = 2048) -> Received:
    """Read one datagram (non-blocking socket) with its kernel receive stamp.

    Raises BlockingIOError when nothing is waiting.
    """
    data, ancdata, _flags, address = sock.recvmsg(bufsize, _ANCILLARY_SIZE)
    stamp = _stamp_from_ancillary(ancdata)
    if stamp is None:
        # No kernel stamp (an unusual kernel): the best we have, taken right now.
        return Received(data, address, time.clock_gettime_ns(time.CLOCK_REALTIME), False)
    return Received(data, address, stamp, True)


def _send_id(ancdata: list) -> int | None:
    """``ee_data`` of the error-queue entry: the datagram's number (OPT_ID)."""
    for level, kind, raw in ancdata:
        if ((level == socket.IPPROTO_IP and kind == IP_RECVERR)
                or (level == socket.IPPROTO_IPV6 and kind == IPV6_RECVERR)) \
                and len(raw) >= _EXTENDED_ERR.size:
            return _EXTENDED_ERR.unpack_from(raw)[6]
    return None


def read_tx_stamp(sock: socket.socket, send_id: int | None = None) -> int | None:
    """Drain the error queue and return a software transmit stamp, if there is one.

    With ``send_id``, only the stamp of that datagram (numbered from 0 since
    ``enable_timestamps``) counts, and reading stops at it: the queue is FIFO, so
    what came before (a late stamp, an ICMP error) is drained, and the read that
    would only find the queue empty is saved (one system call and an exception a
    poll).  Without ``send_id``, the queue is drained and the newest stamp returned.
    """
    stamp = None
    while True:
        try:
            _data, ancdata, _flags, _addr = sock.recvmsg(
                64, _ANCILLARY_SIZE, _ERRQUEUE_NOWAIT)
        except (BlockingIOError, InterruptedError):
            return stamp
        except OSError:
            return stamp
        found = _stamp_from_ancillary(ancdata)
        if found is not None:
            if send_id is None:
                stamp = found
            elif _send_id(ancdata) == send_id:
                return found
