"""Is a savepoint or checkpoint directory really Flink's, checked before anything starts.

Flink writes ``_metadata`` as ``[magic number (int) | format version (int) | metadata]``, big
endian; the magic number is ``Checkpoints.HEADER_MAGIC_NUMBER`` in Flink's runtime
(``org.apache.flink.runtime.checkpoint.Checkpoints``). A file that does not start with it is not
a savepoint or checkpoint (truncated to nothing, overwritten, or some other file). A file that
does but is damaged further in is only found out by Flink when it restores; ``job.main()`` then
records FAILED with Flink's reason.
"""

from __future__ import annotations

from pathlib import Path

from flowship.errors import ConfigError

#: ``Checkpoints.HEADER_MAGIC_NUMBER``: the first 4 bytes (big endian) of every ``_metadata``.
FLINK_METADATA_MAGIC = 0x4960672D
#: Metadata format versions Flink has used (1 to 6 up to Flink 2.2); leave room for new ones.
MAX_METADATA_VERSION = 64


def restore_path(given: str | None) -> str | None:
    """Validate ``--upgrade-from PATH``: a savepoint/checkpoint directory holding ``_metadata``.

    Returns its ``file:`` URI (None for None); raises ConfigError before anything starts. A
    location on another file system (``s3://``, ``hdfs://``, ``gs://``...) is returned as given:
    flowship cannot look into it, the cluster's Flink checks it when it restores (a restore
    that fails is recorded FAILED with Flink's reason).
    """
    if given is None:
        return None
    if _remote(given):
        return given
    path = Path(given.removeprefix("file://").removeprefix("file:")).expanduser()
    if not (path / "_metadata").is_file():
        msg = (
            f"--upgrade-from {given}: no savepoint or checkpoint there (expected a directory "
            "holding _metadata, e.g. .flowship/state/JOB/savepoints/savepoint-xxxx); nothing "
            "was started"
        )
        raise ConfigError(msg)
    check_metadata(path / "_metadata", given)
    return path.resolve().as_uri()


def _remote(location: str) -> bool:
    """Whether ``location`` is a URI of a file system other than the local one."""
    scheme, sep, _ = location.partition("://")
    return bool(sep) and scheme.lower() != "file" and scheme.replace("-", "").isalnum()


def is_local(location: str) -> bool:
    """Whether a savepoint or checkpoint location is on the local file system (path or file:)."""
    return not _remote(location)


#: Where a job's checkpoints and savepoints go: a local directory, or the URI of a directory on
#: a file system every TaskManager reaches (``s3://bucket/prefix``); a ``str`` is always remote.
Storage = Path | str


def as_storage(location: str | Path) -> Storage:
    """A location as :data:`Storage` (a local path or ``file:`` URI as a Path, else as given)."""
    text = str(location)
    if _remote(text):
        return text
    return Path(text.removeprefix("file://").removeprefix("file:"))


def storage_root(state_dir: Path, storage: str | None, job: str) -> Storage:
    """A job's storage root: ``<storage>/<job>``, or ``<state dir>/<job>`` when none is set."""
    root = as_storage(storage) if storage is not None else state_dir
    if isinstance(root, Path):
        return root.expanduser().resolve() / job
    return child(root, job)


def child(location: Storage, *names: str) -> Storage:
    """``location``/``names``..., on whichever file system it is."""
    if isinstance(location, Path):
        return location.joinpath(*names)
    return "/".join([location.rstrip("/"), *names])


def storage_uri(location: Storage) -> str:
    """A storage location as Flink's options take it (a local one as a ``file:`` URI)."""
    return location.as_uri() if isinstance(location, Path) else location


def as_uri(location: str) -> str:
    """A savepoint or checkpoint location as Flink restores it: a local path as a ``file:`` URI.

    Flink names its savepoints ``file:/dir/savepoint-x``; a plain path or such a URI becomes
    ``file:///dir/savepoint-x``. Locations on other file systems (``s3://...``) are kept as given.
    """
    if _remote(location):
        return location
    return Path(location.removeprefix("file:")).resolve().as_uri()


def check_metadata(metadata: Path, given: str) -> int:
    """Raise ConfigError unless ``metadata`` starts like Flink's ``_metadata``; its version.

    ``given`` is what the user passed (``--upgrade-from``), named in the message.
    """
    try:
        with metadata.open("rb") as f:
            head = f.read(8)
    except OSError as exc:
        msg = f"--upgrade-from {given}: cannot read {metadata}: {exc}; nothing was started"
        raise ConfigError(msg) from exc
    magic = int.from_bytes(head[:4], "big") if len(head) >= 4 else None
    if magic != FLINK_METADATA_MAGIC:
        found = "it is empty" if not head else f"it starts with 0x{head[:4].hex()}"
        msg = (
            f"--upgrade-from {given}: {metadata} is not a Flink savepoint or checkpoint "
            f"({found}, not Flink's magic number 0x{FLINK_METADATA_MAGIC:08x}); it is "
            "truncated, corrupt or another file. Use another savepoint, or a retained "
            "checkpoint (STATE_DIR/JOB/checkpoints/JOB_ID/chk-N); nothing was started"
        )
        raise ConfigError(msg)
    version = int.from_bytes(head[4:8], "big") if len(head) == 8 else 0
    if not 1 <= version <= MAX_METADATA_VERSION:
        msg = (
            f"--upgrade-from {given}: {metadata} starts with Flink's magic number but its "
            f"format version is {version}, which no Flink writes; the file is corrupt. Use "
            "another savepoint or a retained checkpoint; nothing was started"
        )
        raise ConfigError(msg)
    return version
