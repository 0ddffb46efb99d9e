"""A savepoint directory whose _metadata is not Flink's is refused before anything starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowship.deploy.savepoints import FLINK_METADATA_MAGIC, check_metadata, restore_path
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
