"""The deployment ledger: an append-only record per job of every deployment and transition.

Write-ahead: a transition is appended (and fsynced) before the action it names. Entries are
JSON lines, one file per job, never rewritten. A lease (one file per job, created with
``O_EXCL``) lets one deployer act on a job at a time; a lease whose holder died (same host, pid
gone) or whose time ran out is taken over, atomically, by the next deployer.

:class:`Ledger` is the interface a shared store (a Kafka topic, object storage) implements for
multi-host use; :class:`LocalLedger` keeps everything in a local directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowship.deploy.machine import Step, check_transition
from flowship.errors import ConfigError, FlowshipError

FORMAT = 1
#: Testing hook: the deployer SIGKILLs itself right after recording this step (e.g. STOPPED).
FAULT_ENV = "FLOWSHIP_FAULT_KILL_AFTER"


class LedgerError(FlowshipError, OSError):
    """The ledger cannot be read or written (missing directory, permissions, corrupt entry)."""


class LeaseHeldError(FlowshipError, RuntimeError):
    """Another live deployer holds the job's lease."""


@dataclass(frozen=True)
class Entry:
    """One ledger line: a deployment's transition to ``step``, with what is known then."""

    job: str
    deployment: str
    step: Step
    at: float
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The entry as written to the ledger."""
        return {
            "format": FORMAT,
            "job": self.job,
            "deployment": self.deployment,
            "step": self.step.value,
            "at": self.at,
            "data": self.data,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Entry:
        """Parse one ledger line."""
        return cls(
            job=raw["job"],
            deployment=raw["deployment"],
            step=Step(raw["step"]),
            at=float(raw["at"]),
            data=dict(raw.get("data") or {}),
        )


def merged(entries: Sequence[Entry]) -> dict[str, Any]:
    """A deployment's data, later entries over earlier ones."""
    data: dict[str, Any] = {}
    for e in entries:
        data.update(e.data)
    return data


@dataclass(frozen=True)
class Lease:
    """Who may act on a job right now."""

    job: str
    holder: str
    host: str
    pid: int
    expires: float


class Ledger(ABC):
    """Append-only deployment records and per-job leases."""

    @abstractmethod
    def entries(self, job: str) -> list[Entry]:
        """Every entry of ``job``, oldest first."""

    @abstractmethod
    def _append(self, entry: Entry) -> None:
        """Durably append one entry."""

    @abstractmethod
    def acquire(self, job: str, ttl: float = 600.0) -> Lease:
        """Take the job's lease, or raise :class:`LeaseHeldError` if a live deployer has it."""

    @abstractmethod
    def release(self, lease: Lease) -> None:
        """Give the lease back (only its holder can)."""

    def record(self, job: str, deployment: str, step: Step, **data: Any) -> Entry:
        """Append ``deployment``'s transition to ``step``, checked against its last step."""
        current = self.last_step(job, deployment)
        check_transition(current, step)
        entry = Entry(job=job, deployment=deployment, step=step, at=time.time(), data=data)
        self._append(entry)
        if os.environ.get(FAULT_ENV) == step.value:
            # fault injection for tests: die right after recording this step, as a crash would
            os.kill(os.getpid(), signal.SIGKILL)
        return entry

    def last_step(self, job: str, deployment: str) -> Step | None:
        """The last recorded step of one deployment (None if it has none)."""
        steps = [e.step for e in self.entries(job) if e.deployment == deployment]
        return steps[-1] if steps else None

    def deployments(self, job: str) -> dict[str, list[Entry]]:
        """Each deployment's entries, in the order deployments started."""
        out: dict[str, list[Entry]] = {}
        for entry in self.entries(job):
            out.setdefault(entry.deployment, []).append(entry)
        return out

    def current(self, job: str) -> tuple[str, dict[str, Any]] | None:
        """The newest deployment that reached RUNNING (or STABLE), with its merged data."""
        for deployment, entries in reversed(self.deployments(job).items()):
            steps = {e.step for e in entries}
            if entries[-1].step in (Step.FAILED, Step.ROLLING_BACK, Step.ROLLED_BACK):
                continue  # it ran, then failed: not the current deployment
            if steps & {Step.RUNNING, Step.STABLE}:
                return deployment, merged(entries)
        return None

    @staticmethod
    def new_deployment_id() -> str:
        """A fresh deployment id (time-ordered)."""
        return f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{uuid.uuid4().hex[:8]}"


class LocalLedger(Ledger):
    """A ledger in a local directory: ``<root>/<job>.jsonl`` and ``<root>/<job>.lease``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _ensure_root(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / f".probe-{os.getpid()}"
            probe.write_text("")
            probe.unlink()
        except OSError as exc:
            msg = (
                f"the ledger directory {self.root} is not writable ({exc}); point "
                "--ledger-dir / FLOWSHIP_LEDGER_DIR at a writable directory"
            )
            raise LedgerError(msg) from exc

    def _file(self, job: str) -> Path:
        if not job or "/" in job or job.startswith("."):
            msg = f"invalid job name for the ledger: {job!r}"
            raise ConfigError(msg)
        return self.root / f"{job}.jsonl"

    def entries(self, job: str) -> list[Entry]:
        """Every entry of ``job``, oldest first."""
        path = self._file(job)
        if not path.exists():
            return []
        out = []
        for number, line in enumerate(self._lines(path), start=1):
            try:
                out.append(Entry.from_json(json.loads(line)))
            except (ValueError, KeyError, TypeError) as exc:
                msg = (
                    f"ledger {path} line {number} is not a valid entry ({exc}); the file is "
                    "append-only: restore it from a backup rather than editing it"
                )
                raise LedgerError(msg) from exc
        return out

    @staticmethod
    def _lines(path: Path) -> Iterator[str]:
        with path.open(encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    yield line

    def _append(self, entry: Entry) -> None:
        self._ensure_root()
        line = json.dumps(entry.to_json(), sort_keys=True) + "\n"
        try:
            fd = os.open(self._file(entry.job), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line.encode())
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            msg = f"cannot append to the ledger {self._file(entry.job)}: {exc}"
            raise LedgerError(msg) from exc

    def _lease_file(self, job: str) -> Path:
        return self.root / f"{job}.lease"

    def _read_lease(self, path: Path) -> Lease | None:
        try:
            raw = json.loads(path.read_text())
            return Lease(
                job=raw["job"],
                holder=raw["holder"],
                host=raw["host"],
                pid=int(raw["pid"]),
                expires=float(raw["expires"]),
            )
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError):
            return None  # a torn write: the holder died mid-create; treat as stale

    @staticmethod
    def _alive(lease: Lease) -> bool:
        if lease.expires < time.time():
            return False
        if lease.host != socket.gethostname():
            return True  # cannot see another host's processes: trust the expiry
        try:
            os.kill(lease.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def acquire(self, job: str, ttl: float = 600.0) -> Lease:
        """Take the job's lease (recovering a stale one), or raise LeaseHeldError."""
        self._ensure_root()
        path = self._lease_file(job)
        lease = Lease(
            job=job,
            holder=uuid.uuid4().hex,
            host=socket.gethostname(),
            pid=os.getpid(),
            expires=time.time() + ttl,
        )
        body = json.dumps(lease.__dict__).encode()
        for _ in range(3):
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                held = self._read_lease(path)
                if held is not None and self._alive(held):
                    msg = (
                        f"job {job!r} is being deployed by pid {held.pid} on {held.host} "
                        f"(lease until {time.strftime('%H:%M:%S', time.localtime(held.expires))}"
                        "); wait for it to finish, or stop it"
                    )
                    raise LeaseHeldError(msg) from None
                # stale: move it aside atomically; only one contender's rename succeeds
                stale = path.with_suffix(f".stale-{uuid.uuid4().hex[:8]}")
                with contextlib.suppress(FileNotFoundError):
                    os.rename(path, stale)
                    stale.unlink()
                continue
            try:
                os.write(fd, body)
                os.fsync(fd)
            finally:
                os.close(fd)
            return lease
        msg = f"could not take the lease of job {job!r} in {self.root} after recovering it"
        raise LeaseHeldError(msg)

    def release(self, lease: Lease) -> None:
        """Remove the lease file if ``lease`` still holds it."""
        path = self._lease_file(lease.job)
        held = self._read_lease(path)
        if held is not None and held.holder == lease.holder:
            path.unlink(missing_ok=True)
