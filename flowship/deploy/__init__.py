"""Deployment: the upgrade engine, its ledger, the gate, the Flink REST client, health, rollback.

``flowship.deploy`` talks to Flink over REST and to a job through its manifest; it never imports
PyFlink's DataStream API nor :mod:`flowship.job` (which builds the graph and hands it over as a
:class:`Target`). Its parts:

=================  =========================================================================
``engine``         :class:`Engine`: the one deployment sequence (plan, gate, stop, SUBMITTED,
                   RUNNING, hand-over, health watch, STABLE or automatic rollback), resumable;
                   :class:`Target` is what differs between the local and the cluster target
``upgrade``        :func:`prepare_upgrade`: gate the new version and stop the running one with a
                   savepoint, each step recorded first; resumes after a deployer crash (an
                   :class:`OpenWatch` when it died during the health watch)
``rollback``       :class:`Rollback`: ``flowship rollback`` / ``--rollback``, back to the
                   version deployed before (gate in reverse, or replay with an explicit opt-in)
``ledger``         :class:`Ledger` (:class:`LocalLedger`, a directory): the append-only record
                   of every deployment and its steps, and the per-job lease, renewed by a
                   :class:`LeaseRenewer`
``kafka_ledger``   :class:`KafkaLedger`: the ledger on a Kafka topic, shared by every host; its
                   lease fences with a transactional producer per job
``ledgers``        :func:`open_ledger`: the ledger a setting names
``machine``        :class:`Step`: the deployment state machine and its allowed transitions
``check``          :func:`check_upgrade`: can the new manifest read the running one's state?
``alive``          :func:`liveness`: is a Flink job alive, dead, or unknown (never guessed)
``health``         :func:`watch`: is a freshly started version stable within its window, and
                   does its output (:class:`Flow`) hold up against the previous version's
                   (:class:`HealthThresholds`)?
``rest``           :class:`FlinkRest`: a small Flink REST client (standard library only)
``savepoints``     :func:`restore_path`, :func:`check_metadata`: is a savepoint really Flink's?
``rehearse``       what ``--dry-run`` reads and reports (state reader, rehearsal topics)
``diff``           :func:`compare`: two versions' outputs paired by input address and compared
                   field by field (the dry run's and ``flowship diff``'s)
``report``         ``flowship diff --html``: where in the input two versions' outputs differ,
                   as a chart
``shadow``         dark launches (``--shadow``): their ledger key, ``flowship diff`` and
                   ``flowship abort``
``side_by_side``   canaries and promotion (``--canary``, ``flowship promote``, ``abort``'s
                   hand-back, ``retire``): which version serves production, moved at agreed
                   cuts
``archive``        the deployed code archived at deploy time, for an exact rollback
``exits``          the exit codes of a job and of ``flowship``, defined once
=================  =========================================================================
"""

from flowship.deploy.alive import Liveness, Verdict, deployment_liveness, liveness
from flowship.deploy.check import UpgradeReport, check_upgrade
from flowship.deploy.engine import Engine, Policy, Release, Target
from flowship.deploy.exits import (
    EXIT_BAD_INPUT,
    EXIT_BUSY,
    EXIT_DRY_RUN_FAILED,
    EXIT_FAILED,
    EXIT_INCOMPATIBLE,
    EXIT_NOT_AGREED,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_ROLLED_BACK,
    EXIT_UNREACHABLE,
    exit_code_for,
)
from flowship.deploy.health import Flow, Health, HealthThresholds, read_flow, watch
from flowship.deploy.kafka_ledger import KafkaLedger
from flowship.deploy.ledger import (
    Entry,
    Lease,
    LeaseHeldError,
    LeaseLostError,
    LeaseRenewer,
    Ledger,
    LedgerError,
    LocalLedger,
)
from flowship.deploy.ledgers import open_ledger
from flowship.deploy.machine import Step, TransitionError
from flowship.deploy.rest import FlinkRest
from flowship.deploy.rollback import Rollback, RollbackRefused, run_rollback
from flowship.deploy.savepoints import check_metadata, restore_path
from flowship.deploy.upgrade import (
    AlreadyDeployed,
    OpenWatch,
    Prepared,
    UpgradeRefused,
    prepare_upgrade,
)

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_BUSY",
    "EXIT_DRY_RUN_FAILED",
    "EXIT_FAILED",
    "EXIT_INCOMPATIBLE",
    "EXIT_NOT_AGREED",
    "EXIT_OK",
    "EXIT_REFUSED",
    "EXIT_ROLLED_BACK",
    "EXIT_UNREACHABLE",
    "AlreadyDeployed",
    "Engine",
    "Entry",
    "FlinkRest",
    "Flow",
    "Health",
    "HealthThresholds",
    "KafkaLedger",
    "Lease",
    "LeaseHeldError",
    "LeaseLostError",
    "LeaseRenewer",
    "Ledger",
    "LedgerError",
    "Liveness",
    "LocalLedger",
    "OpenWatch",
    "Policy",
    "Prepared",
    "Release",
    "Rollback",
    "RollbackRefused",
    "Step",
    "Target",
    "TransitionError",
    "UpgradeRefused",
    "UpgradeReport",
    "Verdict",
    "check_metadata",
    "check_upgrade",
    "deployment_liveness",
    "exit_code_for",
    "liveness",
    "open_ledger",
    "prepare_upgrade",
    "read_flow",
    "restore_path",
    "run_rollback",
    "watch",
]
