"""free_port: a loopback port below the kernel's ephemeral range, free, handed out once."""

from __future__ import annotations

import socket

from flowship._ports import LOOPBACK, _ephemeral_start, free_port


def test_ports_are_free_distinct_and_below_the_ephemeral_range() -> None:
    ports = [free_port() for _ in range(100)]
    assert len(set(ports)) == len(ports)
    assert all(10_000 <= p < _ephemeral_start() for p in ports)
    for port in ports[:10]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((LOOPBACK, port))  # free: binding it works


def test_a_taken_port_is_never_handed_out() -> None:
    taken = []
    try:
        for _ in range(50):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((LOOPBACK, free_port()))
            sock.listen()
            taken.append(sock)
        held = {s.getsockname()[1] for s in taken}
        assert not held & {free_port() for _ in range(200)}
    finally:
        for sock in taken:
            sock.close()
