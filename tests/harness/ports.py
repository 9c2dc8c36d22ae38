"""Free TCP ports on the loopback interface.

Ports are drawn at random from a band *below* the kernel's ephemeral range
(``/proc/sys/net/ipv4/ip_local_port_range``, usually 32768-60999).  A port
obtained by the usual "bind to port 0" trick lies inside the ephemeral range,
so between the moment we release it and the moment redis/postgres binds it an
outgoing client connection can grab it as its local port.  Ports below the
ephemeral range are never handed out implicitly, which makes that race
practically impossible; we still verify that the port can be bound right now.
"""

from __future__ import annotations

import random
import socket
import threading

__all__ = ["free_port", "port_is_free"]

_LOW = 20000
_lock = threading.Lock()
_issued: set[int] = set()
# Ports we never hand out even if they look free (services someone started by hand).
_RESERVED = {5432, 6379, 25, 587, 465, 80, 443, 8080}


def _ephemeral_start() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as fh:
            lo = int(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        lo = 32768
    return lo


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True if nothing listens on / is bound to ``host:port`` (TCP) right now."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        # SO_REUSEADDR like real servers do: a port in TIME_WAIT is usable for them.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
    except OSError:
        return False
    finally:
        s.close()
    return True


def free_port() -> int:
    """Return a TCP port that is currently free on 127.0.0.1.

    Never returns the same port twice within one process, and never a port of
    the reserved well-known services (5432, 6379, ...).
    """
    hi = _ephemeral_start() - 1
    lo = _LOW if hi - _LOW >= 1000 else 1024
    rng = random.SystemRandom()
    with _lock:
        for _ in range(500):
            port = rng.randint(lo, hi)
            if port in _issued or port in _RESERVED:
                continue
            if port_is_free(port):
                _issued.add(port)
                return port
        # Fall back to the kernel's choice.
        for _ in range(50):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            finally:
                s.close()
            if port not in _issued and port not in _RESERVED:
                _issued.add(port)
                return port
    raise RuntimeError("could not find a free TCP port on 127.0.0.1")
