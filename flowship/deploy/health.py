"""Is a freshly started job healthy? Watched over the Flink REST API within a time window.

"Stable" means, within the window: the job is RUNNING, at least ``min_checkpoints`` checkpoints
completed while it was watched, no failure is in its exception history (a failure means a restart
under a restart strategy), and records flowed through it (unless its input was idle: then the
report says so). The first failure seen ends the watch early with the exception's root cause.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from flowship.deploy.ledger import Entry, merged
from flowship.deploy.machine import Step
from flowship.deploy.rest import FlinkRest
from flowship.errors import ClusterError


@dataclass(frozen=True)
class Health:
    """The outcome of a health watch."""

    stable: bool
    reason: str
    checkpoints: int = 0
    failures: int = 0
    records: int = 0
    waited_s: float = 0.0


def verdict_open_since(entries: Sequence[Entry]) -> float | None:
    """When a deployment's health watch began, if its verdict is still open (else None).

    An upgrade (or ``flowship rollback``) deployment, one that names a ``previous`` one, is
    watched from RUNNING until STABLE or FAILED; its last step RUNNING means no verdict yet:
    its deployer watches it, or died watching it (the same command run again resumes the
    watch). A first deploy is never watched: RUNNING is where it stays.
    """
    if entries and entries[-1].step is Step.RUNNING and merged(entries).get("previous"):
        return entries[-1].at
    return None


def _records(job: dict[str, Any]) -> int:
    return sum(
        int(v.get("metrics", {}).get("read-records", 0) or 0) for v in job.get("vertices", [])
    )


def _failure(rest: FlinkRest, job_id: str) -> tuple[int, str]:
    raw = rest.exceptions(job_id)
    entries = (raw.get("exceptionHistory") or {}).get("entries") or []
    if not entries:
        return 0, ""
    first = entries[-1]
    text = str(first.get("stacktrace") or first.get("exceptionName") or "unknown failure")
    root = [line.strip() for line in text.splitlines() if line.strip()]
    causes = [line for line in root if line.startswith("Caused by:")]
    return len(entries), (causes[-1] if causes else root[0])[:500]


def hand_over(
    rest: FlinkRest, job_id: str, budget_s: float = 2.0, wait_s: float = 60.0
) -> tuple[int, float | None]:
    """Checkpoint a just-started job back to back for ``budget_s``.

    Returns how many completed, and after how many seconds the first did (None: none did).

    An exactly-once sink's output becomes visible downstream only when a checkpoint completes.
    Left to its schedule, a new version's first checkpoint comes up to one interval after its
    tasks run, and downstream waits that long for its first output after an upgrade. So the
    deployer triggers checkpoints one after the other from the moment the tasks accept them
    (up to ``wait_s``) until ``budget_s`` after the first one completed; then the schedule
    takes over. Failures are left to the health watch that follows.
    """
    started = time.monotonic()
    deadline = started + wait_s
    first: float | None = None
    completed = 0
    while time.monotonic() < (deadline if first is None else first + budget_s):
        try:
            rest.checkpoint_now(job_id, timeout=10.0)
        except ClusterError:
            if _job_failed(rest, job_id):
                break  # a failing job takes no checkpoint: the health watch says why, now
            time.sleep(0.1)  # tasks still starting, or a scheduled checkpoint in progress
            continue
        completed += 1
        first = time.monotonic() if first is None else first
    return completed, None if first is None else first - started


def _job_failed(rest: FlinkRest, job_id: str) -> bool:
    """Whether the job failed (its exception history has an entry) or is no longer running."""
    try:
        return bool(_failure(rest, job_id)[0]) or rest.job(job_id)["state"] != "RUNNING"
    except ClusterError:
        return True


def watch(
    rest: FlinkRest,
    job_id: str,
    window_s: float,
    min_checkpoints: int = 2,
    poll_s: float = 1.0,
    *,
    count_from_start: bool = False,
) -> Health:
    """Watch ``job_id`` for up to ``window_s`` seconds; return as soon as it is known.

    Only checkpoints that complete during the watch count (not, say, the hand-over ones);
    with ``count_from_start`` (a watch taken up again after its deployer died) every checkpoint
    the job completed counts, since the ones completed while nobody watched are part of its
    window. Failures and records always count from the job's start.
    """
    started = time.monotonic()
    checkpoints = records = 0
    before: int | None = 0 if count_from_start else None
    while True:
        waited = time.monotonic() - started
        try:
            job = rest.job(job_id)
            failures, reason = _failure(rest, job_id)
            completed = int(rest.checkpoints(job_id)["counts"]["completed"])
            before = completed if before is None else before
            checkpoints = completed - before
        except ClusterError as exc:
            return Health(
                False,
                f"the job's REST API stopped answering: {exc}",
                checkpoints,
                0,
                records,
                waited,
            )
        if failures:
            return Health(
                False,
                f"the job failed {failures}x: {reason}",
                checkpoints,
                failures,
                records,
                waited,
            )
        if job["state"] != "RUNNING":
            return Health(False, f"the job is {job['state']}", checkpoints, 0, records, waited)
        total = _records(job)
        records = total  # since the job started: hand-over checkpoints' records count too
        if checkpoints >= min_checkpoints and records > 0:
            return Health(
                True,
                f"{checkpoints} checkpoints, {records} records, no failures",
                checkpoints,
                0,
                records,
                waited,
            )
        if waited >= window_s:
            if checkpoints >= min_checkpoints:
                return Health(
                    True,
                    f"{checkpoints} checkpoints, no failures; no records "
                    f"flowed in {window_s:.0f}s (idle input)",
                    checkpoints,
                    0,
                    0,
                    waited,
                )
            return Health(
                False,
                f"only {checkpoints} of {min_checkpoints} checkpoints "
                f"completed within {window_s:.0f}s",
                checkpoints,
                0,
                records,
                waited,
            )
        time.sleep(poll_s)
