"""The health watch judges output: dead letters, outputs per input and lag against the old version.

A stub stands in for the Flink REST API here (the judgement is pure logic over what it answers);
tests/e2e/test_output_health.py upgrades real jobs under load.
"""

from __future__ import annotations

from typing import Any

import pytest

from flowship.deploy.health import Flow, HealthThresholds, output_problems, read_flow, watch
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
            },
            "out": {
                "kafka_session-stats__Writer.numRecordsIn": (flow.outputs, 0),
                "dead-letter_clicks_dlq__Writer.numRecordsIn": (flow.dead_letters, 0),
                "kafka_session-stats__Committer.numRecordsIn": (99, 0),
            },
        }[vertex_id]
        if not ids:
            return [{"id": name} for name in metrics]
        return [
            {"id": name, "sum": metrics[name][0] or 0, "min": metrics[name][1]} for name in ids
        ]


def test_read_flow_sums_flowships_own_operators() -> None:
    assert read_flow(StubRest([Flow(300, 290, 10, 42)]), "j") == Flow(300, 290, 10, 42)  # type: ignore[arg-type]
    # a reader that does not know its lag yet reports -1: the lag is unknown, not 0
    assert read_flow(StubRest([Flow(300, 290, 10, None)]), "j").lag is None  # type: ignore[arg-type]


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


def test_a_version_that_dead_letters_everything_is_not_stable() -> None:
    health = _watch(StubRest([Flow(400, 0, 400, 0)]))
    assert not health.stable
    assert health.reason.startswith("its output is not healthy: 100.0% of its input went to")


def test_a_version_that_writes_nothing_is_not_stable() -> None:
    health = _watch(StubRest([Flow(400, 0, 0, 0)]))
    assert not health.stable
    assert "0.00 outputs per input record" in health.reason


def test_a_version_whose_lag_keeps_growing_is_not_stable() -> None:
    growing = [Flow(100 + 10 * i, 100 + 10 * i, 0, 1000 + 500 * i) for i in range(400)]
    health = _watch(StubRest(growing), soak_s=0.1)
    assert not health.stable
    assert "consumer lag grew" in health.reason


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
