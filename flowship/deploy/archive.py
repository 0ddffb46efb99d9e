"""The deployed code, archived: a rollback runs exactly the code that was deployed.

Every deployment's ``PLANNED`` entry names an archive of the job's code as it was when the
deployment began (``code_archive``): the Python modules and Avro schemas under the job script's
directory, in a zip under ``STATE_DIR/JOB/code/``, named by a digest of its contents, so the
same code is stored once. A rollback (automatic, or ``flowship rollback``) extracts the archive of
the version it goes back to and runs the script from there, whatever now sits at the path it was
deployed from. An archive that is gone or does not match its digest is refused; the code at the
recorded path is then used only if its ``code_digest`` (script and schemas) is still the one
recorded, as on another host that shares a Kafka ledger but not the state directory.

What is archived: ``*.py`` and ``*.avsc`` files under the script's directory (not in hidden or
``__pycache__`` directories), up to :data:`MAX_FILES` files and :data:`MAX_BYTES`. Code the job
imports from elsewhere (installed packages, a directory it puts on ``sys.path``) is not.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from flowship._log import get_logger
from flowship.errors import ConfigError

log = get_logger("flowship.deploy")

#: The file kinds that make up a job's code.
SUFFIXES = (".py", ".avsc")
MAX_FILES = 2_000
MAX_BYTES = 50 * 1024 * 1024
#: zip members get this time, so the same files make the same archive
_EPOCH = (1980, 1, 1, 0, 0, 0)


class CodeArchiveError(ConfigError):
    """A deployment's archived code is missing, damaged, or too large to archive."""


def code_digest(paths: Iterable[Path]) -> str:
    """sha256 over the job script and the schema files it declares (sorted, by content)."""
    digest = hashlib.sha256()
    for path in sorted({p.resolve() for p in paths if p.is_file()}):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return "sha256:" + digest.hexdigest()


def script_digest(script: Path) -> str:
    """The ``code_digest`` a job's manifest records: its script and the schemas beside it."""
    return code_digest([script, *script.parent.rglob("*.avsc")])


def _code_files(root: Path) -> list[Path]:
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__pycache__")
        files += [Path(dirpath) / f for f in sorted(filenames) if f.endswith(SUFFIXES)]
    return files


def _contents_digest(members: Iterable[tuple[str, bytes]]) -> str:
    digest = hashlib.sha256()
    for name, data in sorted(members):
        digest.update(f"{name}\0{len(data)}\0".encode())
        digest.update(data)
    return "sha256:" + digest.hexdigest()


def archive_code(script: Path, store: Path) -> dict[str, Any]:
    """Archive the code of the job whose script is ``script`` under ``store``; what to record.

    Idempotent: the same code gives the same archive, written once (aside, then renamed).
    """
    script = script.resolve()
    root = script.parent
    files = _code_files(root)
    if len(files) > MAX_FILES:
        msg = (
            f"the job's directory {root} holds {len(files)} Python and schema files, more than "
            f"the {MAX_FILES} flowship archives with each deployment; keep the job in a "
            "directory of its own"
        )
        raise CodeArchiveError(msg)
    members = [(f.relative_to(root).as_posix(), f.read_bytes()) for f in files]
    size = sum(len(data) for _, data in members)
    if size > MAX_BYTES:
        msg = (
            f"the job's code under {root} is {size} bytes, more than the {MAX_BYTES} flowship "
            "archives with each deployment; keep the job in a directory of its own"
        )
        raise CodeArchiveError(msg)
    digest = _contents_digest(members)
    path = store / f"{digest.removeprefix('sha256:')}.zip"
    if not path.exists():
        store.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, data in sorted(members):
                zf.writestr(zipfile.ZipInfo(name, _EPOCH), data)
        fd, aside = tempfile.mkstemp(dir=store, prefix=".archive-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(buffer.getvalue())
                f.flush()
                os.fsync(f.fileno())
            os.replace(aside, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(aside)
    return {
        "archive": str(path),
        "digest": digest,
        "script": script.name,
        "from": str(root),
        "files": len(members),
    }


def _verified_members(archive: Path, digest: str) -> list[tuple[str, bytes]]:
    try:
        with zipfile.ZipFile(archive) as zf:
            members = [(info.filename, zf.read(info)) for info in zf.infolist()]
    except (OSError, zipfile.BadZipFile) as exc:
        msg = f"the archived code {archive} cannot be read ({exc})"
        raise CodeArchiveError(msg) from exc
    found = _contents_digest(members)
    if found != digest:
        msg = f"the archived code {archive} does not match its digest ({found}, not {digest})"
        raise CodeArchiveError(msg)
    for name, _ in members:
        if name.startswith("/") or ".." in Path(name).parts:
            msg = f"the archived code {archive} holds a path outside its directory: {name!r}"
            raise CodeArchiveError(msg)
    return members


def restore_code(record: Mapping[str, Any]) -> Path:
    """Extract an archive :func:`archive_code` made (once) and return its script's path."""
    archive = Path(str(record["archive"]))
    digest = str(record["digest"])
    if not archive.is_file():
        msg = f"the archived code {archive} is gone"
        raise CodeArchiveError(msg)
    members = _verified_members(archive, digest)
    target = archive.with_suffix("")  # <store>/<digest>/
    if not target.is_dir():
        aside = Path(tempfile.mkdtemp(dir=archive.parent, prefix=".extract-"))
        try:
            for name, data in members:
                path = aside / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
            try:
                aside.rename(target)
            except OSError:
                if not target.is_dir():  # not another process's extraction that won the race
                    raise
        finally:
            shutil.rmtree(aside, ignore_errors=True)
    script = target / str(record["script"])
    if not script.is_file():
        msg = f"the archived code {archive} has no script {record['script']!r}"
        raise CodeArchiveError(msg)
    return script


def runnable_script(data: Mapping[str, Any], version: object) -> str:
    """The script to run for a recorded deployment (``data``: its merged ledger entries).

    Its archived code when there is one; else the script at its recorded path, if that still
    holds the code that was deployed (the recorded ``code_digest``). CodeArchiveError if neither.
    """
    recorded = data.get("script")
    archived = data.get("code_archive")
    problem = "the ledger records no archive of its code (deployed before flowship kept one)"
    if isinstance(archived, Mapping):
        try:
            return str(restore_code(archived))
        except CodeArchiveError as exc:
            problem = str(exc)
    digest = (data.get("manifest") or {}).get("code_digest") or data.get("code_digest")
    if recorded and Path(str(recorded)).is_file():
        now = script_digest(Path(str(recorded)))
        if digest is None or now == digest:
            if isinstance(archived, Mapping):
                log.warning("code.archive_unusable", problem=problem, script=recorded)
            return str(recorded)
        problem += f"; {recorded} has changed since (code digest {now}, deployed {digest})"
    else:
        problem += f"; the script it was deployed from ({recorded}) is gone"
    msg = (
        f"cannot run version {version} as deployed: {problem}. Put that version's code back "
        "where it was deployed from, or start the version you want by hand with "
        "--upgrade-from SAVEPOINT"
    )
    raise CodeArchiveError(msg)
