"""Is a freshly started job healthy? Watched over the Flink REST API within a time window.

"Stable" means, within the window: the job is RUNNING, at least ``min_checkpoints`` checkpoints
completed while it was watched, no failure is in its exception history (a failure means a restart
under a restart strategy), it was watched for at least the soak time, and its output holds up
against the previous version's: the share of its input that goes to dead letters, the outputs it
writes per input record (both compared with the previous version's, measured just before it
was stopped), its consumer lag, which must not keep growing, and its sources' backpressure,
which must not stay high where the previous version's was not. Those come from the Flink
metrics of flowship's own operators (:class:`Flow`); the thresholds are settings
(:class:`HealthThresholds`, docs/concepts/deployments.md). An input that stays idle, or too
small to judge, is said so in the verdict. The first failure seen ends the watch early with the
exception's root cause; an output problem ends it once it has lasted the soak time.

A failure is the version's own unless Flink's words for it say the platform failed under the
job (:func:`platform_fault`: a TaskManager lost, a connection between tasks dropped with it, no
slots). Flink recovers from those by itself, from the job's latest checkpoint; the watch pauses
while it does (its window and soak start over once every task runs again) and rolls back only
if the platform does not recover within ``platform_grace_s``, or fails more than
``max_platform_failures`` times under this one version.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
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
    #: what its operators counted, when the metrics could be read
    flow: Flow | None = None
    #: the platform's failures Flink recovered the job from during the watch (root causes)
    platform_failures: tuple[str, ...] = ()

    def observed(self) -> dict[str, Any]:
        """What the ledger records of the watch with any verdict: its flow, platform failures."""
        facts: dict[str, Any] = {} if self.flow is None else {"flow": self.flow.to_json()}
        if self.platform_failures:  # what Flink recovered the job from, not held against it
            facts["platform_failures"] = list(self.platform_failures)
        return facts


#: Flink metric ids (summed over subtasks) of flowship's operators, by what they count. The
#: operators' names are flowship's (``Source: kafka:<uid>``, ``kafka:<topic>: Writer``,
#: ``dead-letter:<topic>: Writer``), as Flink's REST API spells them in metric ids.
_FLOW_METRICS = {
    "inputs": re.compile(r"^Source__kafka_.+\.numRecordsIn$"),
    "outputs": re.compile(r"^kafka_.+__Writer\.numRecordsIn$"),
    "dead_letters": re.compile(r"^dead-letter_.+__Writer\.numRecordsIn$"),
    "lag": re.compile(r"^Source__kafka_.+\.pendingRecords$"),
}
#: the task metric (per subtask, ms a second) read of a Kafka source's vertex for its backpressure
_BACKPRESSURE = "backPressuredTimeMsPerSecond"


@dataclass(frozen=True)
class Flow:
    """What a version's flowship operators counted since its tasks started (Flink's metrics).

    ``lag`` is what its Kafka sources have yet to read (None: not reported yet).
    ``backpressure`` is the share of time its most back-pressured Kafka source subtask waited
    for buffers downstream (Flink's ``backPressuredTimeMsPerSecond``, an average over its last
    minute; None: not reported). ``lag_rate``: by how many records a second the lag grew over
    the seconds before this reading (a previous version's, read twice before it was stopped;
    None: not measured).
    """

    inputs: int = 0
    outputs: int = 0
    dead_letters: int = 0
    lag: int | None = None
    backpressure: float | None = None
    lag_rate: float | None = None

    @property
    def dead_letter_rate(self) -> float:
        """Dead letters per input record."""
        return self.dead_letters / self.inputs if self.inputs else 0.0

    @property
    def output_ratio(self) -> float:
        """Output records per input record."""
        return self.outputs / self.inputs if self.inputs else 0.0

    def to_json(self) -> dict[str, Any]:
        """For the ledger: the counts and the two rates."""
        return {
            "inputs": self.inputs,
            "outputs": self.outputs,
            "dead_letters": self.dead_letters,
            "lag": self.lag,
            "backpressure": self.backpressure,
            "lag_rate": None if self.lag_rate is None else round(self.lag_rate, 1),
            "dead_letter_rate": round(self.dead_letter_rate, 4),
            "output_ratio": round(self.output_ratio, 4),
        }

    @classmethod
    def from_json(cls, data: Any) -> Flow | None:
        """The recorded form back (None for a missing or malformed record)."""
        if not isinstance(data, Mapping):
            return None
        try:
            lag, pressure, rate = data.get("lag"), data.get("backpressure"), data.get("lag_rate")
            return cls(
                int(data["inputs"]),
                int(data["outputs"]),
                int(data["dead_letters"]),
                None if lag is None else int(lag),
                None if pressure is None else float(pressure),
                None if rate is None else float(rate),
            )
        except (KeyError, TypeError, ValueError):
            return None


def read_flow(
    rest: FlinkRest, job_id: str, vertices: Sequence[Mapping[str, Any]] | None = None
) -> Flow:
    """The job's :class:`Flow` now, from its vertices' subtask metrics (ClusterError if not).

    ``vertices``: the job's, from a ``GET /jobs/:id`` the caller just made (else asked here).
    """
    if vertices is None:
        vertices = rest.job(job_id).get("vertices", [])
    totals = dict.fromkeys(_FLOW_METRICS, 0.0)
    lag_seen = False
    pressure: float | None = None
    # downstream first: the counts only grow, so a source read last has counted at least what
    # its outputs and dead letters were made of (Flink lists the vertices sources first)
    for vertex in reversed(vertices):
        ids = [m["id"] for m in rest.subtask_metrics(job_id, vertex["id"])]
        wanted = [i for i in ids if any(p.match(i) for p in _FLOW_METRICS.values())]
        if not wanted:
            continue
        if _BACKPRESSURE in ids and any(_FLOW_METRICS["inputs"].match(i) for i in wanted):
            wanted.append(_BACKPRESSURE)  # a Kafka source's vertex
        for metric in rest.subtask_metrics(job_id, vertex["id"], wanted):
            if metric["id"] == _BACKPRESSURE:
                most = metric.get("max")
                if most is not None:
                    share = min(max(float(most) / 1000.0, 0.0), 1.0)
                    pressure = share if pressure is None else max(pressure, share)
                continue
            value, least = metric.get("sum"), metric.get("min")
            if value is None:
                continue
            for name, pattern in _FLOW_METRICS.items():
                if not pattern.match(metric["id"]):
                    continue
                if name == "lag":
                    if least is not None and float(least) < 0:
                        continue  # a reader that does not know its lag yet reports -1
                    lag_seen = True
                totals[name] += float(value)
    return Flow(
        int(totals["inputs"]),
        int(totals["outputs"]),
        int(totals["dead_letters"]),
        int(totals["lag"]) if lag_seen else None,
        pressure,
    )


#: A version that started less than this long ago may simply not have reported its metrics yet
#: (Flink's REST API caches them, 10 s by default), or still have its first records in flight.
BASELINE_YOUNG_MS = 60_000
#: How long a young version's counts are read again before they are taken as they are.
BASELINE_WAIT_S = 12.0
#: A young version's counts are taken at once when it wrote at least this many outputs per
#: input (one that writes fewer by design is read until BASELINE_WAIT_S)
BASELINE_SETTLED_RATIO = 0.9


def baseline_flow(rest_url: str, job_id: str, wait_s: float = BASELINE_WAIT_S) -> Flow | None:
    """The running version's flow just before it is stopped; None when it cannot be read.

    A version that started less than a minute ago (one an automatic rollback just started
    again, say) and has counted no input, or outputs for few of its inputs, is read again for up
    to ``wait_s`` (:func:`settled_flow`): Flink reports metrics late and a cold pipeline's first
    records are still in flight, and a baseline of zero counts would leave the new version's
    output ratio and dead-letter rate unjudged. A long-running idle version is not waited for.
    """
    try:
        return settled_flow(FlinkRest(rest_url), job_id, wait_s)
    except ClusterError:
        return None


#: The least time between two readings of the previous version for its lag trend.
LAG_TREND_MIN_S = 1.0


def with_lag_trend(earlier: Flow | None, seconds: float, later: Flow) -> Flow:
    """``later`` with its lag's growth a second since ``earlier``, ``seconds`` before it.

    Left unmeasured (``lag_rate`` None) when either lag is unknown, the readings are too close
    together, or the same (Flink's REST API served its cached metrics twice).
    """
    if (
        earlier is None
        or earlier.lag is None
        or later.lag is None
        or seconds < LAG_TREND_MIN_S
        or earlier == later
    ):
        return later
    return replace(later, lag_rate=(later.lag - earlier.lag) / seconds)


def settled_flow(rest: FlinkRest, job_id: str, wait_s: float, poll_s: float = 1.0) -> Flow:
    """:func:`read_flow`, read again for up to ``wait_s`` while a young job counts nothing yet.

    Nothing: no input, or fewer outputs than ``BASELINE_SETTLED_RATIO`` per input (its first
    records are still in flight).
    """
    deadline = time.monotonic() + wait_s
    while True:
        flow = read_flow(rest, job_id)
        # outputs lag inputs in a job just started (its first records are still in flight)
        settled = flow.inputs > 0 and flow.output_ratio >= BASELINE_SETTLED_RATIO
        if settled or time.monotonic() >= deadline:
            return flow
        if int(rest.job(job_id).get("duration", BASELINE_YOUNG_MS)) >= BASELINE_YOUNG_MS:
            return flow  # running long with no input: idle, not late
        time.sleep(poll_s)


@dataclass(frozen=True)
class HealthThresholds:
    """How a new version's output is judged: the ``health_*`` settings (docs/concepts)."""

    #: the least time a version is watched before it can be called stable; also how long an
    #: output problem must last before it is the version's verdict
    soak_s: float = 10.0
    #: input records the version must have read before its output is judged
    min_inputs: int = 100
    #: how much more of its input may go to dead letters than the previous version's share
    max_dead_letter_increase: float = 0.05
    #: the least outputs per input, as a fraction of the previous version's (0: not judged)
    min_output_ratio: float = 0.5
    #: how many records the consumer lag may grow by over ``soak_s`` (0: not judged)
    max_lag_growth: int = 10_000
    #: the share of time a Kafka source subtask may wait for buffers downstream (Flink's
    #: backpressure, averaged over its last minute) while the previous version's stayed below
    max_backpressure: float = 0.8
    #: how long backpressure above ``max_backpressure``, not falling and with a lag that does
    #: not shrink, means the version does not keep up (0: not judged); above the longest the
    #: job takes to catch up after a hand-over
    backpressure_s: float = 30.0
    #: how long the watch waits, paused, for Flink to recover the job from a platform failure
    platform_grace_s: float = 300.0
    #: platform failures tolerated in one watch: one more is the version's (it may be what takes
    #: its TaskManagers down, e.g. by their memory)
    max_platform_failures: int = 2


def back_pressured(policy: HealthThresholds, baseline: Flow | None, flow: Flow) -> bool:
    """Whether ``flow``'s sources are back-pressured beyond the limit, where that is judged."""
    if policy.backpressure_s <= 0 or flow.backpressure is None:
        return False
    if baseline is not None and (baseline.backpressure or 0.0) >= policy.max_backpressure:
        return False  # the input outran the previous version as well
    return flow.backpressure >= policy.max_backpressure


def backpressure_problem(
    policy: HealthThresholds,
    baseline: Flow | None,
    readings: Sequence[tuple[float, Flow]],
    waited: float,
) -> str | None:
    """Whether the version's sources stayed back-pressured for ``backpressure_s`` (or None).

    ``readings``: (seconds into the watch, :class:`Flow`) of the watch so far. Back-pressured
    means above ``max_backpressure`` in every reading of the last ``backpressure_s`` (one at
    or before its start included, so the whole span was seen), not falling over it, and its
    lag not shrinking: a version catching up after the hand-over is back-pressured too, until
    it has caught up, while its backpressure falls (Flink averages it over a minute) or its lag
    shrinks. Not judged when the previous version's sources were back-pressured as much: the
    input outran it too, and nothing says the new version is the slower one.
    """
    if not readings or not back_pressured(policy, baseline, readings[-1][1]):
        return None
    start = waited - policy.backpressure_s
    earlier = [(when, flow) for when, flow in readings if when <= start]
    if not earlier:
        return None
    span = [earlier[-1][1]] + [flow for when, flow in readings if when > start]
    pressures = [flow.backpressure for flow in span]
    if any(p is None or p < policy.max_backpressure for p in pressures):
        return None
    first, last = span[0], span[-1]
    assert first.backpressure is not None and last.backpressure is not None
    if last.backpressure < first.backpressure - 0.05:
        return None  # falling: it caught up
    if first.lag is not None and last.lag is not None and last.lag < first.lag:
        return None  # its lag shrinks: it catches up
    before = (
        ""
        if baseline is None or baseline.backpressure is None
        else f"; the previous version's: {baseline.backpressure:.0%}"
    )
    return (
        f"its Kafka sources waited for its operators {last.backpressure:.0%} of the time, "
        f"back-pressured above {policy.max_backpressure:.0%} for {policy.backpressure_s:.0f}s "
        f"with a lag that did not shrink{before}: it does not keep up with its input"
    )


def output_problems(
    policy: HealthThresholds, baseline: Flow | None, flow: Flow, lag_before: int | None
) -> list[str]:
    """What is wrong with a version's output compared with the previous version's (or [])."""
    problems = []
    # the previous version's lag grew this fast too (the input outran it): not held against it
    trend = max(baseline.lag_rate or 0.0, 0.0) if baseline is not None else 0.0
    allowed = policy.max_lag_growth + trend * policy.soak_s
    if (
        policy.max_lag_growth > 0
        and lag_before is not None
        and flow.lag is not None
        and flow.lag - lag_before > allowed
    ):
        before = (
            f"; the previous version's grew {trend:.0f} records a second before the upgrade"
            if trend > 0
            else ""
        )
        problems.append(
            f"its consumer lag grew from {lag_before} to {flow.lag} records in "
            f"{policy.soak_s:.0f}s (more than {allowed:.0f}{before}): it does not keep up "
            "with its input"
        )
    if flow.inputs < policy.min_inputs:
        return problems
    base_rate = baseline.dead_letter_rate if baseline is not None else 0.0
    if flow.dead_letter_rate > base_rate + policy.max_dead_letter_increase:
        problems.append(
            f"{flow.dead_letter_rate:.1%} of its input went to dead-letter topics "
            f"({flow.dead_letters} of {flow.inputs} records); the previous version's share was "
            f"{base_rate:.1%}"
        )
    if (
        baseline is not None
        and policy.min_output_ratio > 0
        and baseline.output_ratio > 0
        and flow.output_ratio < baseline.output_ratio * policy.min_output_ratio
    ):
        problems.append(
            f"it wrote {flow.output_ratio:.2f} outputs per input record ({flow.outputs} for "
            f"{flow.inputs}); the previous version wrote {baseline.output_ratio:.2f}"
        )
    return problems


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


#: How Flink words a failure of the platform under a job rather than of the job's own code: a
#: TaskManager lost (killed, its host gone, its heartbeat missed), a connection between tasks
#: dropped with it, no slots to run on, a JobManager that lost its leadership. Matched on the
#: failure's own stack trace (not on what other tasks reported at the same time).
PLATFORM_FAULTS = re.compile(
    "|".join(
        [
            r"TaskManager with id \S+ is no longer reachable",
            r"Heartbeat of TaskManager with id \S+ timed out",
            r"TaskExecutor \S+ (?:has been )?disconnected",
            r"The TaskExecutor is shutting down",
            r"Connection unexpectedly closed by remote task manager",
            r"Lost connection to task manager",
            r"\.NoResourceAvailableException",
            r"\.PartitionNotFoundException",
            r"JobManager responsible for \S+ lost the leadership",
        ]
    )
)
_JOB_ENDED = frozenset({"FAILED", "CANCELED", "CANCELLING", "FINISHED", "SUSPENDED", "FAILING"})


def platform_fault(entry: Mapping[str, Any]) -> bool:
    """Whether an exception-history entry says the platform failed, not the job's code."""
    text = f"{entry.get('exceptionName') or ''}\n{entry.get('stacktrace') or ''}"
    return PLATFORM_FAULTS.search(text) is not None


def _root_cause(entry: Mapping[str, Any]) -> str:
    text = str(entry.get("stacktrace") or entry.get("exceptionName") or "unknown failure")
    root = [line.strip() for line in text.splitlines() if line.strip()] or ["unknown failure"]
    causes = [line for line in root if line.startswith("Caused by:")]
    return (causes[-1] if causes else root[0])[:500]


def _failures(rest: FlinkRest, job_id: str) -> list[dict[str, Any]]:
    """The job's exception history, oldest first."""
    raw = rest.exceptions(job_id)
    return list(reversed((raw.get("exceptionHistory") or {}).get("entries") or []))


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
        return bool(_failures(rest, job_id)) or rest.job(job_id)["state"] != "RUNNING"
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
    baseline: Flow | None = None,
    thresholds: HealthThresholds | None = None,
) -> Health:
    """Watch ``job_id`` for up to ``window_s`` seconds; return as soon as it is known.

    Only checkpoints that complete during the watch count (not, say, the hand-over ones);
    with ``count_from_start`` (a watch taken up again after its deployer died) every checkpoint
    the job completed counts, since the ones completed while nobody watched are part of its
    window. Failures and records always count from the job's start. ``baseline``: the previous
    version's :class:`Flow` (None: its rates are unknown, only absolute limits apply).
    """
    limits = thresholds or HealthThresholds()
    started = time.monotonic()
    checkpoints = records = 0
    before: int | None = 0 if count_from_start else None
    flow: Flow | None = None
    lags: list[tuple[float, int]] = []
    readings: list[tuple[float, Flow]] = []  # for backpressure, which must last a while
    troubled_since: float | None = None
    troubled_flow: Flow | None = None  # the reading the problem was first seen in
    seen = 0  # exception-history entries judged so far
    platform: list[str] = []
    #: seconds the platform spent recovering (not counted), and since when it does now
    paused = 0.0
    recovering: float | None = None

    def verdict(stable: bool, reason: str, failures: int = 0) -> Health:
        waited = time.monotonic() - started - paused
        return Health(stable, reason, checkpoints, failures, records, waited, flow, tuple(platform))

    while True:
        now = time.monotonic()
        try:
            job = rest.job(job_id)
            history = _failures(rest, job_id)
            completed = int(rest.checkpoints(job_id)["counts"]["completed"])
        except ClusterError as exc:
            return verdict(False, f"the job's REST API stopped answering: {exc}")
        for entry in history[seen:]:
            if not platform_fault(entry):
                own = [e for e in history if not platform_fault(e)]
                return verdict(
                    False, f"the job failed {len(own)}x: {_root_cause(own[0])}", len(own)
                )
            platform.append(_root_cause(entry))
            if len(platform) > limits.max_platform_failures:
                return verdict(
                    False,
                    f"the platform failed {len(platform)}x under this version (last: "
                    f"{platform[-1]}); more than the {limits.max_platform_failures} a watch "
                    "tolerates, so the version is held to be the cause",
                    len(platform),
                )
            # Flink restarts the job from its latest checkpoint: the watch starts over then
            recovering = now if recovering is None else recovering
            before, troubled_since = None, None
            lags.clear()
            readings.clear()
        seen = len(history)
        state = str(job.get("state"))
        if state in _JOB_ENDED:
            after = f" after the platform failed under it ({platform[-1]})" if platform else ""
            return verdict(False, f"the job is {state}{after}")
        if state != "RUNNING" or (recovering is not None and not _all_running(job)):
            # restarting (its failure not in the history yet, or the platform's), or waiting
            # for slots: not the version's doing so far; Flink's restart strategy is at work
            recovering = now if recovering is None else recovering
            if now - recovering > limits.platform_grace_s:
                cause = f" after the platform failed under it ({platform[-1]})" if platform else ""
                return verdict(
                    False,
                    f"the job did not run again within {limits.platform_grace_s:.0f}s{cause}; "
                    f"it is {state}",
                )
            time.sleep(poll_s)
            continue
        if recovering is not None:
            paused += now - recovering
            recovering = None
        waited = now - started - paused
        before = completed if before is None else before
        checkpoints = completed - before
        try:
            flow = read_flow(rest, job_id, job.get("vertices", []))
        except ClusterError:
            pass  # a metrics hiccup: judge on the last reading
        # since the job started: the hand-over checkpoints' records count too
        records = flow.inputs if flow is not None else _records(job)
        problems: list[str] = []
        if flow is not None:
            if flow.lag is not None:
                lags.append((waited, flow.lag))
            problems = output_problems(
                limits, baseline, flow, _lag_at(lags, waited - limits.soak_s)
            )
            readings.append((waited, flow))
            slow = backpressure_problem(limits, baseline, readings, waited)
            if slow is not None:
                problems.append(slow)
        if problems:
            if troubled_since is None:
                troubled_since, troubled_flow = waited, flow
            # lasting means seen in a newer reading too: Flink's REST API serves metrics from a
            # cache (refreshed every 10 s on a cluster by default), so one early reading, say
            # inputs counted before the outputs of the same records, can repeat for seconds
            lasted = waited - troubled_since >= limits.soak_s and flow != troubled_flow
            if lasted or waited >= window_s:
                return verdict(False, "its output is not healthy: " + "; ".join(problems))
        else:
            troubled_since = None
            # back-pressured, not for long enough yet to judge: not stable either, until it
            # falls below the limit or has lasted (a version catching up falls within seconds)
            pressed = flow is not None and back_pressured(limits, baseline, flow)
            if pressed and waited >= window_s:
                assert flow is not None and flow.backpressure is not None
                return verdict(
                    False,
                    "its output is not healthy: its Kafka sources still waited for its "
                    f"operators {flow.backpressure:.0%} of the time at the end of the "
                    f"{window_s:.0f}s window (limit {limits.max_backpressure:.0%}): it did not "
                    "keep up with its input",
                )
            if (
                not pressed
                and checkpoints >= min_checkpoints
                and waited >= limits.soak_s
                and records >= max(limits.min_inputs, 1)
            ):
                return verdict(True, _stable_reason(checkpoints, records, flow, baseline, platform))
        if waited >= window_s and not problems:
            if checkpoints >= min_checkpoints:
                note = (
                    f"no records flowed in {window_s:.0f}s (idle input)"
                    if records == 0
                    else f"only {records} input records in {window_s:.0f}s, fewer than the "
                    f"{limits.min_inputs} its output is judged on"
                )
                return verdict(True, f"{checkpoints} checkpoints, no failures; {note}")
            return verdict(
                False,
                f"only {checkpoints} of {min_checkpoints} checkpoints completed within "
                f"{window_s:.0f}s",
            )
        time.sleep(poll_s)


def _all_running(job: Mapping[str, Any]) -> bool:
    """Whether every vertex of the job runs (after a restart, tasks wait for slots first)."""
    vertices = job.get("vertices") or []
    return all(v.get("status") == "RUNNING" for v in vertices)


def _lag_at(lags: Sequence[tuple[float, int]], at: float) -> int | None:
    """The lag last seen at or before ``at`` seconds into the watch (None: none seen then)."""
    seen = [lag for when, lag in lags if when <= at]
    return seen[-1] if seen else None


def _stable_reason(
    checkpoints: int,
    records: int,
    flow: Flow | None,
    baseline: Flow | None,
    platform: Sequence[str] = (),
) -> str:
    reason = f"{checkpoints} checkpoints, {records} records, no failures"
    if platform:
        reason += (
            f" of its own (Flink recovered it from {len(platform)} of the platform's: "
            f"{platform[-1]})"
        )
    if flow is None:
        return reason + "; output not judged (its metrics could not be read)"
    reason += (
        f"; {flow.output_ratio:.2f} outputs per input, {flow.dead_letter_rate:.1%} dead letters"
    )
    if baseline is None:
        return reason + " (the previous version's rates are unknown)"
    return reason + (
        f" (previous version: {baseline.output_ratio:.2f}, {baseline.dead_letter_rate:.1%})"
    )
