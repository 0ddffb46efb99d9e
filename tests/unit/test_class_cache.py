"""The class-data archive's bookkeeping (flowship.job._class_cache), without a JVM.

Whether a written archive loads is the JVM's answer (``_loads``); here it is given, so the
decisions around it are pinned: when a run writes, waits, checks, takes or gives up.
tests/integration/test_local_jvm.py runs the real JVMs.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from flowship.job import _class_cache as cc

KEY = "k" * 20


def args(folder: Path, *, write: bool = True) -> list[str]:
    return cc._args(folder, KEY, "java", "a.jar", "", write)


def part(folder: Path, name: str, age: float) -> Path:
    path = folder / f"{KEY}.{name}.part"
    path.write_bytes(b"archive")
    then = time.time() - age
    os.utime(path, (then, then))
    return path


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """What the JVM says about each archive checked, in order (popped)."""
    answers: list[bool] = []
    monkeypatch.setattr(cc, "_loads", lambda java, cp, jvm_args, archive: answers.pop(0))
    return answers


def test_a_run_that_finds_nothing_writes_only_if_it_runs_a_job(tmp_path: Path, loads) -> None:
    assert args(tmp_path, write=False) == []
    written = args(tmp_path)
    assert written[-1] == f"-XX:ArchiveClassesAtExit={tmp_path}/{KEY}.{os.getpid()}.part"
    assert set(cc.QUIET) <= set(written)


def test_an_archive_being_written_is_left_alone_and_nothing_else_written(
    tmp_path: Path, loads
) -> None:
    part(tmp_path, "1", age=1.0)
    assert args(tmp_path) == []
    assert loads == []  # not asked: never checked while it may still change


def test_a_settled_archive_that_loads_is_taken_and_used(tmp_path: Path, loads) -> None:
    written = part(tmp_path, "1", age=cc.SETTLE_S + 1)
    loads.append(True)
    used = args(tmp_path, write=False)
    assert used[-1] == f"-XX:SharedArchiveFile={tmp_path}/{KEY}.jsa"
    assert not written.exists() and (tmp_path / f"{KEY}.jsa").read_bytes() == b"archive"
    assert args(tmp_path, write=False) == used  # next time: no check, the archive as it is
    # another JVM wrote one too: deleted once settled, the archive stays as it is
    late, settled = part(tmp_path, "2", age=1.0), part(tmp_path, "3", age=cc.SETTLE_S + 1)
    assert args(tmp_path) == used
    assert late.exists() and not settled.exists()


def test_an_archive_that_does_not_load_is_deleted_and_counted_until_given_up(
    tmp_path: Path, loads
) -> None:
    for n in range(1, cc.MAX_FAILURES + 1):
        broken = part(tmp_path, str(n), age=cc.SETTLE_S + 1)
        loads.append(False)
        got = args(tmp_path)
        assert not broken.exists()
        assert (tmp_path / f"{KEY}.failures").read_text() == str(n)
        # a refused archive is written again, until the key is given up
        if n < cc.MAX_FAILURES:
            assert "ArchiveClassesAtExit" in got[-1], got
        else:
            assert got == []
    assert args(tmp_path) == []  # given up: neither written nor checked again
    assert not (tmp_path / f"{KEY}.jsa").exists()


def test_leftovers_of_any_key_are_forgotten_after_a_day(tmp_path: Path, loads) -> None:
    other = tmp_path / "another-key.7.part"
    other.write_bytes(b"x")
    then = time.time() - cc.FORGET_PART_S - 10
    os.utime(other, (then, then))
    args(tmp_path)
    assert not other.exists()


def test_a_jvm_args_choice_or_the_switch_turns_it_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(cc.CACHE_ENV, str(tmp_path))
    assert cc.class_cache_args("-Xshare:off", write=True) == []
    assert cc.class_cache_args("-XX:SharedArchiveFile=/x.jsa", write=True) == []
    monkeypatch.setenv(cc.CACHE_ENV, "off")
    assert cc.class_cache_args("", write=True) == []
    assert list(tmp_path.iterdir()) == []


def test_the_key_changes_with_a_jar_or_the_jvm_args(tmp_path: Path) -> None:
    jar = tmp_path / "a.jar"
    jar.write_bytes(b"1")
    first = cc._key("java", str(jar), "")
    assert cc._key("java", str(jar), "") == first
    assert cc._key("java", str(jar), "-Xmx40g") != first
    jar.write_bytes(b"12")
    assert cc._key("java", str(jar), "") != first
