"""The deployment ledger: an append-only record per job of every deployment and transition.

Write-ahead: a transition is appended (and fsynced) before the action it names. Entries are
JSON lines, one file per job, never rewritten. A lease lets one deployer act on a job at a time:
:meth:`Ledger.record` refuses (:class:`LeaseLostError`) unless this ledger object holds the
job's lease, unexpired and not taken over; the deployer renews it while it works
(:class:`LeaseRenewer`). A lease whose holder died (same host, pid gone) or whose time ran out
is taken over by the next deployer.

:class:`Ledger` is the interface a shared store implements for multi-host use (the Kafka ledger,
``flowship.deploy.kafka_ledger``); :class:`LocalLedger` keeps everything in a local directory:
its lease file is only ever replaced whole (written aside, then renamed over) while its holder
has an exclusive ``flock`` on a side file, so a takeover is atomic and no reader sees a lease
half written.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowship._log import get_logger
from flowship.deploy.machine import Step, check_transition
from flowship.errors import ConfigError, FlowshipError

log = get_logger("flowship.deploy")

FORMAT = 1
#: How long a lease lasts unless renewed (seconds); a deployer renews it at a third of that.
LEASE_TTL_S = 600.0
#: A lease file that cannot be read is a holder writing it (held) until it is this old (seconds).
TORN_LEASE_GRACE_S = 30.0
#: Overrides the host name a lease records (the ``host_id`` setting): hosts that share a name
#: (containers) must each set a distinct one.
HOST_ENV = "FLOWSHIP_HOST_ID"
#: Testing hook: the deployer SIGKILLs itself right after recording this step (e.g. STOPPED),
#: or at a named moment between two steps (:data:`JOB_SUBMITTED`).
FAULT_ENV = "FLOWSHIP_FAULT_KILL_AFTER"
#: The moment a session cluster accepted the new version's job: after SUBMITTED, before RUNNING.
JOB_SUBMITTED = "JOB_SUBMITTED"


def fault_point(name: str) -> None:
    """Testing hook: die here (SIGKILL, as a crash would) when :data:`FAULT_ENV` names ``name``."""
    if os.environ.get(FAULT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


class LedgerError(FlowshipError, OSError):
    """The ledger cannot be read or written (missing directory, permissions, corrupt entry)."""


class LeaseHeldError(FlowshipError, RuntimeError):
    """Another live deployer holds the job's lease."""


class LeaseLostError(FlowshipError, RuntimeError):
    """The deployer does not hold the job's lease (any more): it must not write or act."""


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
    """Who may act on a job right now, and until when (wall clock, seconds since the epoch)."""

    job: str
    holder: str
    host: str
    pid: int
    expires: float
    ttl: float = LEASE_TTL_S


def host_id() -> str:
    """The host identity a lease of this deployer records."""
    return os.environ.get(HOST_ENV) or socket.gethostname()


def _until(when: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(when))


class Ledger(ABC):
    """Append-only deployment records and per-job leases.

    A ledger object remembers the leases it took: :meth:`record` writes only for a job whose
    lease this object holds, unexpired, and still its own in the store.
    """

    def __init__(self, host: str | None = None, lease_ttl: float = LEASE_TTL_S) -> None:
        #: the host identity this deployer's leases record
        self.host = host or host_id()
        #: how long a lease lasts unless renewed (seconds)
        self.lease_ttl = lease_ttl
        self._leases: dict[str, Lease] = {}
        self._lost: dict[str, str] = {}
        self._lease_lock = threading.RLock()

    @abstractmethod
    def entries(self, job: str) -> list[Entry]:
        """Every entry of ``job``, oldest first."""

    @abstractmethod
    def _append(self, entry: Entry) -> None:
        """Durably append one entry (the caller checked the lease)."""

    @abstractmethod
    def _acquire(self, job: str, ttl: float) -> Lease:
        """Take the job's lease in the store, or raise :class:`LeaseHeldError`."""

    @abstractmethod
    def _renew(self, lease: Lease, ttl: float) -> Lease:
        """Extend ``lease`` in the store, or raise :class:`LeaseLostError` if it is not ours."""

    @abstractmethod
    def _release(self, lease: Lease) -> None:
        """Remove ``lease`` from the store if it is still ours."""

    def _taken(self, lease: Lease) -> str | None:
        """Why ``lease`` is no longer ours in the store (None: it is)."""
        return None

    def acquire(self, job: str, ttl: float | None = None) -> Lease:
        """Take the job's lease, or raise :class:`LeaseHeldError` if a live deployer has it.

        ``ttl``: seconds the lease lasts unless renewed (default: the ledger's ``lease_ttl``).
        """
        with self._lease_lock:
            lease = self._acquire(job, self.lease_ttl if ttl is None else ttl)
            self._leases[job] = lease
            self._lost.pop(job, None)
            return lease

    def renew(self, lease: Lease) -> Lease:
        """Extend ``lease`` by its time to live; :class:`LeaseLostError` if it was lost."""
        with self._lease_lock:
            self.check_lease(lease.job, lease)
            try:
                renewed = self._renew(lease, lease.ttl)
            except LeaseLostError as exc:
                self._lost[lease.job] = str(exc)
                raise
            self._leases[lease.job] = renewed
            return renewed

    def release(self, lease: Lease) -> None:
        """Give the lease back (a lease lost meanwhile is left to its new holder)."""
        with self._lease_lock:
            if self._leases.get(lease.job, lease).holder == lease.holder:
                self._leases.pop(lease.job, None)
                self._lost.pop(lease.job, None)
            self._release(lease)

    def held(self, job: str) -> Lease | None:
        """The lease this ledger holds on ``job`` now, as last taken or renewed (None: none)."""
        return self._leases.get(job)

    @contextlib.contextmanager
    def holding(self, job: str, ttl: float | None = None) -> Iterator[Lease]:
        """The job's lease for the duration of a ``with`` block."""
        lease = self.acquire(job, ttl)
        try:
            yield lease
        finally:
            self.release(lease)

    def check_lease(self, job: str, lease: Lease | None = None) -> Lease:
        """The lease this ledger holds on ``job``; :class:`LeaseLostError` if it holds none.

        Refused when it never took it, gave it back, let it expire, failed to renew it, or the
        store names another holder now.
        """
        with self._lease_lock:
            held = self._leases.get(job)
            if held is None or (lease is not None and lease.holder != held.holder):
                msg = (
                    f"this deployer does not hold the lease of job {job!r}, so it may not "
                    "write to its ledger; take it first (Ledger.acquire / Ledger.holding)"
                )
                raise LeaseLostError(msg)
            if job in self._lost:
                raise LeaseLostError(self._lost[job])
            now = time.time()
            if held.expires < now:
                msg = (
                    f"the lease of job {job!r} held by this deployer (pid {held.pid} on "
                    f"{held.host}) expired at {_until(held.expires)} ({now - held.expires:.1f}s "
                    "ago) and was not renewed; another deployer may act on the job now, so "
                    "this one stops. See `flowship status` and run the command again"
                )
                self._lost[job] = msg
                raise LeaseLostError(msg)
            taken = self._taken(held)
            if taken is not None:
                self._lost[job] = taken
                raise LeaseLostError(taken)
            return held

    def record(self, job: str, deployment: str, step: Step, **data: Any) -> Entry:
        """Append ``deployment``'s transition to ``step``, checked against its last step.

        Only the holder of the job's lease writes: :class:`LeaseLostError` otherwise.
        """
        self.check_lease(job)
        current = self.last_step(job, deployment)
        check_transition(current, step)
        entry = Entry(job=job, deployment=deployment, step=step, at=time.time(), data=data)
        with self._lease_lock:
            self.check_lease(job)
            self._append(entry)
        fault_point(step.value)
        return entry

    def import_entries(self, job: str, entries: Sequence[Entry]) -> int:
        """Append ``entries`` of ``job`` as they are (``flowship ledger copy``); how many.

        Needs the job's lease, like :meth:`record`; the entries are not checked again.
        """
        for entry in entries:
            with self._lease_lock:
                self.check_lease(job)
                self._append(entry)
        return len(entries)

    def close(self) -> None:  # noqa: B027 (most stores hold nothing open)
        """Close what the ledger holds open (clients of a shared store)."""

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
            if entries[-1].step in (
                Step.FAILED,
                Step.ROLLING_BACK,
                Step.ROLLED_BACK,
                Step.RETIRED,
                Step.PROMOTED,
            ):
                continue  # it ran, then failed or was retired: not the current deployment
            if steps & {Step.RUNNING, Step.STABLE}:
                return deployment, merged(entries)
        return None

    @staticmethod
    def new_deployment_id() -> str:
        """A fresh deployment id (time-ordered)."""
        return f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{uuid.uuid4().hex[:8]}"


class LeaseRenewer:
    """Renews the lease a ledger holds on a job, at a third of its time to live, in a thread.

    Used as a context manager around a deployment: whenever the ledger holds the job's lease
    (taken and given back by the deployment as it goes), it is renewed before two thirds of its
    time have run out. A renewal that is refused (the lease was taken over) marks the lease lost
    in the ledger: the deployment's next :meth:`Ledger.record` raises :class:`LeaseLostError`,
    so it stops before its next step. A renewal that fails otherwise (the store did not answer)
    is tried again at the next tick; if none succeeds the lease expires, with the same effect.
    """

    def __init__(self, ledger: Ledger, job: str) -> None:
        self.ledger = ledger
        self.job = job
        #: why the lease was lost (None while it was not)
        self.lost: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"flowship-lease-{job}", daemon=True)

    def __enter__(self) -> LeaseRenewer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(min(1.0, self.ledger.lease_ttl / 10)):
            lease = self.ledger.held(self.job)
            if lease is None or lease.expires - time.time() > lease.ttl * 2 / 3:
                continue
            try:
                self.ledger.renew(lease)
            except LeaseLostError as exc:
                if self.ledger.held(self.job) is None:
                    continue  # given back meanwhile
                self.lost = str(exc)
                log.error("lease.lost", job=self.job, reason=str(exc))
            except (FlowshipError, OSError) as exc:
                log.warning("lease.renew_failed", job=self.job, error=str(exc))


class LocalLedger(Ledger):
    """A ledger in a local directory: ``<root>/<job>.jsonl`` and ``<root>/<job>.lease``."""

    def __repr__(self) -> str:
        return str(self.root)

    def __init__(self, root: Path, host: str | None = None, lease_ttl: float = LEASE_TTL_S) -> None:
        super().__init__(host, lease_ttl)
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
        """The file's complete lines: a last line without its newline is not an entry yet.

        The kernel copies a large write page by page and does not hold a concurrent read off,
        so readers take a shared ``flock`` and the writer an exclusive one. A writer that died
        mid-write leaves a torn tail: that entry was never acknowledged, so the action it names
        was not begun, and it is skipped.
        """
        with path.open(encoding="utf-8") as f:
            fcntl.flock(f, fcntl.LOCK_SH)
            lines = f.readlines()  # the lock goes with the file
        for line in lines:
            if line.endswith("\n") and line.strip():
                yield line

    def _append(self, entry: Entry) -> None:
        self._ensure_root()
        line = json.dumps(entry.to_json(), sort_keys=True) + "\n"
        try:
            fd = os.open(self._file(entry.job), os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)  # readers wait for the whole line
                self._cut_torn_tail(fd)
                os.write(fd, line.encode())
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            msg = f"cannot append to the ledger {self._file(entry.job)}: {exc}"
            raise LedgerError(msg) from exc

    @staticmethod
    def _cut_torn_tail(fd: int) -> None:
        """Drop a last line a dead writer left unfinished, so the next entry starts a line.

        Only the lease holder appends, so an unterminated tail seen here is not a write in
        flight: it is an entry that was never acknowledged (see :meth:`_lines`).
        """
        size = os.fstat(fd).st_size
        if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
            return
        end = size
        while end > 0:  # back to the last newline, a block at a time
            start = max(0, end - 65536)
            block = os.pread(fd, end - start, start)
            cut = block.rfind(b"\n")
            if cut >= 0:
                end = start + cut + 1
                break
            end = start
        log.warning("ledger.torn_tail_dropped", bytes=size - end)
        os.ftruncate(fd, end)

    def _lease_file(self, job: str) -> Path:
        self._file(job)  # checks the name
        return self.root / f"{job}.lease"

    @contextlib.contextmanager
    def _locked(self, job: str) -> Iterator[Path]:
        """An exclusive ``flock`` on the job's side lock file: one lease change at a time."""
        self._ensure_root()
        path = self._lease_file(job)
        try:
            fd = os.open(path.with_suffix(".lease.lock"), os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            msg = f"cannot open the lease lock of job {job!r} in {self.root}: {exc}"
            raise LedgerError(msg) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield path
        finally:
            os.close(fd)  # closing it unlocks

    @staticmethod
    def _read_lease(path: Path) -> Lease | None:
        """The lease in ``path``; None if there is none or it cannot be read (torn)."""
        try:
            raw = json.loads(path.read_text())
            return Lease(
                job=raw["job"],
                holder=raw["holder"],
                host=raw["host"],
                pid=int(raw["pid"]),
                expires=float(raw["expires"]),
                ttl=float(raw.get("ttl", LEASE_TTL_S)),
            )
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError):
            return None

    @staticmethod
    def _write_lease(path: Path, lease: Lease) -> None:
        """Replace the lease file whole: written aside and fsynced, then renamed over it."""
        aside = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
        try:
            fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                os.write(fd, json.dumps(lease.__dict__).encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(aside, path)
        except OSError as exc:
            aside.unlink(missing_ok=True)
            msg = f"cannot write the lease {path}: {exc}"
            raise LedgerError(msg) from exc

    def _alive(self, lease: Lease) -> bool:
        if lease.expires < time.time():
            return False
        if lease.host != self.host:
            return True  # cannot see another host's processes: trust the expiry
        try:
            os.kill(lease.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def _acquire(self, job: str, ttl: float) -> Lease:
        """Take the job's lease (recovering a stale one), or raise LeaseHeldError."""
        lease = Lease(
            job=job,
            holder=uuid.uuid4().hex,
            host=self.host,
            pid=os.getpid(),
            expires=time.time() + ttl,
            ttl=ttl,
        )
        with self._locked(job) as path:
            held = self._read_lease(path)
            if held is None:
                with contextlib.suppress(FileNotFoundError):
                    age = time.time() - path.stat().st_mtime
                    if age < TORN_LEASE_GRACE_S:
                        # a holder (of an older flowship, which created the file before
                        # writing it) may be between the two: held until the grace has passed
                        msg = (
                            f"the lease of job {job!r} ({path}) is being written by another "
                            f"deployer; try again in {TORN_LEASE_GRACE_S - age:.0f}s"
                        )
                        raise LeaseHeldError(msg)
            elif self._alive(held):
                msg = (
                    f"job {job!r} is being deployed by pid {held.pid} on {held.host} "
                    f"(lease until {_until(held.expires)}); wait for it to finish, or stop it"
                )
                raise LeaseHeldError(msg)
            self._write_lease(path, lease)
        return lease

    def _renew(self, lease: Lease, ttl: float) -> Lease:
        with self._locked(lease.job) as path:
            taken = self._taken(lease)
            if taken is not None:
                raise LeaseLostError(taken)
            renewed = Lease(
                job=lease.job,
                holder=lease.holder,
                host=lease.host,
                pid=lease.pid,
                expires=time.time() + ttl,
                ttl=ttl,
            )
            self._write_lease(path, renewed)
        return renewed

    def _taken(self, lease: Lease) -> str | None:
        held = self._read_lease(self._lease_file(lease.job))
        if held is not None and held.holder == lease.holder:
            return None
        now = f"it names pid {held.pid} on {held.host} now" if held else "it was removed"
        return (
            f"the lease of job {lease.job!r} in {self.root} is no longer this deployer's "
            f"(pid {lease.pid} on {lease.host}): {now}, another deployer may act on the job; "
            "this one stops without changing anything more. See `flowship status` and run the "
            "command again"
        )

    def _release(self, lease: Lease) -> None:
        """Remove the lease file if ``lease`` still holds it."""
        with self._locked(lease.job) as path:
            held = self._read_lease(path)
            if held is not None and held.holder == lease.holder:
                path.unlink(missing_ok=True)
