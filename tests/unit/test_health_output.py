"""The health watch judges output: dead letters, outputs per input and lag against the old version.

A stub stands in for the Flink REST API here (the judgement is pure logic over what it answers);
tests/e2e/test_output_health.py upgrades real jobs under load.
"""

from __future__ import annotations

from typing import Any

import pytest

from flowship.deploy.health import (
    Flow,
    HealthThresholds,
    backpressure_problem,
    output_problems,
    platform_fault,
    read_flow,
    settled_flow,
    watch,
    with_lag_trend,
)
from flowship.errors import ClusterError

LIMITS = HealthThresholds(soak_s=2.0, min_inputs=100)
V1 = Flow(inputs=10_000, outputs=10_000, dead_letters=10, lag=0)


def test_a_version_like_the_previous_one_has_no_problems() -> None:
    assert output_problems(LIMITS, V1, Flow(500, 498, 1, 40), lag_before=300) == []


def test_dead_letters_beyond_the_previous_share_and_margin() -> None:
    (problem,) = output_problems(LIMITS, V1, Flow(500, 500, 500, 0), lag_before=None)
    assert "100.0% of its input went to dead-letter topics (500 of 500 records)" in problem
    assert "previous version's share was 0.1%" in problem
    # within the margin (0.1% + 5 points)
    assert output_problems(LIMITS, V1, Flow(1000, 1000, 50, 0), None) == []
    # no baseline: judged against 0
    assert output_problems(LIMITS, None, Flow(1000, 1000, 60, 0), None)


def test_too_few_outputs_per_input() -> None:
    (problem,) = output_problems(LIMITS, V1, Flow(1000, 0, 0, 0), None)
    assert "0.00 outputs per input record (0 for 1000); the previous version wrote 1.00" in problem
    assert output_problems(LIMITS, V1, Flow(1000, 510, 0, 0), None) == []
    # off, or nothing to compare with
    assert output_problems(HealthThresholds(min_output_ratio=0), V1, Flow(1000, 0, 0), None) == []
    assert output_problems(LIMITS, None, Flow(1000, 0, 0, 0), None) == []
    assert output_problems(LIMITS, Flow(1000, 0, 0), Flow(1000, 0, 0, 0), None) == []


def test_output_is_not_judged_on_too_little_input_but_lag_is() -> None:
    assert output_problems(LIMITS, V1, Flow(99, 0, 99, 0), None) == []
    (problem,) = output_problems(LIMITS, V1, Flow(0, 0, 0, 25_000), lag_before=5_000)
    assert "consumer lag grew from 5000 to 25000 records" in problem
    off = HealthThresholds(max_lag_growth=0)
    assert output_problems(off, V1, Flow(0, 0, 0, 25_000), lag_before=5_000) == []


def test_flow_round_trips_through_the_ledger_form() -> None:
    assert Flow.from_json(V1.to_json()) == V1
    assert Flow.from_json(Flow(5, 4, 1, 3, 0.5).to_json()) == Flow(5, 4, 1, 3, 0.5)
    assert Flow.from_json(Flow(5, 4, 1, None).to_json()) == Flow(5, 4, 1, None)
    assert V1.to_json()["output_ratio"] == 1.0
    for bad in (None, "x", {"inputs": 1}, {"inputs": "a", "outputs": 1, "dead_letters": 0}):
        assert Flow.from_json(bad) is None


class StubRest:
    """Flink's REST answers for one running job whose counts follow ``flows`` poll by poll."""

    def __init__(self, flows: list[Flow], checkpoints: int = 5) -> None:
        self.flows = flows
        self.polls = 0
        self.completed = checkpoints

    def _flow(self) -> Flow:
        return self.flows[min(self.polls, len(self.flows) - 1)]

    def job(self, job_id: str) -> dict[str, Any]:
        self.polls += 1
        return {"state": "RUNNING", "vertices": [{"id": "src"}, {"id": "out"}]}

    def exceptions(self, job_id: str) -> dict[str, Any]:
        return {"exceptionHistory": {"entries": []}}

    def checkpoints(self, job_id: str) -> dict[str, Any]:
        self.completed += 1
        return {"counts": {"completed": self.completed}}

    def subtask_metrics(
        self, job_id: str, vertex_id: str, ids: Any = ()
    ) -> list[dict[str, Any]]:
        flow = self._flow()
        metrics = {
            "src": {
                "Source__kafka_clicks-source.numRecordsIn": (flow.inputs, 0),
                "Source__kafka_clicks-source.pendingRecords": (flow.lag, -1 if flow.lag is None
                                                               else 0),
                "decode_clicks-source.numRecordsOut": (flow.inputs, 0),
                # a task metric, on every vertex; Flink reports ms a second, max over subtasks
                "backPressuredTimeMsPerSecond": (
                    None if flow.backpressure is None else flow.backpressure * 1000, 0),
            },
            "out": {
                "kafka_session-stats__Writer.numRecordsIn": (flow.outputs, 0),
                "dead-letter_clicks_dlq__Writer.numRecordsIn": (flow.dead_letters, 0),
                "kafka_session-stats__Committer.numRecordsIn": (99, 0),
                "backPressuredTimeMsPerSecond": (1000, 1000),  # not a source's: not read
            },
        }[vertex_id]
        if not ids:
            return [{"id": name} for name in metrics]
        if flow.backpressure is None and vertex_id == "src":
            metrics.pop("backPressuredTimeMsPerSecond")
        return [
            {"id": name, "sum": metrics[name][0] or 0, "min": metrics[name][1],
             "max": metrics[name][0]} for name in ids if name in metrics
        ]


def test_read_flow_sums_flowships_own_operators() -> None:
    assert read_flow(StubRest([Flow(300, 290, 10, 42)]), "j") == Flow(300, 290, 10, 42)  # type: ignore[arg-type]
    # the sources' backpressure: the most back-pressured subtask's share of the time
    pressed = read_flow(StubRest([Flow(300, 290, 10, 42, 0.93)]), "j")  # type: ignore[arg-type]
    assert pressed.backpressure == pytest.approx(0.93)
    # a reader that does not know its lag yet reports -1: the lag is unknown, not 0
    assert read_flow(StubRest([Flow(300, 290, 10, None)]), "j").lag is None  # type: ignore[arg-type]


class AgedRest(StubRest):
    """A running job ``duration_ms`` old."""

    def __init__(self, flows: list[Flow], duration_ms: int) -> None:
        super().__init__(flows)
        self.duration_ms = duration_ms

    def job(self, job_id: str) -> dict[str, Any]:
        return {**super().job(job_id), "duration": self.duration_ms}


def test_a_young_versions_empty_counts_are_read_again_an_idle_old_ones_are_not() -> None:
    # started seconds ago (restarted by a rollback, say): its metrics are not reported yet
    young = AgedRest([Flow(0, 0, 0)] * 4 + [Flow(300, 290, 0, 5)], duration_ms=5_000)
    assert settled_flow(young, "j", wait_s=5.0, poll_s=0.01) == Flow(300, 290, 0, 5)  # type: ignore[arg-type]
    # inputs counted, outputs not yet (its first records in flight): read again as well
    warming = AgedRest(
        [Flow(600, 0, 0)] * 4 + [Flow(650, 340, 0)] * 4 + [Flow(700, 650, 0, 5)], duration_ms=5_000
    )
    assert settled_flow(warming, "j", wait_s=5.0, poll_s=0.01) == Flow(700, 650, 0, 5)  # type: ignore[arg-type]
    # no input for long: idle, taken at once
    idle = AgedRest([Flow(0, 0, 0)] * 4 + [Flow(300, 290, 0, 5)], duration_ms=600_000)
    assert settled_flow(idle, "j", wait_s=5.0, poll_s=0.01) == Flow(0, 0, 0)  # type: ignore[arg-type]
    # young but never counting: given up after the wait
    never = AgedRest([Flow(0, 0, 0)], duration_ms=5_000)
    assert settled_flow(never, "j", wait_s=0.1, poll_s=0.01) == Flow(0, 0, 0)  # type: ignore[arg-type]


def _watch(rest: StubRest, **kw: Any) -> Any:
    limits = HealthThresholds(soak_s=kw.pop("soak_s", 0.05), min_inputs=100, max_lag_growth=1000)
    return watch(rest, "j", kw.pop("window_s", 5.0), 2, poll_s=0.01, baseline=V1,  # type: ignore[arg-type]
                 thresholds=limits, **kw)


def test_a_healthy_version_is_stable_once_soaked_with_its_rates_in_the_reason() -> None:
    health = _watch(StubRest([Flow(50, 40, 0, 900), Flow(400, 395, 0, 100)]))
    assert health.stable
    assert "(previous version: 1.00, 0.1%)" in health.reason
    assert "0.99 outputs per input, 0.0% dead letters" in health.reason
    assert health.flow == Flow(400, 395, 0, 100)


def test_a_healthy_version_is_not_stable_before_its_soak_time() -> None:
    """Checkpoints complete, its input is enough and its output good from the first reading:
    only the soak time holds the verdict back (without one it is stable within a few polls)."""
    healthy = [Flow(1000, 1000, 0, 0)]  # 1.00 outputs per input, like V1, no dead letters
    unsoaked = StubRest(healthy)
    health = _watch(unsoaked, soak_s=0)
    assert health.stable, health.reason
    assert unsoaked.polls <= 4  # the first reading, then two checkpoints completed
    assert health.waited_s < 0.5
    soaked = StubRest(healthy)
    health = _watch(soaked, soak_s=0.5)
    assert health.stable, health.reason
    assert health.waited_s >= 0.5
    assert soaked.polls > 10  # watched on, poll after poll, until the soak time was up
    assert health.waited_s < 5.0 and "1000 records" in health.reason  # not the window's end
    assert health.checkpoints >= 2


def _growing(inputs: int, outputs: float, dead: float, polls: int = 400) -> list[Flow]:
    """A stream's readings: ``outputs``/``dead`` per input, inputs growing poll by poll."""
    return [Flow(inputs + i, int((inputs + i) * outputs), int((inputs + i) * dead), 0)
            for i in range(polls)]


def test_a_version_that_dead_letters_everything_is_not_stable() -> None:
    health = _watch(StubRest(_growing(400, 0, 1)))
    assert not health.stable
    assert health.reason.startswith("its output is not healthy: 100.0% of its input went to")


def test_a_version_that_writes_nothing_is_not_stable() -> None:
    health = _watch(StubRest(_growing(400, 0, 0)))
    assert not health.stable
    assert "0.00 outputs per input record" in health.reason


def test_a_version_whose_lag_keeps_growing_is_not_stable() -> None:
    growing = [Flow(100 + 10 * i, 100 + 10 * i, 0, 1000 + 500 * i) for i in range(400)]
    health = _watch(StubRest(growing), soak_s=0.1)
    assert not health.stable
    assert "consumer lag grew" in health.reason


def test_a_stale_reading_repeated_is_not_a_lasting_problem() -> None:
    """Found on the session cluster (metrics cached 10 s): one early reading, inputs counted
    before the outputs of the same records, served again and again for longer than the soak
    time, rolled a healthy version back. A problem lasts only if a newer reading shows it."""
    stale = [Flow(582, 1, 0, 0)] * 40  # the same cached reading, 40 polls of 0.01 s
    health = _watch(StubRest([*stale, Flow(1400, 1398, 0, 0)]), soak_s=0.1)
    assert health.stable, health.reason
    # confirmed by a newer reading: not healthy
    health = _watch(StubRest([*stale, Flow(1400, 2, 0, 0)]), soak_s=0.1)
    assert not health.stable and "0.00 outputs per input record (2 for 1400)" in health.reason


def test_records_in_flight_after_the_hand_over_are_not_held_against_it() -> None:
    # behind at first (outputs still in flight), caught up within the soak time
    flows = [Flow(400, 0, 0, 2000)] * 3 + [Flow(800, 790, 0, 50)]
    health = _watch(StubRest(flows), soak_s=0.2)
    assert health.stable, health.reason


def test_too_little_input_by_the_window_end_is_stable_and_says_so() -> None:
    health = _watch(StubRest([Flow(20, 20, 0, 0)]), window_s=0.3)
    assert health.stable
    assert "only 20 input records" in health.reason


@pytest.mark.parametrize("state", ["FAILED", "CANCELED"])
def test_a_job_that_is_not_running_ends_the_watch(state: str) -> None:
    rest = StubRest([V1])
    rest.job = lambda job_id: {"state": state, "vertices": []}  # type: ignore[method-assign]
    assert watch(rest, "j", 5.0, 2, poll_s=0.01).reason == f"the job is {state}"  # type: ignore[arg-type]


def test_metrics_that_cannot_be_read_leave_the_output_unjudged() -> None:
    rest = StubRest([V1])

    def broken(*args: Any, **kw: Any) -> Any:
        raise ClusterError("metrics: 500")

    rest.subtask_metrics = broken  # type: ignore[method-assign]
    vertex = {"id": "v", "metrics": {"read-records": 500}}
    rest.job = lambda job_id: {"state": "RUNNING", "vertices": [vertex]}  # type: ignore[method-assign]
    health = watch(rest, "j", 5.0, 2, poll_s=0.01, thresholds=HealthThresholds(soak_s=0.05))  # type: ignore[arg-type]
    assert health.stable
    assert "output not judged (its metrics could not be read)" in health.reason


# -- the platform's faults and the version's -------------------------------------------------

# root causes as Flink reports them (exception history of a job on a session cluster)
TM_LOST = {  # as seen in tests/e2e/test_platform_faults.py before the fix, which rolled back
    "exceptionName": "org.apache.flink.runtime.resourcemanager.exceptions."
                     "ResourceManagerException",
    "stacktrace": "org.apache.flink.runtime.resourcemanager.exceptions.ResourceManagerException:"
                  " TaskManager with id 127.0.0.1:23079-90c8b9 is no longer reachable.\n\tat "
                  "org.apache.flink...",
}
NO_SLOTS = {
    "exceptionName": "java.util.concurrent.CompletionException",
    "stacktrace": "java.util.concurrent.CompletionException: org.apache.flink.runtime."
                  "jobmanager.scheduler.NoResourceAvailableException: Could not acquire the "
                  "minimum required resources.",
}
OWN_BUG = {
    "exceptionName": "pemja.core.PythonException",
    "stacktrace": "java.lang.RuntimeException: Error while running the Python function\n"
                  "Caused by: pemja.core.PythonException: <class 'RuntimeError'>: failing on "
                  "purpose\n\tat /tmp/job_v2.py.process_element(job_v2.py:31)",
}


class Scripted(StubRest):
    """A job whose state and exception history follow ``script``: one (state, vertex status,
    failures so far) a poll, the last one held."""

    def __init__(self, script: list[tuple[str, str, list[dict[str, Any]]]]) -> None:
        super().__init__([Flow(400, 398, 0, 10)])
        self.script = script
        self.step = -1

    def _now(self) -> tuple[str, str, list[dict[str, Any]]]:
        return self.script[min(self.step, len(self.script) - 1)]

    def job(self, job_id: str) -> dict[str, Any]:
        self.step += 1
        state, status, _ = self._now()
        return {"state": state, "vertices": [{"id": "src", "status": status},
                                             {"id": "out", "status": status}]}

    def exceptions(self, job_id: str) -> dict[str, Any]:
        return {"exceptionHistory": {"entries": list(reversed(self._now()[2]))}}  # newest first


def _platform_watch(rest: StubRest, **limits: Any) -> Any:
    thresholds = HealthThresholds(soak_s=0.05, min_inputs=100, **limits)
    return watch(rest, "j", 0.5, 2, poll_s=0.01, baseline=V1, thresholds=thresholds)  # type: ignore[arg-type]


def test_a_lost_taskmanager_pauses_the_watch_and_the_recovered_version_is_stable() -> None:
    rest = Scripted(
        [("RUNNING", "RUNNING", [])] * 3
        + [("RESTARTING", "CANCELING", [TM_LOST])] * 30  # longer than the window: paused
        + [("RUNNING", "SCHEDULED", [TM_LOST])] * 20  # waiting for the new TaskManager's slots
        + [("RUNNING", "RUNNING", [TM_LOST])]
    )
    health = _platform_watch(rest)
    assert health.stable, health.reason
    assert health.platform_failures == (TM_LOST["stacktrace"].splitlines()[0],)
    assert "Flink recovered it from 1 of the platform's" in health.reason
    assert rest.step > 53  # judged after the recovery, not before


def test_no_slots_is_the_platforms_fault_too() -> None:
    rest = Scripted([("RUNNING", "RUNNING", [])] * 2 + [("RESTARTING", "CREATED", [NO_SLOTS])] * 5
                    + [("RUNNING", "RUNNING", [NO_SLOTS])])
    health = _platform_watch(rest)
    assert health.stable, health.reason


def test_a_failure_of_the_versions_own_code_rolls_it_back_at_once() -> None:
    rest = Scripted([("RUNNING", "RUNNING", [])] * 2 + [("RESTARTING", "CANCELING", [OWN_BUG])])
    health = _platform_watch(rest)
    assert not health.stable
    assert health.reason == ("the job failed 1x: Caused by: pemja.core.PythonException: <class "
                             "'RuntimeError'>: failing on purpose")
    # its own failure after a platform one is still its own
    rest = Scripted([("RESTARTING", "CANCELING", [TM_LOST])] * 3
                    + [("RESTARTING", "CANCELING", [TM_LOST, OWN_BUG])])
    health = _platform_watch(rest)
    assert not health.stable and "failing on purpose" in health.reason
    assert len(health.platform_failures) == 1


def test_a_platform_that_does_not_recover_within_the_grace_ends_the_watch() -> None:
    rest = Scripted([("RUNNING", "RUNNING", []), ("RESTARTING", "CREATED", [TM_LOST])])
    health = _platform_watch(rest, platform_grace_s=0.2)
    assert not health.stable
    assert health.reason.startswith("the job did not run again within 0s after the platform "
                                    "failed under it (org.apache.flink.runtime.resourcemanager.")


def test_platform_failures_beyond_the_limit_are_held_against_the_version() -> None:
    # TaskManagers lost one after the other while the job restarts: never long enough up
    flapping = [("RESTARTING", "CREATED", [TM_LOST] * n) for n in range(1, 4) for _ in range(3)]
    health = _platform_watch(Scripted(flapping), max_platform_failures=2)
    assert not health.stable
    assert health.reason.startswith("the platform failed 3x under this version")


def test_a_job_that_ends_after_a_platform_failure_says_so() -> None:
    rest = Scripted([("RESTARTING", "CANCELING", [TM_LOST]), ("FAILED", "FAILED", [TM_LOST])])
    health = _platform_watch(rest)
    assert not health.stable
    assert health.reason.startswith("the job is FAILED after the platform failed under it")


@pytest.mark.parametrize("entry, platform", [
    (TM_LOST, True), (NO_SLOTS, True), (OWN_BUG, False),
    ({"exceptionName": "java.util.concurrent.TimeoutException",
      "stacktrace": "java.util.concurrent.TimeoutException: Heartbeat of TaskManager with id "
                    "127.0.0.1:1-ab timed out."}, True),
    ({"stacktrace": "org.apache.flink.runtime.io.network.netty.exception."
                    "RemoteTransportException: Connection unexpectedly closed by remote task "
                    "manager '127.0.0.1/127.0.0.1:41573'."}, True),
    ({"exceptionName": "java.lang.ArithmeticException", "stacktrace": "/ by zero"}, False),
    ({}, False),
])
def test_platform_faults_are_told_by_flinks_words(entry: dict[str, Any], platform: bool) -> None:
    assert platform_fault(entry) is platform


PRESSED = HealthThresholds(max_backpressure=0.8, backpressure_s=10.0)


def _span(*readings: tuple[float, float, int | None]) -> list[tuple[float, Flow]]:
    """(seconds into the watch, backpressure, lag) as the watch's readings."""
    return [(at, Flow(1000, 1000, 0, lag, pressure)) for at, pressure, lag in readings]


def test_backpressure_that_lasts_without_catching_up_is_a_problem() -> None:
    readings = _span((2, 0.55, 0), (6, 0.82, 0), (10, 0.9, 0), (14, 0.93, 0), (16, 0.95, 0))
    problem = backpressure_problem(PRESSED, V1, readings, waited=16)
    assert problem is not None
    assert "its Kafka sources waited for its operators 95% of the time" in problem
    assert "above 80% for 10s with a lag that did not shrink" in problem
    # with the previous version's figure when it is known
    base = Flow(10_000, 10_000, 0, 0, 0.02)
    assert "the previous version's: 2%" in str(backpressure_problem(PRESSED, base, readings, 16))


def test_backpressure_not_seen_for_the_whole_span_is_not_judged_yet() -> None:
    readings = _span((6, 0.82, 0), (10, 0.9, 0), (14, 0.93, 0))
    assert backpressure_problem(PRESSED, V1, readings, waited=14) is None  # first seen at 6 s
    dipped = _span((2, 0.85, 0), (6, 0.7, 0), (10, 0.9, 0), (14, 0.93, 0))
    assert backpressure_problem(PRESSED, V1, dipped, waited=14) is None
    unknown = _span((2, 0.85, 0), (6, 0.9, 0), (14, 0.93, 0))
    unknown[1] = (6, Flow(1000, 1000, 0, 0, None))
    assert backpressure_problem(PRESSED, V1, unknown, waited=14) is None


def test_a_version_catching_up_after_the_hand_over_is_not_held_to_its_backpressure() -> None:
    # back-pressured while it drains what piled up during the hand-over, then falling
    falling = _span((2, 1.0, 0), (8, 1.0, 0), (12, 0.9, 0))
    assert backpressure_problem(PRESSED, V1, falling, waited=12) is None
    # or its lag shrinks
    draining = _span((2, 1.0, 5000), (8, 1.0, 3000), (12, 1.0, 1200))
    assert backpressure_problem(PRESSED, V1, draining, waited=12) is None


def test_backpressure_is_not_judged_when_the_previous_version_was_as_pressed_or_off() -> None:
    readings = _span((2, 0.95, 0), (8, 0.97, 0), (12, 0.98, 0))
    saturated = Flow(10_000, 10_000, 0, 0, 0.9)
    assert backpressure_problem(PRESSED, saturated, readings, waited=12) is None
    off = HealthThresholds(backpressure_s=0)
    assert backpressure_problem(off, V1, readings, waited=12) is None
    assert backpressure_problem(PRESSED, V1, readings, waited=12) is not None


def test_a_version_that_stays_back_pressured_is_not_stable() -> None:
    pressed = [Flow(1000 + i, 1000 + i, 0, 0, 0.97) for i in range(400)]
    limits = HealthThresholds(soak_s=0.05, min_inputs=100, backpressure_s=0.1)
    health = watch(StubRest(pressed), "j", 5.0, 2, poll_s=0.01, baseline=V1,  # type: ignore[arg-type]
                   thresholds=limits)
    assert not health.stable
    assert "its output is not healthy: its Kafka sources waited for its operators 97%" in (
        health.reason)
    assert health.flow is not None and health.flow.backpressure == pytest.approx(0.97)


def test_a_back_pressured_version_is_stable_only_once_its_backpressure_falls() -> None:
    limits = HealthThresholds(soak_s=0.05, min_inputs=100, backpressure_s=5.0)
    # catching up for a few polls, then below the limit: stable, after the pressure fell
    catching_up = [Flow(1000 + i, 1000 + i, 0, 0, 0.95) for i in range(20)] + [
        Flow(1100, 1100, 0, 0, 0.4)]
    rest = StubRest(catching_up)
    health = watch(rest, "j", 5.0, 2, poll_s=0.01, baseline=V1, thresholds=limits)  # type: ignore[arg-type]
    assert health.stable, health.reason
    assert rest.polls >= 20 and health.flow == Flow(1100, 1100, 0, 0, 0.4)
    # still above the limit when the window ends (shorter than the span): not stable
    pressed = [Flow(1000 + i, 1000 + i, 0, 0, 0.95) for i in range(400)]
    health = watch(StubRest(pressed), "j", 0.3, 2, poll_s=0.01, baseline=V1,  # type: ignore[arg-type]
                   thresholds=limits)
    assert not health.stable
    assert "still waited for its operators 95% of the time at the end of the 0s window" in (
        health.reason)


def test_the_previous_versions_lag_trend_is_measured_from_two_readings() -> None:
    early, late = Flow(1000, 1000, 0, 200), Flow(1300, 1300, 0, 500)
    assert with_lag_trend(early, 3.0, late).lag_rate == pytest.approx(100.0)
    # not measurable: too close together, the same cached reading, a lag unknown, no reading
    assert with_lag_trend(early, 0.5, late).lag_rate is None
    assert with_lag_trend(late, 3.0, late).lag_rate is None
    assert with_lag_trend(Flow(1000, 1000, 0, None), 3.0, late).lag_rate is None
    assert with_lag_trend(None, 3.0, late) == late
    assert Flow.from_json(with_lag_trend(early, 3.0, late).to_json()).lag_rate == 100.0  # type: ignore[union-attr]


def test_lag_growing_as_fast_as_the_previous_versions_did_is_not_held_against_it() -> None:
    limits = HealthThresholds(soak_s=10.0, min_inputs=100, max_lag_growth=1000)
    grows = Flow(5000, 5000, 0, 6500)  # 1,500 more than one soak time earlier (5,000)
    (problem,) = output_problems(limits, V1, grows, lag_before=5000)
    assert "grew from 5000 to 6500 records in 10s (more than 1000)" in problem
    # the input outran the previous version too: its lag grew 100 records a second
    outran = Flow(10_000, 10_000, 10, 0, None, 100.0)
    assert output_problems(limits, outran, grows, lag_before=5000) == []
    (problem,) = output_problems(limits, outran, Flow(5000, 5000, 0, 8500), lag_before=5000)
    assert "(more than 2000; the previous version's grew 100 records a second before" in problem
    # a shrinking lag before the upgrade gives no allowance
    caught_up = Flow(10_000, 10_000, 10, 0, None, -50.0)
    assert output_problems(limits, caught_up, grows, lag_before=5000)
