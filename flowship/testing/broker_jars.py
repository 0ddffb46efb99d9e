"""The Kafka broker's jars for ``flowship.testing``: found, or fetched once into a per-user cache.

The flowship wheel carries the jars a job needs, not the broker (about 45 MB) that only tests and
demos start. On first use, :func:`broker_classpath` fetches it with Maven from Maven Central
(``dependency:copy-dependencies`` over ``broker/pom.xml``, which pins Apache Kafka and its logging
binding; Maven checks each download's checksum, ``--strict-checksums``), then checks every file
against ``broker/jars.sha256`` (SHA-256, the exact set of files) and only then moves them into
the cache::

    ${XDG_CACHE_HOME:-~/.cache}/flowship/kafka-broker-<digest of jars.sha256>/

so a changed lock never reuses an old fetch. ``FLOWSHIP_JARS_DIR/kafka`` and a checkout's
``make jars`` build come first (:func:`flowship._jars.find_broker_classpath`).

Refresh the lock after changing ``broker/pom.xml``: ``python -m flowship.testing.broker_jars lock``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from flowship._jars import broker_locations, cache_root, find_broker_classpath
from flowship.errors import MissingJarError

BROKER = Path(__file__).resolve().parent / "broker"
POM = BROKER / "pom.xml"
LOCK = BROKER / "jars.sha256"
_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies"
_MARKER = ".verified"


def read_lock(lock: Path = LOCK) -> dict[str, str]:
    """``{file name: sha256}`` from a ``sha256sum``-style lock file."""
    entries = {}
    for line in lock.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            digest, name = line.split(maxsplit=1)
            entries[name.strip().lstrip("*")] = digest.lower()
    return entries


def cache_dir(lock: Path = LOCK) -> Path:
    """Where the broker jars pinned by ``lock`` are kept once fetched and checked."""
    digest = hashlib.sha256(lock.read_bytes()).hexdigest()[:16]
    return cache_root() / f"kafka-broker-{digest}"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify(folder: Path, expected: dict[str, str]) -> list[str]:
    """What is wrong with the jars in ``folder`` against ``expected`` (empty: all good)."""
    found = {p.name for p in folder.glob("*.jar")}
    problems = [f"missing {n}" for n in sorted(expected.keys() - found)]
    problems += [f"unexpected {n}" for n in sorted(found - expected.keys())]
    for name in sorted(found & expected.keys()):
        actual = _sha256(folder / name)
        if actual != expected[name]:
            problems.append(f"{name}: sha256 {actual}, expected {expected[name]}")
    return problems


def _maven(pom: Path, out: Path) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        msg = (
            "the Kafka broker of flowship.testing is fetched on first use with Maven, and mvn is "
            "not on PATH: install Maven (and a Java 17 runtime), or put the broker jars in "
            "FLOWSHIP_JARS_DIR/kafka (see docs/how-to/install-jars.md)"
        )
        raise MissingJarError(msg)
    work = out.parent
    shutil.copy(pom, work / "pom.xml")  # Maven writes beside its pom: never in the package
    cmd = [mvn, "--batch-mode", "--quiet", "--strict-checksums", "-f", str(work / "pom.xml")]
    cmd += [_PLUGIN, "-DincludeScope=runtime", f"-DoutputDirectory={out}"]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=900)
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip()[-3000:]
        msg = f"fetching the Kafka broker jars with Maven failed (exit {done.returncode})"
        msg += f":\n{output}"
        raise MissingJarError(msg)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # one fetch at a time (parallel test sessions)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def fetch(lock: Path = LOCK, pom: Path = POM) -> Path:
    """The cached broker jars pinned by ``lock``, fetched and checked first if need be."""
    target = cache_dir(lock)
    if (target / _MARKER).is_file():
        return target
    expected = read_lock(lock)
    with _locked(target.with_name(target.name + ".lock")):
        if (target / _MARKER).is_file():
            return target  # another process fetched them while this one waited
        print(f"flowship: fetching the Kafka broker jars into {target} (once)", file=sys.stderr)
        with tempfile.TemporaryDirectory(prefix=".fetch-", dir=target.parent) as tmp:
            out = Path(tmp) / "kafka"
            _maven(pom, out)
            problems = verify(out, expected)
            if problems:
                msg = f"the Kafka broker jars Maven fetched do not match {lock.name}: "
                msg += "; ".join(problems)
                raise MissingJarError(msg)
            (out / _MARKER).write_text("".join(f"{d}  {n}\n" for n, d in sorted(expected.items())))
            if target.exists():
                shutil.rmtree(target)  # an interrupted earlier fetch
            out.rename(target)
    return target


def broker_classpath() -> str:
    """The broker's classpath (``dir/*``): FLOWSHIP_JARS_DIR, a checkout, or the user cache."""
    found = find_broker_classpath()
    if found is not None:
        return found
    try:
        return str(fetch() / "*")
    except MissingJarError as exc:
        msg = f"{exc} (also looked in {broker_locations()})"
        raise MissingJarError(msg) from exc


def write_lock(lock: Path = LOCK, pom: Path = POM) -> None:
    """Fetch the jars ``pom`` resolves to and write their SHA-256 sums to ``lock``."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "kafka"
        _maven(pom, out)
        lines = [f"{_sha256(p)}  {p.name}\n" for p in sorted(out.glob("*.jar"))]
    lock.write_text("".join(lines), encoding="utf-8")
    print(f"wrote {len(lines)} entries to {lock}")


if __name__ == "__main__":
    if sys.argv[1:] == ["lock"]:
        write_lock()
    else:
        print(broker_classpath())
