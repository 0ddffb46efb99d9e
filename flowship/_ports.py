"""Picking a free TCP port on loopback for a service that is about to bind it."""

from __future__ import annotations

import random
import socket
from pathlib import Path

LOOPBACK = "127.0.0.1"

#: Where :func:`free_port` looks: above the well-known ports, below the ephemeral range.
_LOWEST_PORT = 10_000
_handed_out: set[int] = set()


def _ephemeral_start() -> int:
    """The first port of the kernel's ephemeral range (Linux; the IANA range elsewhere)."""
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
        return int(text.split()[0])
    except (OSError, ValueError, IndexError):
        return 49_152


def free_port() -> int:
    """Return a TCP port on the loopback interface that is free right now.

    Chosen below the kernel's ephemeral range: a port the kernel hands out (``bind(0)``) can be
    taken as the local port of any outgoing connection (a Kafka client's, say) before the
    service it was meant for binds it, which CI saw as a mini-cluster failing to start its REST
    endpoint. A port is handed out once per process; bind(0) is the fallback.
    """
    top = _ephemeral_start()
    if top - _LOWEST_PORT > 1_000:
        for _ in range(200):
            port = random.randrange(_LOWEST_PORT, top)
            if port in _handed_out:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                try:
                    sock.bind((LOOPBACK, port))
                except OSError:
                    continue
            _handed_out.add(port)
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])
