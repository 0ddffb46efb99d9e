"""A savepoint directory whose _metadata is not Flink's is refused before anything starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowship.deploy.savepoints import (
    FLINK_METADATA_MAGIC,
    as_uri,
    check_metadata,
    is_local,
    restore_path,
)
from flowship.errors import ConfigError


def _savepoint(tmp_path: Path, body: bytes) -> Path:
    sp = tmp_path / "savepoint-1"
    sp.mkdir()
    (sp / "_metadata").write_bytes(body)
    return sp


def test_flink_metadata_header_is_accepted(tmp_path: Path) -> None:
    # what Flink 2.2 writes: the magic number, format version 6, then the metadata
    sp = _savepoint(tmp_path, bytes.fromhex("4960672d00000006") + b"\0" * 40)
    assert FLINK_METADATA_MAGIC == 0x4960672D
    assert check_metadata(sp / "_metadata", str(sp)) == 6
    assert restore_path(str(sp)) == sp.resolve().as_uri()


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"", "it is empty"),
        (b"PK\x03\x04 a zip file", "it starts with 0x504b0304"),
        (b"\x49\x60", "it starts with 0x4960"),
        (bytes.fromhex("4960672d") + b"\xff\xff\xff\xff garbage", "format version is 4294967295"),
    ],
)
def test_not_flink_metadata_is_bad_input(tmp_path: Path, body: bytes, says: str) -> None:
    sp = _savepoint(tmp_path, body)
    with pytest.raises(ConfigError, match="nothing was started") as info:
        restore_path(str(sp))
    assert says in str(info.value)
    assert str(sp / "_metadata") in str(info.value)


def test_missing_metadata_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no savepoint or checkpoint there"):
        restore_path(str(tmp_path))


@pytest.mark.parametrize("location", ["s3://bucket/flowship/savepoint-ab12", "hdfs://nn:8020/sp/x",
                                      "gs://b/chk-7", "s3a://bucket/x/chk-3"])
def test_a_location_on_another_file_system_is_passed_on_not_mangled(location: str) -> None:
    # flowship cannot look into it: the cluster's Flink checks it when it restores
    assert restore_path(location) == location
    assert as_uri(location) == location
    assert not is_local(location)


def test_local_paths_and_file_uris_are_checked_and_made_uris(tmp_path: Path) -> None:
    sp = _savepoint(tmp_path, bytes.fromhex("4960672d00000006"))
    for given in (str(sp), sp.as_uri(), f"file:{sp}"):
        assert is_local(given)
        assert restore_path(given) == sp.resolve().as_uri()
        assert as_uri(given) == sp.resolve().as_uri()
    with pytest.raises(ConfigError, match="no savepoint or checkpoint there"):
        restore_path((tmp_path / "gone").as_uri())
