"""--state-storage: where checkpoints and savepoints go, on any file system the cluster reaches."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowship.deploy.engine import Policy
from flowship.deploy.savepoints import child, storage_root, storage_uri
from flowship.errors import ConfigError
from flowship.job._settings import build_parser, settings_from_args


def _settings(*argv: str) -> object:
    return settings_from_args(build_parser("job.py", "test").parse_args(list(argv)))


def test_the_default_is_the_state_dir(tmp_path: Path) -> None:
    root = storage_root(tmp_path / "state", None, "click-sessions")
    assert root == (tmp_path / "state").resolve() / "click-sessions"
    assert storage_uri(child(root, "checkpoints")) == (root / "checkpoints").as_uri()
    policy = Policy(tmp_path / "state")
    assert policy.savepoints("j") == (tmp_path / "state").resolve() / "j" / "savepoints"


@pytest.mark.parametrize("storage", ["s3://bucket/flowship", "s3://bucket/flowship/",
                                     "hdfs://nn:8020/flowship"])
def test_a_remote_file_system_is_kept_as_a_uri(tmp_path: Path, storage: str) -> None:
    policy = Policy(tmp_path, state_storage=storage)
    base = storage.rstrip("/")
    assert policy.savepoints("j") == f"{base}/j/savepoints"
    assert policy.checkpoints("j") == f"{base}/j/checkpoints"
    assert child(policy.savepoints("j"), "d1") == f"{base}/j/savepoints/d1"
    assert storage_uri(policy.checkpoints("j")) == f"{base}/j/checkpoints"


def test_a_shared_mount_is_a_local_path(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    for given in (shared.as_uri(), str(shared)):
        assert Policy(tmp_path / "state", state_storage=given).savepoints("j") == (
            shared.resolve() / "j" / "savepoints"
        )


def test_the_setting_reaches_flinks_options(tmp_path: Path) -> None:
    from flowship.job._runtime import flink_options

    class FakeJob:
        name = "click-sessions"
        version = "1"
        script = tmp_path / "job.py"

    settings = _settings("--state-storage", "s3://bucket/fs", "--state-dir", str(tmp_path))
    options = flink_options(FakeJob(), settings)  # type: ignore[arg-type]
    assert options["execution.checkpointing.dir"] == "s3://bucket/fs/click-sessions/checkpoints"
    assert options["execution.checkpointing.savepoint-dir"] == (
        "s3://bucket/fs/click-sessions/savepoints"
    )
    default = flink_options(FakeJob(), _settings("--state-dir", str(tmp_path)))  # type: ignore[arg-type]
    assert default["execution.checkpointing.dir"] == (
        tmp_path.resolve() / "click-sessions" / "checkpoints"
    ).as_uri()


@pytest.mark.parametrize("bad", ["relative/dir", "s3://", "bucket"])
def test_a_storage_that_is_neither_a_uri_nor_an_absolute_path_is_refused(bad: str) -> None:
    with pytest.raises(ConfigError, match="state storage"):
        _settings("--state-storage", bad)
