"""The ``flowship`` CLI: ``check`` exit codes 0/1/2, ``--json``, ``manifest``, job files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_check_upgrade import V1, V1_ENUM, V2, manifest, state

from flowship.cli import EXIT_BAD_INPUT, EXIT_INCOMPATIBLE, EXIT_OK, main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_JOB = ROOT / "examples" / "click_sessions" / "job.py"


def save(tmp_path: Path, name: str, data: Any) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return str(path)


@pytest.fixture
def old(tmp_path: Path) -> str:
    return save(tmp_path, "old.json", manifest())


def test_exit_codes_are_the_documented_ones() -> None:
    assert (EXIT_OK, EXIT_INCOMPATIBLE, EXIT_BAD_INPUT) == (0, 1, 2)
    import flowship.cli

    doc = flowship.cli.__doc__ or ""
    for line in ("0   compatible", "1   incompatible", "2   bad input", "3   a job failed"):
        assert line in doc


def test_compatible_exits_0(tmp_path: Path, old: str, capsys: pytest.CaptureFixture[str]) -> None:
    new = save(
        tmp_path,
        "new.json",
        manifest(version="2", states={"session-stats": {"session": state({1: V1, 2: V2})}}),
    )
    assert main(["check", old, new]) == EXIT_OK
    out = capsys.readouterr().out
    assert "upgrade shop 1 -> 2: compatible" in out
    assert "stored versions 1 readable by v2 (1 -> 2 by Avro resolution)" in out


def test_incompatible_exits_1(tmp_path: Path, old: str, capsys: pytest.CaptureFixture[str]) -> None:
    new = save(
        tmp_path, "new.json", manifest(states={"session-stats": {"session": state({1: V1_ENUM})}})
    )
    assert main(["check", old, new]) == EXIT_INCOMPATIBLE
    out = capsys.readouterr().out
    assert "INCOMPATIBLE" in out
    assert "[unknown_writer_version] operator session-stats / state session / version 1" in out
    assert "fix: keep version 1 declared" in out


def test_json_output_parses(tmp_path: Path, old: str, capsys: pytest.CaptureFixture[str]) -> None:
    new = save(tmp_path, "new.json", manifest(mode="process"))
    assert main(["check", old, new, "--json"]) == EXIT_INCOMPATIBLE
    data = json.loads(capsys.readouterr().out)
    assert data["compatible"] is False
    assert [p["kind"] for p in data["problems"]] == ["execution_mode_changed"]
    assert main(["check", old, old, "--json"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["compatible"] is True


def test_job_mismatch_is_incompatible_not_bad_input(tmp_path: Path, old: str) -> None:
    assert main(["check", old, save(tmp_path, "n.json", manifest(job="other"))]) == 1


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("bad.json", "{not json", "not JSON"),
        ("list.json", "[1, 2]", "not a flowship job manifest"),
        ("future.json", json.dumps(dict(manifest(), format=99)), "format 99"),
        ("partial.json", json.dumps({"format": 1, "job": "shop"}), "lacks"),
        ("manifest.txt", json.dumps(manifest()), "expected a job file"),
    ],
)
def test_bad_input_exits_2(
    tmp_path: Path,
    old: str,
    capsys: pytest.CaptureFixture[str],
    name: str,
    content: str,
    expected: str,
) -> None:
    bad = save(tmp_path, name, content)
    assert main(["check", old, bad]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert expected in err
    assert err.startswith("flowship check: error:")


def test_missing_file_exits_2(tmp_path: Path, old: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(tmp_path / "gone.py"), old]) == EXIT_BAD_INPUT
    assert "gone.py: no such file" in capsys.readouterr().err


def test_job_file_that_fails_exits_2_with_stderr_tail(
    tmp_path: Path, old: str, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = save(tmp_path, "broken.py", "raise RuntimeError('boom in the job module')\n")
    assert main(["check", old, broken]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "broken.py" in err and "exited with 1" in err
    assert "boom in the job module" in err


def test_python_file_that_is_not_a_job_exits_2(
    tmp_path: Path, old: str, capsys: pytest.CaptureFixture[str]
) -> None:
    silent = save(tmp_path, "silent.py", "x = 1\n")
    assert main(["check", old, silent]) == EXIT_BAD_INPUT
    assert "printed nothing" in capsys.readouterr().err


def test_invalid_flags_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["check", "only-one.json"])
    assert exc.value.code == EXIT_BAD_INPUT
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == EXIT_BAD_INPUT


def test_help_lists_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["check", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "exit codes:" in out and "1  incompatible" in out and "2  bad input" in out


def test_manifest_of_a_job_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["manifest", str(EXAMPLE_JOB)]) == EXIT_OK
    data = json.loads(capsys.readouterr().out)
    assert data["job"] == "click-sessions"
    assert data["format"] == 1


def test_check_example_job_against_itself_in_a_subprocess() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "flowship.cli", "check", str(EXAMPLE_JOB), str(EXAMPLE_JOB)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == EXIT_OK, done.stdout + done.stderr
    assert "upgrade click-sessions" in done.stdout and ": compatible" in done.stdout
