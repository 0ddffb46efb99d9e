"""A class-data archive for the local JVM, so that PyFlink's JVM starts faster.

Every local job, deployer and ``flowship`` command that builds a job graph starts a JVM that
loads some ten thousand Flink classes from jars, verifies and links them: several seconds of a
job's start-up, and of every upgrade's gap. HotSpot can instead map the classes an earlier run
loaded from an archive (dynamic application class-data sharing, JDK 13+): a bounded run of the
example job over a small topic takes about 2.4 s less, 8.8 s instead of 11.2 s
(``bench/startup.py``).

The archive is built by the JVM itself and kept per user (``$XDG_CACHE_HOME/flowship/jvm-classes``
or :data:`CACHE_ENV`), one per JDK, jar set and ``JVM_ARGS``:

1. A run that finds no archive asks its JVM to write one when it exits
   (``-XX:ArchiveClassesAtExit``) to a file of its own, ``<key>.<pid>.part``.
2. A later run checks such a file with a JVM that must map it (``-Xshare:on``) and renames it to
   ``<key>.jsa`` only if that JVM starts. A file a killed JVM left half-written (which would crash
   a JVM that maps it) is refused and deleted; after :data:`MAX_FAILURES` refusals the key is not
   tried again.
3. Every run that finds ``<key>.jsa`` maps it (``-XX:SharedArchiveFile``). A JVM that cannot use
   it (say, the JDK was patched in place) loads its classes from the jars as before.

Nothing changes what the JVM runs: only where class metadata comes from. A ``JVM_ARGS`` that
names a shared archive or ``-Xshare`` itself is left alone; ``FLOWSHIP_JVM_CLASS_CACHE=off``
turns it off.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from pathlib import Path

from flowship._jars import cache_root
from flowship._log import get_logger

#: ``off`` turns the archive off; a folder keeps it there instead of the per-user cache.
CACHE_ENV = "FLOWSHIP_JVM_CLASS_CACHE"
#: A ``.part`` file changed this recently may still be being written by its JVM.
SETTLE_S = 10.0
#: A ``.part`` file older than this is deleted unchecked (its key may never be used again).
FORGET_PART_S = 86_400.0
#: Checks of written archives that may fail for one key before it is no longer tried.
MAX_FAILURES = 3
#: The JVM lists every class it cannot archive (old class file versions, say) on stdout when
#: it writes the archive, and says so when it cannot map one: neither is the job's business.
QUIET = ("-Xlog:cds=off", "-Xlog:cds+dynamic=off")
#: ``JVM_ARGS`` that decide about class-data sharing themselves.
OWN_CHOICE = ("SharedArchiveFile", "ArchiveClassesAtExit", "-Xshare")


def class_cache_args(jvm_args: str, *, write: bool = False) -> list[str]:
    """The options that make PyFlink's local JVM use (or, with ``write``, write) the archive.

    ``jvm_args``: the ``JVM_ARGS`` the JVM gets besides. ``write``: this JVM runs a job (the
    mini-cluster), so the classes it loaded are worth keeping; a JVM that only builds a job
    graph (``--manifest``, a session cluster's client) would keep a fraction of them, and the
    archive is never rewritten. Never raises: without a usable cache folder, Java or PyFlink
    layout, the JVM starts as it would have without flowship.
    """
    setting = os.environ.get(CACHE_ENV, "")
    if setting.lower() in ("off", "0", "false", "no") or any(o in jvm_args for o in OWN_CHOICE):
        return []
    try:
        java, classpath = _gateway_command()
        folder = Path(setting) if setting else cache_root() / "jvm-classes"
        folder.mkdir(parents=True, exist_ok=True)
        key = _key(java, classpath, jvm_args)
        return _args(folder, key, java, classpath, jvm_args, write)
    except Exception as exc:  # a cache is an optimisation: never a reason not to start
        get_logger("flowship.jvm").warning("jvm_class_cache_unavailable", error=str(exc))
        return []


def _args(
    folder: Path, key: str, java: str, classpath: str, jvm_args: str, write: bool
) -> list[str]:
    archive = folder / f"{key}.jsa"
    if archive.is_file():
        for extra in folder.glob(f"{key}.*.part"):  # JVMs that wrote one too: not needed
            if _age(extra) >= SETTLE_S:
                extra.unlink(missing_ok=True)
        return [*QUIET, f"-XX:SharedArchiveFile={archive}"]
    failures = folder / f"{key}.failures"
    failed = int(failures.read_text() or 0) if failures.is_file() else 0
    if failed >= MAX_FAILURES:
        return []
    for stale in folder.glob("*.part"):  # left by a JVM killed while writing, for any key
        if _age(stale) > FORGET_PART_S:
            stale.unlink(missing_ok=True)
    writing = False
    for part in sorted(folder.glob(f"{key}.*.part"), key=_age, reverse=True):
        age = _age(part)
        if age < SETTLE_S:
            writing = True  # its JVM may still be writing it: look again next time
            continue
        if age == float("inf"):
            continue  # another process took it meanwhile
        if _loads(java, classpath, jvm_args, part):
            try:
                os.replace(part, archive)
            except FileNotFoundError:  # another process checked and took it first
                pass
            return [*QUIET, f"-XX:SharedArchiveFile={archive}"]
        if archive.is_file():  # another process checked this one and took it first
            return [*QUIET, f"-XX:SharedArchiveFile={archive}"]
        part.unlink(missing_ok=True)
        failed += 1
        failures.write_text(str(failed))
        if failed >= MAX_FAILURES:
            return []
    if writing or not write:
        return []
    return [*QUIET, f"-XX:ArchiveClassesAtExit={folder / f'{key}.{os.getpid()}.part'}"]


def _age(path: Path) -> float:
    """Seconds since ``path`` last changed (infinite when it is gone)."""
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return float("inf")


def _loads(java: str, classpath: str, jvm_args: str, archive: Path) -> bool:
    """Whether a JVM of the same command line starts with ``archive`` mapped (and only then)."""
    # a half-written archive crashes the JVM that maps it: its crash report goes here, not
    # into the caller's working directory
    report = archive.with_suffix(".check-crash.log")
    try:
        done = subprocess.run(
            [
                java,
                *jvm_args.split(),
                f"-XX:ErrorFile={report}",
                "-Xshare:on",
                f"-XX:SharedArchiveFile={archive}",
                "-cp",
                classpath,
                "-version",
            ],
            capture_output=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    finally:
        report.unlink(missing_ok=True)
    return done.returncode == 0


def _gateway_command() -> tuple[str, str]:
    """The Java executable and class path PyFlink's gateway will start its JVM with."""
    from pyflink import pyflink_gateway_server as gateway

    env = dict(os.environ)
    gateway.prepare_environment_variables(env)
    classpath = os.pathsep.join(
        [gateway.construct_flink_classpath(env), gateway.construct_hadoop_classpath(env)]
    )
    return gateway.find_java_executable(), classpath


def _key(java: str, classpath: str, jvm_args: str) -> str:
    """What the archive depends on: the JDK's build, every jar on the class path, JVM_ARGS."""
    import shutil

    digest = hashlib.sha256(jvm_args.encode())
    found = shutil.which(java) or java
    home = Path(found).resolve().parent.parent
    for part in (home / "release", home / "lib" / "server" / "libjvm.so", home / "lib" / "modules"):
        digest.update(str(part).encode())
        if part.is_file():
            stat = part.stat()
            digest.update(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
    for entry in classpath.split(os.pathsep):
        digest.update(entry.encode())
        if entry and os.path.isfile(entry):
            stat = os.stat(entry)
            digest.update(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:20]
