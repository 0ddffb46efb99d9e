"""Starting the job script again as a child process (a rollback's previous version, a rehearsal)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from pathlib import Path


def spawn_detached(cmd: list[str], log_file: Path) -> subprocess.Popen[bytes]:
    """Start ``cmd`` in a session of its own, output appended to ``log_file``.

    Its own session: a job started this way keeps running when the deployer that started it
    exits, or is stopped with Ctrl-C in the deployer's terminal.
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as out:
        return subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def without_flags(
    argv: Iterable[str], *, valued: Iterable[str] = (), switches: Iterable[str] = ()
) -> list[str]:
    """``argv`` minus ``switches`` and ``valued`` flags (with their values, or ``--flag=value``)."""
    valued, switches = tuple(valued), tuple(switches)
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in switches:
            pass
        elif arg in valued:
            skip = True
        elif not arg.startswith(tuple(f"{flag}=" for flag in valued)):
            out.append(arg)
    return out
