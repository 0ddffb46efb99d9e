"""The exit codes of a job script (``job.main()``) and of the ``flowship`` command, defined once.

Documented in docs/reference/cli.md; a job and ``flowship`` give the same number the same
meaning.

==  ===========================================================================================
0   done: the job finished (bounded) or was deployed; ``flowship check``: compatible
1   ``flowship check``: incompatible (the report lists what blocks the upgrade, and the fix)
2   bad input: invalid flags, settings, job definition or state schema, unknown job, nothing
    to roll back, a source topic missing on Kafka
3   a job failed or could not be submitted (a rollback: the previous version did not start)
4   a cluster (Flink, or Kafka) or JVM artifact could not be reached / found
5   refused: the new (or, for a rollback, the previous) code cannot read the running
    version's state; nothing was stopped (the ledger records REFUSED with the report)
6   the upgraded version did not start, or was not healthy within the window: it was cancelled
    (confirmed), and the version before it was started again from the pre-upgrade savepoint
    (the ledger records ROLLED_BACK with the reason); ``--strategy blue-green``: it was not
    healthy while it ran dark and was stopped; the running version was never stopped
7   another deployment of this job is in progress (it holds the job's lease), or this
    deployer lost the lease (it expired, or another deployer took it over): it stopped
    without changing anything more
8   ``--dry-run``: the rehearsal failed; nothing production uses was changed
9   ``flowship flag set``: the change was not agreed by every running instance (in force
    nowhere)
10  ``flowship diff`` with a policy: the shadow's outputs differ beyond it (verdict ``fail``);
    ``--strategy blue-green|canary --max-diff-rate``: so, and the new version was stopped
11  ``flowship diff`` with a policy: too few inputs compared yet to judge (``undecided``);
    ``--strategy blue-green|canary``: still so after ``--verdict-timeout-s``, it was stopped
==  ===========================================================================================
"""

from __future__ import annotations

from flowship.deploy.ledger import LeaseHeldError, LeaseLostError
from flowship.deploy.upgrade import UpgradeRefused
from flowship.errors import ClusterError, ConfigError, FlowshipError, MissingJarError, SchemaError

EXIT_OK = 0
EXIT_INCOMPATIBLE = 1
EXIT_BAD_INPUT = 2
EXIT_FAILED = 3
EXIT_UNREACHABLE = 4
EXIT_REFUSED = 5
EXIT_ROLLED_BACK = 6
EXIT_BUSY = 7
EXIT_DRY_RUN_FAILED = 8
EXIT_NOT_AGREED = 9
EXIT_DIFF_FAILED = 10
EXIT_DIFF_UNDECIDED = 11


def exit_code_for(exc: FlowshipError) -> int:
    """The documented exit code of a deployment (or rollback) that raised ``exc``."""
    if isinstance(exc, (ConfigError, SchemaError)):
        return EXIT_BAD_INPUT
    if isinstance(exc, UpgradeRefused):
        return EXIT_REFUSED
    if isinstance(exc, (LeaseHeldError, LeaseLostError)):
        return EXIT_BUSY
    if isinstance(exc, (ClusterError, MissingJarError)):
        return EXIT_UNREACHABLE
    return EXIT_FAILED
