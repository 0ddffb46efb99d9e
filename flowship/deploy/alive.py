"""Is a deployment's Flink job alive? One answer for every caller: alive, dead or unknown.

Starting a version from a checkpoint, or a second copy of a job, is only safe when the one
before is known to be gone; so "cannot tell" is never taken for "gone":

* **alive**: the REST API answers with a state Flink may still run the job from: every state
  but the globally terminal ones (``RUNNING``, ``RESTARTING``, ``CREATED``, ``INITIALIZING``,
  ``FAILING``, ``CANCELLING``, ``SUSPENDED``, ``RECONCILING``).
* **dead**: the REST API answers that the job ended (``FINISHED``, ``CANCELED``, ``FAILED``) or
  does not know it (404); or, on the local target, nothing listens on the mini-cluster's REST
  port any more and the job's process (its recorded pid) is gone: the mini-cluster lived in it.
  A zombie (ended, not yet reaped by its parent) counts as gone.
* **unknown**: no answer (unreachable, timed out, an error other than 404); also, on the local
  target, a refused REST port while the job's process still exists: it runs, but its REST API
  does not answer.
"""

from __future__ import annotations

import os
import time
import urllib.error
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from flowship._log import get_logger
from flowship.deploy.rest import FlinkRest
from flowship.errors import ClusterError

log = get_logger("flowship.deploy")

#: Flink's globally terminal job states: a job in one of them never runs again.
ENDED = frozenset({"FINISHED", "CANCELED", "FAILED"})


class Verdict(StrEnum):
    """What is known of a job: alive, dead, or nothing."""

    ALIVE = "alive"
    DEAD = "dead"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Liveness:
    """A job's :class:`Verdict` and what it rests on (Flink's state, or why none is known)."""

    verdict: Verdict
    seen: str

    @property
    def alive(self) -> bool:
        """Whether the job may still run (or run again without a new submission)."""
        return self.verdict is Verdict.ALIVE

    @property
    def dead(self) -> bool:
        """Whether the job is known to be gone for good."""
        return self.verdict is Verdict.DEAD

    @property
    def unknown(self) -> bool:
        """Whether its cluster did not answer: it may or may not run."""
        return self.verdict is Verdict.UNKNOWN


def liveness(
    rest_url: str,
    job_id: str,
    *,
    local: bool = False,
    pid: int | None = None,
    timeout: float = 10.0,
) -> Liveness:
    """Ask the REST API at ``rest_url`` whether Flink job ``job_id`` is alive.

    ``local``: the job ran on the local target (a mini-cluster inside the job's own process), so
    a refused connection means that process is gone. On a session cluster it does not: the
    JobManager may come back (and with it the job). ``pid``: that process (implies ``local``);
    a refused connection is then dead only once :func:`process_alive` says it is gone, unknown
    while it still exists (it runs, but its REST API does not answer), unless it is this
    process: a mini-cluster in it that refuses connections has ended.
    """
    try:
        state = str(FlinkRest(rest_url, timeout=timeout).job(job_id)["state"])
    except ClusterError as exc:
        cause = exc.__cause__
        if isinstance(cause, urllib.error.HTTPError) and cause.code == 404:
            return Liveness(Verdict.DEAD, f"not known to the cluster at {rest_url}")
        if (local or pid is not None) and _refused(cause):
            # this very process: its mini-cluster is gone (the job ended in it), we are not
            if pid is not None and pid != os.getpid() and process_alive(pid):
                return Liveness(
                    Verdict.UNKNOWN,
                    f"its process {pid} runs but its REST API at {rest_url} does not answer "
                    "(connection refused)",
                )
            which = "" if pid is None else f", pid {pid}"
            return Liveness(
                Verdict.DEAD, f"nothing listens at {rest_url} (its process is gone{which})"
            )
        return Liveness(Verdict.UNKNOWN, str(exc))
    except (KeyError, TypeError) as exc:
        return Liveness(Verdict.UNKNOWN, f"unexpected answer from {rest_url}: {exc!r}")
    return Liveness(Verdict.DEAD if state in ENDED else Verdict.ALIVE, state)


def deployment_liveness(data: Mapping[str, Any], *, timeout: float = 10.0) -> Liveness:
    """:func:`liveness` of a ledger deployment (its merged data: ``rest_url``, ``job_id``).

    The local target records the job process's ``pid``; a session cluster deployment does not.
    With a ``pid``, a refused REST port is dead only once that process is gone (a zombie counts
    as gone); while it exists the answer is unknown: it runs, but its REST API does not answer.
    """
    if not data.get("rest_url") or not data.get("job_id"):
        return Liveness(Verdict.UNKNOWN, "the ledger records no Flink job id or REST URL for it")
    pid = int(data["pid"]) if data.get("pid") else None
    pid_gone = pid is not None and not process_alive(pid, data.get("pid_start"))
    return liveness(
        str(data["rest_url"]),
        str(data["job_id"]),
        local=pid_gone,
        pid=None if pid_gone else pid,
        timeout=timeout,
    )


def process_start(pid: int | None = None) -> str | None:
    """What tells process ``pid`` (this one by default) from a later one given the same pid.

    ``<boot id>:<start time in clock ticks since boot>`` from ``/proc``; None where there is no
    ``/proc`` (the pid alone is all that can be told there).
    """
    try:
        stat = Path(f"/proc/{'self' if pid is None else pid}/stat").read_text()
    except OSError:
        return None
    return _start_of(stat)


def _start_of(stat: str) -> str | None:
    """:func:`process_start` from a ``/proc/PID/stat`` text already read."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    return f"{boot}:{fields[19]}" if len(fields) > 19 else None


def process_alive(pid: int, start: str | None = None) -> bool:
    """Whether process ``pid`` still exists; a zombie (ended, not yet reaped) does not count.

    ``start``: what :func:`process_start` said of the process when it was recorded; a process
    with that pid now that started at another time (or before another boot) is another one,
    given the pid after the recorded one ended, and does not count either.

    ``kill(pid, 0)`` tells whether the pid is taken (someone else's process: it is); a zombie
    still takes it, so where ``/proc`` is there its state (``Z``, or ``X`` when being reaped)
    is read too.
    """
    if pid <= 0:
        return False  # 0 and below name process groups, never one job's process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process; its /proc entry may be hidden from us
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return not Path("/proc/self/stat").exists()  # reaped since, unless there is no /proc
    except OSError:
        return True  # kill(0) is all that can be told
    fields = stat.rsplit(")", 1)[-1].split()
    if fields and fields[0] in ("Z", "X"):
        return False
    return start is None or _start_of(stat) in (None, start)


def _refused(cause: BaseException | None) -> bool:
    reason = cause.reason if isinstance(cause, urllib.error.URLError) else cause
    return isinstance(reason, ConnectionRefusedError)


#: Seconds a cancelled job gets to be reported ended (CANCELED, or gone) by Flink.
CANCEL_TIMEOUT = 120.0


def cancel_confirmed(
    rest_url: str, job_id: str, *, local: bool = False, timeout: float = CANCEL_TIMEOUT
) -> str:
    """Cancel Flink job ``job_id`` and wait until Flink reports it ended; what was seen.

    Done when :func:`~flowship.deploy.alive.liveness` says dead: a terminal state (CANCELED,
    or FAILED / FINISHED if it ended first), a 404, or on the local target a REST port nothing
    listens on (the mini-cluster went with its job). Raises ClusterError when that is not seen
    within ``timeout``: an error answer to the cancel, or no answer at all, is never taken for
    a cancelled job.
    """
    rest = FlinkRest(rest_url, timeout=10.0)
    deadline = time.monotonic() + timeout
    error = ""
    while True:
        alive = liveness(rest_url, job_id, local=local, timeout=10.0)
        if alive.dead:
            log.info("upgrade.cancelled", job_id=job_id, seen=alive.seen)
            return alive.seen
        if alive.alive and alive.seen != "CANCELLING":
            try:
                rest.cancel(job_id)  # asked again until it is seen ending; never ignored
            except ClusterError as exc:
                error = str(exc)
        elif alive.unknown:
            error = alive.seen
        if time.monotonic() > deadline:
            msg = (
                f"Flink job {job_id} at {rest_url} is not reported cancelled after "
                f"{timeout:.0f}s (last seen: {alive.seen}; {error or 'no error'})"
            )
            raise ClusterError(msg)
        time.sleep(0.5)
