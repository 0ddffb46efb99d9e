"""Is a deployment's Flink job alive? One answer for every caller: alive, dead or unknown.

Starting a version from a checkpoint, or a second copy of a job, is only safe when the one
before is known to be gone; so "cannot tell" is never taken for "gone":

* **alive**: the REST API answers with a state Flink may still run the job from: every state
  but the globally terminal ones (``RUNNING``, ``RESTARTING``, ``CREATED``, ``INITIALIZING``,
  ``FAILING``, ``CANCELLING``, ``SUSPENDED``, ``RECONCILING``).
* **dead**: the REST API answers that the job ended (``FINISHED``, ``CANCELED``, ``FAILED``) or
  does not know it (404); or, on the local target, nothing listens on the mini-cluster's REST
  port any more (it lived in the job's own process, which is gone).
* **unknown**: no answer (unreachable, timed out, an error other than 404).
"""

from __future__ import annotations

import time
import urllib.error
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
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


def liveness(rest_url: str, job_id: str, *, local: bool = False, timeout: float = 10.0) -> Liveness:
    """Ask the REST API at ``rest_url`` whether Flink job ``job_id`` is alive.

    ``local``: the job ran on the local target (a mini-cluster inside the job's own process), so
    a refused connection means that process is gone. On a session cluster it does not: the
    JobManager may come back (and with it the job).
    """
    try:
        state = str(FlinkRest(rest_url, timeout=timeout).job(job_id)["state"])
    except ClusterError as exc:
        cause = exc.__cause__
        if isinstance(cause, urllib.error.HTTPError) and cause.code == 404:
            return Liveness(Verdict.DEAD, f"not known to the cluster at {rest_url}")
        if local and _refused(cause):
            return Liveness(Verdict.DEAD, f"nothing listens at {rest_url} (its process is gone)")
        return Liveness(Verdict.UNKNOWN, str(exc))
    except (KeyError, TypeError) as exc:
        return Liveness(Verdict.UNKNOWN, f"unexpected answer from {rest_url}: {exc!r}")
    return Liveness(Verdict.DEAD if state in ENDED else Verdict.ALIVE, state)


def deployment_liveness(data: Mapping[str, Any], *, timeout: float = 10.0) -> Liveness:
    """:func:`liveness` of a ledger deployment (its merged data: ``rest_url``, ``job_id``).

    The local target records the job process's ``pid``; a session cluster deployment does not.
    """
    if not data.get("rest_url") or not data.get("job_id"):
        return Liveness(Verdict.UNKNOWN, "the ledger records no Flink job id or REST URL for it")
    return liveness(
        str(data["rest_url"]), str(data["job_id"]), local=bool(data.get("pid")), timeout=timeout
    )


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
