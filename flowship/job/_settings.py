"""Job settings: command-line flags over ``FLOWSHIP_*`` environment variables over defaults."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from flowship.deploy.health import HealthThresholds
from flowship.deploy.ledger import Ledger
from flowship.deploy.ledgers import open_ledger
from flowship.deploy.savepoints import Storage, storage_root
from flowship.errors import ConfigError

ENV_PREFIX = "FLOWSHIP_"


class Settings(BaseSettings):
    """How and where a flowship job runs. Every field is also ``FLOWSHIP_<FIELD>`` and a flag."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="forbid")

    target: str = Field(
        "local",
        description="'local' (embedded mini-cluster in this process) or a Flink REST URL "
        "(http://host:port) of a session cluster",
    )
    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap.servers")
    rest_port: int = Field(8081, ge=0, le=65535, description="REST port of the local mini-cluster")
    parallelism: int = Field(2, ge=1, description="default operator parallelism")
    execution_mode: Literal["thread", "process"] = Field(
        "thread",
        description="PyFlink python.execution-mode; 'thread' runs Python in the TaskManager "
        "JVM (about 10x faster here), 'process' in separate Python workers",
    )
    checkpoint_interval_ms: int = Field(
        2000, ge=100, description="checkpoint interval; exactly-once sinks commit on checkpoints"
    )
    state_dir: Path = Field(
        Path(".flowship/state"),
        description="this host's state: the ledger, logs, archived code, and checkpoints and "
        "savepoints unless --state-storage says otherwise",
    )
    state_storage: str | None = Field(
        None,
        description="where checkpoints and savepoints are written, as a URI every TaskManager "
        "and the cluster reach (s3://bucket/prefix, hdfs://..., or file:///a/shared/mount); a "
        "session cluster on several hosts needs one (default: STATE_DIR, this host's disk)",
    )
    ledger_dir: Path | None = Field(
        None, description="the deployment ledger's directory (default: STATE_DIR/ledger)"
    )
    ledger: str = Field(
        "",
        description="where the deployment ledger is: empty (the default) for the directory "
        "LEDGER_DIR on this host; kafka://HOST:PORT[/TOPIC] for a topic on Kafka (default topic "
        "flowship.deployments) that every host reaching the broker shares",
    )
    host_id: str | None = Field(
        None,
        description="the host identity the job's lease records (default: the host name); hosts "
        "that share a name, such as containers, need distinct ones",
    )
    health_window_s: float = Field(
        60.0,
        gt=0,
        description="after an upgrade, how long the new version has to prove "
        "itself stable (RUNNING, checkpoints, no failures, its output holding up)",
    )
    health_checkpoints: int = Field(
        2, ge=0, description="completed checkpoints a new version needs to be stable"
    )
    health_soak_s: float = Field(
        10.0,
        ge=0,
        description="the least time a new version is watched before it can be stable; an "
        "output problem must also last this long to roll it back",
    )
    health_min_inputs: int = Field(
        100, ge=0, description="input records a new version must read before it is stable"
    )
    health_max_dead_letter_increase: float = Field(
        0.05,
        ge=0,
        le=1,
        description="how much larger a share of its input a new version may send to "
        "dead-letter topics than the previous version did (0.05: 5 percentage points)",
    )
    health_min_output_ratio: float = Field(
        0.5,
        ge=0,
        description="the least outputs per input record a new version must write, as a "
        "fraction of the previous version's (0: not judged)",
    )
    health_max_lag_growth: int = Field(
        10_000,
        ge=0,
        description="by how many records a new version's consumer lag may grow within the "
        "soak time, beyond what the previous version's grew by (0: not judged)",
    )
    health_max_backpressure: float = Field(
        0.8,
        ge=0,
        le=1,
        description="the share of time a new version's Kafka sources may wait for its "
        "operators (Flink's backpressure) while the previous version's stayed below it",
    )
    health_backpressure_s: float = Field(
        30.0,
        ge=0,
        description="how long a new version's sources must stay back-pressured above "
        "health_max_backpressure, with a lag that does not shrink, to count as not keeping up "
        "(0: not judged); above the time the job takes to catch up after a hand-over",
    )
    health_platform_grace_s: float = Field(
        300.0,
        ge=0,
        description="how long the health watch waits, paused, for Flink to recover a new "
        "version from a failure of the platform (a TaskManager lost, no slots) before it rolls "
        "the version back",
    )
    bounded: bool = Field(
        False, description="stop at the Kafka offsets that are latest when the job starts"
    )
    dry_run_timeout_s: float = Field(
        300.0,
        gt=0,
        description="--dry-run: how long the rehearsal may read its sample (the input from the "
        "savepoint's offsets up to the latest offsets when it starts) before it is stopped",
    )
    environment: str = Field(
        "default",
        min_length=1,
        description="the environment this job runs in (feature-flag rules 'env=NAME' match it)",
    )
    restart_attempts: int = Field(20, ge=0, description="fixed-delay restart attempts")
    restart_delay_ms: int = Field(2000, ge=0, description="delay between restarts")

    @field_validator("ledger")
    @classmethod
    def _check_ledger(cls, value: str) -> str:
        if value not in ("", "file") and not value.startswith("kafka://"):
            msg = f"ledger {value!r} is neither empty (the directory ledger) nor kafka://HOST:PORT"
            raise ValueError(msg)
        return value

    @field_validator("state_storage")
    @classmethod
    def _check_state_storage(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        scheme, sep, rest = value.partition("://")
        if sep and scheme and rest.strip("/"):
            return value
        if value.startswith("/"):
            return value
        msg = (
            f"state storage {value!r} is neither a URI like s3://bucket/prefix or "
            "file:///shared/dir nor an absolute path"
        )
        raise ValueError(msg)

    def storage(self, job: str) -> Storage:
        """Where ``job``'s checkpoints and savepoints go (``<storage or state dir>/<job>``)."""
        return storage_root(self.state_dir, self.state_storage, job)

    @field_validator("target")
    @classmethod
    def _check_target(cls, value: str) -> str:
        if value != "local" and not value.startswith(("http://", "https://")):
            msg = f"target {value!r} is neither 'local' nor a Flink REST URL like http://host:8081"
            raise ValueError(msg)
        return value.rstrip("/")

    @property
    def ledger_path(self) -> Path:
        """Where the local ledger lives."""
        return self.ledger_dir if self.ledger_dir is not None else self.state_dir / "ledger"

    def open_ledger(self) -> Ledger:
        """The deployment ledger these settings name."""
        return open_ledger(self.ledger, self.ledger_path, host=self.host_id)

    @property
    def health(self) -> HealthThresholds:
        """How a new version's output is judged (the ``health_*`` settings)."""
        return HealthThresholds(
            soak_s=self.health_soak_s,
            min_inputs=self.health_min_inputs,
            max_dead_letter_increase=self.health_max_dead_letter_increase,
            min_output_ratio=self.health_min_output_ratio,
            max_lag_growth=self.health_max_lag_growth,
            max_backpressure=self.health_max_backpressure,
            backpressure_s=self.health_backpressure_s,
            platform_grace_s=self.health_platform_grace_s,
        )

    @property
    def is_local(self) -> bool:
        """Whether the job runs on the embedded mini-cluster."""
        return self.target == "local"


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def build_parser(prog: str | None, description: str) -> argparse.ArgumentParser:
    """The job's argument parser; every setting's help names its environment variable."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    for name, info in Settings.model_fields.items():
        env = ENV_PREFIX + name.upper()
        help_text = f"{info.description} (env {env}; default {info.default})"
        if info.annotation is bool:
            parser.add_argument(
                _flag(name),
                dest=name,
                action="store_const",
                const=True,
                default=None,
                help=help_text,
            )
        else:
            parser.add_argument(_flag(name), dest=name, default=None, help=help_text)
    parser.add_argument(
        "--manifest",
        action="store_true",
        help=(
            "print this version's manifest (JSON) and exit; builds the stream graph in a local "
            "JVM, runs nothing"
        ),
    )
    parser.add_argument(
        "--upgrade-from",
        metavar="savepoint|latest-checkpoint|PATH",
        default=None,
        help="'savepoint': check this code against the running version (from the ledger), "
        "stop that one with a savepoint, start this one from it, watch it, roll back if it is "
        "not healthy; 'latest-checkpoint': the same from the dead running version's latest "
        "retained checkpoint; PATH: start from this savepoint or checkpoint directory "
        "(holding _metadata)",
    )
    parser.add_argument(
        "--rollback",
        action="store_true",
        help="roll this job back to the version deployed before the running one (from the "
        "ledger): checked (can that version read the current state?), stopped with a "
        "savepoint, started from it, watched; refused with exit code 5 when incompatible",
    )
    parser.add_argument(
        "--from-pre-upgrade-savepoint",
        action="store_true",
        help="with --rollback: start the previous version from the savepoint it was stopped "
        "with before the upgrade; REPLAYS the input since then (downstream sees those "
        "outputs again)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="with --upgrade-from (default savepoint): check this code against the running "
        "version, take a savepoint without stopping it (or use the checkpoint / PATH), read "
        "every key of its state with this code, rehearse this code from it on a bounded sample "
        "in a throwaway mini-cluster with suffixed topics, groups and transactional ids; "
        "report; change nothing production uses (exit 0 passed, 5 refused, 8 failed)",
    )
    parser.add_argument(
        "--shadow",
        action="store_true",
        help="dark launch: check this code against the running version (from the ledger), take "
        "a savepoint of it without stopping it, and start this version from it beside it, "
        "reading the same input with consumer groups and transactional ids of its own and "
        "writing every output to its side topics (<topic>.side.<version>); production is not "
        "touched. Compare with `flowship diff JOB`, stop with `flowship abort JOB`",
    )
    parser.add_argument(
        "--canary",
        default=None,
        metavar="PARTITIONS",
        help="partition-subset canary, e.g. --canary 0,3: start this version as --shadow does, "
        "then, at an agreed cut, it serves production for these input partitions and the "
        "running version writes its outputs for them aside. Both keep reading every partition. "
        "Move the cut with `flowship promote JOB [--partitions ...]`, go back with "
        "`flowship abort JOB`",
    )
    parser.add_argument(
        "--strategy",
        choices=("in-place", "blue-green", "canary"),
        default="in-place",
        help="with --upgrade-from savepoint: 'in-place' (the default) stops the running version "
        "with a savepoint and starts this one from it; 'blue-green' starts this one beside it "
        "from a savepoint taken without stopping it, writing aside (as --shadow), judges its "
        "health while it runs dark, then promotes it at agreed cuts (it serves every input "
        "partition) and retires the running version; a version not healthy in the dark is "
        "stopped and production never sees its outputs (exit 6); 'canary' (with --canary "
        "PARTITIONS) is the same, judged while it serves those partitions in production, and "
        "a version judged bad gives them back at agreed cuts before it stops",
    )
    parser.add_argument(
        "--max-diff-rate",
        type=float,
        default=None,
        help="with --strategy blue-green or canary: after the health watch, also judge the new "
        "version's outputs against the running version's (as `flowship diff` does, paired by input "
        "record): promote only when at most this fraction of the compared inputs differ; "
        "otherwise it is stopped (exit 10, or 11 when too few inputs were compared "
        "within --verdict-timeout-s)",
    )
    parser.add_argument(
        "--min-pairs",
        type=int,
        default=1000,
        help="with --max-diff-rate: the inputs that must have been compared before the diff "
        "verdict (default 1000)",
    )
    parser.add_argument(
        "--verdict-timeout-s",
        type=float,
        default=300.0,
        help="with --max-diff-rate: how long to wait for --min-pairs compared inputs before "
        "the new version is stopped as undecided (default 300)",
    )
    parser.add_argument(
        "--json", action="store_true", help="with --dry-run: print the report as JSON"
    )
    parser.add_argument("--flowship-rehearsal", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--flowship-rollback-of", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--flowship-replaces", default=None, help=argparse.SUPPRESS)
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Environment variables and defaults, overridden by flags given on the command line."""
    overrides: dict[str, Any] = {
        name: getattr(args, name)
        for name in Settings.model_fields
        if getattr(args, name, None) is not None
    }
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        msg = (
            f"invalid flowship settings: {problems} (flags override FLOWSHIP_* environment "
            "variables; see --help)"
        )
        raise ConfigError(msg) from exc
