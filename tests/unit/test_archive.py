"""The deployed code is archived; a rollback runs exactly that code, or refuses."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from flowship.deploy.archive import (
    CodeArchiveError,
    archive_code,
    restore_code,
    runnable_script,
    script_digest,
)


def _job(root: Path, body: str = "VERSION = '1'\n") -> Path:
    (root / "state").mkdir(parents=True)
    (root / "common.py").write_text("GREETING = 'hello'\n")
    (root / "state" / "s_v1.avsc").write_text('{"type": "record", "name": "S", "fields": []}')
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "common.cpython-311.pyc").write_bytes(b"\0" * 10)
    (root / ".git").mkdir()
    (root / ".git" / "HEAD.py").write_text("not code\n")
    (root / "notes.md").write_text("not code either\n")
    script = root / "job.py"
    script.write_text("from common import GREETING\n" + body + "print(GREETING, VERSION)\n")
    return script


def test_the_archive_holds_the_jobs_modules_and_schemas_and_runs_as_deployed(
    tmp_path: Path,
) -> None:
    script = _job(tmp_path / "src")
    record = archive_code(script, tmp_path / "store")
    assert record["files"] == 3 and record["script"] == "job.py"
    with zipfile.ZipFile(record["archive"]) as zf:
        assert sorted(zf.namelist()) == ["common.py", "job.py", "state/s_v1.avsc"]
    # the code at the path changes (or is gone): the archive still runs version 1
    script.write_text("raise SystemExit('not version 1')\n")
    restored = restore_code(record)
    assert restored.parent != script.parent
    done = subprocess.run([sys.executable, str(restored)], capture_output=True, text=True,
                          check=True)
    assert done.stdout == "hello 1\n"
    assert restore_code(record) == restored  # extracted once


def test_the_same_code_is_stored_once(tmp_path: Path) -> None:
    script = _job(tmp_path / "a")
    first = archive_code(script, tmp_path / "store")
    again = archive_code(script, tmp_path / "store")
    other = archive_code(_job(tmp_path / "b"), tmp_path / "store")  # same files elsewhere
    assert first["archive"] == again["archive"] == other["archive"]
    assert len(list((tmp_path / "store").glob("*.zip"))) == 1
    script.write_text("VERSION = '2'\n")
    assert archive_code(script, tmp_path / "store")["digest"] != first["digest"]


def test_a_damaged_or_missing_archive_is_refused(tmp_path: Path) -> None:
    record = archive_code(_job(tmp_path / "src"), tmp_path / "store")
    archive = Path(record["archive"])
    with zipfile.ZipFile(archive) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    members["common.py"] = b"GREETING = 'tampered'\n"
    with zipfile.ZipFile(archive, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    with pytest.raises(CodeArchiveError, match="does not match its digest"):
        restore_code(record)
    archive.unlink()
    with pytest.raises(CodeArchiveError, match="is gone"):
        restore_code(record)


def test_runnable_script_falls_back_only_to_unchanged_code(tmp_path: Path) -> None:
    script = _job(tmp_path / "src")
    record = archive_code(script, tmp_path / "store")
    data = {"script": str(script), "code_archive": record,
            "manifest": {"code_digest": script_digest(script)}}
    assert Path(runnable_script(data, "1")).parent == Path(record["archive"]).with_suffix("")
    Path(record["archive"]).unlink()
    # the archive is gone, the code at the path is as deployed: that is used
    assert runnable_script(data, "1") == str(script)
    script.write_text("VERSION = '9'\n")
    with pytest.raises(CodeArchiveError) as exc:
        runnable_script(data, "1")
    assert "cannot run version 1 as deployed: the archived code" in str(exc.value)
    assert f"{script} has changed since" in str(exc.value)
    assert "--upgrade-from SAVEPOINT" in str(exc.value)
    # recorded before archives existed: the path, when its code is unchanged
    legacy = {"script": str(script), "manifest": {"code_digest": script_digest(script)}}
    assert runnable_script(legacy, "1") == str(script)
    script.unlink()
    with pytest.raises(CodeArchiveError, match=r"deployed from .* is gone"):
        runnable_script(legacy, "1")


def test_a_job_directory_too_large_to_archive_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flowship.deploy import archive

    script = _job(tmp_path / "src")
    monkeypatch.setattr(archive, "MAX_FILES", 2)
    with pytest.raises(CodeArchiveError, match="keep the job in a directory of its own"):
        archive_code(script, tmp_path / "store")


def test_a_deployment_whose_code_cannot_be_archived_goes_ahead_without_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flowship.deploy import archive
    from flowship.deploy.engine import Engine, Policy, Release
    from flowship.deploy.ledger import LocalLedger

    script = _job(tmp_path / "src")
    engine = Engine(LocalLedger(tmp_path / "ledger"), Release("j", "1", {}, str(script)),
                    object(), Policy(tmp_path / "state"))  # type: ignore[arg-type]
    monkeypatch.setattr(archive, "MAX_FILES", 2)
    assert engine._code() == {}  # recorded without an archive; the log says why
    fresh = Engine(LocalLedger(tmp_path / "ledger"), Release("j", "1", {}, str(script)),
                   object(), Policy(tmp_path / "state"))  # type: ignore[arg-type]
    monkeypatch.setattr(archive, "MAX_FILES", 2_000)
    record = fresh._code()["code_archive"]
    assert Path(record["archive"]).is_file() and record["script"] == "job.py"
