"""The upgrade state machine: every step a deployment goes through, and which steps may follow.

::

    PLANNED -> CHECKED -> SAVEPOINTING -> STOPPED -> SUBMITTED -> RUNNING -> STABLE
       |          |            |             |           |           |
       v          v            +------+------+-----+-----+-----------+
    REFUSED    REFUSED                |            v
                                      |         FAILED -> ROLLING_BACK -> ROLLED_BACK
                                      +------------^

A first deploy skips the checks and the savepoint: PLANNED -> SUBMITTED. A shadow (``--shadow``,
``--canary``: a version run beside the current one, from a savepoint taken without stopping it)
goes PLANNED -> SUBMITTED -> RUNNING (-> STABLE: a blue-green upgrade's, judged healthy while
it runs dark); each change of the partitions it serves in production is
ROUTING (recorded before the change is proposed) then ROUTED (in force, with its cuts); it ends
RETIRED when it is stopped (``flowship abort``), or PROMOTED when it serves everything and the
old version is retired (``flowship retire``): the old one's deployment goes RUNNING or STABLE ->
RETIRED, and the promoted version is recorded as a new deployment of the job.
Transitions are checked
here and nowhere else; the ledger records each one *before* the action it names is taken, so a
deployer that died can tell, from the last recorded step, what to do next.
"""

from __future__ import annotations

from enum import StrEnum

from flowship.errors import FlowshipError


class Step(StrEnum):
    """Where a deployment is."""

    PLANNED = "PLANNED"
    CHECKED = "CHECKED"
    SAVEPOINTING = "SAVEPOINTING"
    STOPPED = "STOPPED"
    SUBMITTED = "SUBMITTED"
    RUNNING = "RUNNING"
    STABLE = "STABLE"
    REFUSED = "REFUSED"
    FAILED = "FAILED"
    ROLLING_BACK = "ROLLING_BACK"
    ROLLED_BACK = "ROLLED_BACK"
    #: stopped because it serves nothing any more (a shadow aborted)
    RETIRED = "RETIRED"
    #: a version side by side with another: a change of what it serves is about to be proposed
    ROUTING = "ROUTING"
    #: that change is in force (its cuts recorded)
    ROUTED = "ROUTED"
    #: a version beside the running one that serves everything became the job's deployment
    #: (``flowship retire`` of the old version); recorded under the shadow key
    PROMOTED = "PROMOTED"

    @property
    def terminal(self) -> bool:
        """Whether the deployment's own sequence ends here.

        RETIRED may still follow a STABLE deployment: a version promoted beside it took it over
        later (``flowship retire``), which is not a step of its own deployment; and ROUTING a
        blue-green version's STABLE (its promotion, a step beside the job's own sequence).
        """
        return not (NEXT[self] - {Step.RETIRED, Step.ROUTING})


NEXT: dict[Step, frozenset[Step]] = {
    Step.PLANNED: frozenset({Step.CHECKED, Step.REFUSED, Step.SUBMITTED, Step.FAILED}),
    # CHECKED -> STOPPED: the old version is already gone (--upgrade-from latest-checkpoint)
    Step.CHECKED: frozenset({Step.SAVEPOINTING, Step.STOPPED, Step.REFUSED, Step.FAILED}),
    Step.SAVEPOINTING: frozenset({Step.STOPPED, Step.FAILED}),
    Step.STOPPED: frozenset({Step.SUBMITTED, Step.FAILED}),
    Step.SUBMITTED: frozenset({Step.RUNNING, Step.FAILED, Step.RETIRED}),
    Step.RUNNING: frozenset({Step.STABLE, Step.FAILED, Step.RETIRED, Step.ROUTING}),
    # STABLE -> RETIRED: stopped once a version promoted beside it took everything over;
    # STABLE -> ROUTING: a blue-green version judged healthy while dark is promoted
    Step.STABLE: frozenset({Step.RETIRED, Step.ROUTING}),
    Step.REFUSED: frozenset(),
    Step.FAILED: frozenset({Step.ROLLING_BACK}),
    Step.ROLLING_BACK: frozenset({Step.ROLLED_BACK, Step.FAILED}),
    Step.ROLLED_BACK: frozenset(),
    Step.RETIRED: frozenset(),
    # ROUTING -> ROUTING: a deployer that died before the change was agreed, run again
    Step.ROUTING: frozenset({Step.ROUTED, Step.ROUTING, Step.RETIRED, Step.FAILED}),
    Step.ROUTED: frozenset({Step.ROUTING, Step.RETIRED, Step.FAILED, Step.PROMOTED}),
    Step.PROMOTED: frozenset(),
}


class TransitionError(FlowshipError, RuntimeError):
    """A deployment was asked to move to a step that cannot follow its current one."""


def check_transition(current: Step | None, new: Step) -> None:
    """Raise :class:`TransitionError` unless ``new`` may follow ``current`` (None: a new one)."""
    if current is None:
        if new is not Step.PLANNED:
            msg = f"a deployment starts at PLANNED, not {new.value}"
            raise TransitionError(msg)
        return
    if new not in NEXT[current]:
        allowed = ", ".join(sorted(s.value for s in NEXT[current])) or "nothing (terminal)"
        msg = (
            f"deployment step {current.value} cannot be followed by {new.value}; allowed: {allowed}"
        )
        raise TransitionError(msg)
