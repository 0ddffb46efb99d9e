"""`pip install flowship` is all a job author needs: the built wheel, alone, outside the checkout.

Builds the sdist and, from it, the wheel (``python -m build``: Maven builds the jars inside the
unpacked sdist), installs the wheel into a fresh virtual environment in a temporary folder,
copies the example job into an empty folder and runs it there ``--bounded`` against a Kafka
broker that the installed ``flowship.testing`` starts (its jars fetched into an empty per-user
cache), then runs ``flowship check`` there. Nothing of the checkout can leak in: the commands run
from the job's folder with the installed interpreter, no PYTHONPATH, no FLOWSHIP_* variable.

The fresh venv installs apache-flink and the other dependencies through pip, from pip's cache
when it is warm (``make setup`` leaves it so).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import events
import pytest
from helpers import EXAMPLE, STATS, assert_exactly_once, produce_clicks, setup_topics, tail

import flowship
from flowship.testing._proc import free_port, stop_pid
from flowship.testing.kafka_io import read_topic

pytestmark = [pytest.mark.jvm, pytest.mark.kafka, pytest.mark.timeout(1500)]

ROOT = Path(__file__).resolve().parents[2]
EVENTS = 2_000

BROKER_DRIVER = """\
import sys
from pathlib import Path

from flowship.testing.kafka_broker import KafkaBroker

broker = KafkaBroker(Path(sys.argv[1])).start(timeout=180)
print(broker.bootstrap, broker.pid, broker._classpath, flush=True)
try:
    sys.stdin.read()  # until the test closes our stdin
finally:
    broker.stop()
"""

PROBE = """\
import json, sys
import flowship
from flowship._jars import find_jars, find_state_reader
jars = find_jars()
print(json.dumps({"file": flowship.__file__, "version": flowship.__version__,
                  "connector": str(jars.connector), "provenance": str(jars.provenance),
                  "state_reader": str(find_state_reader()), "path": sys.path}))
"""


@dataclass
class Installed:
    dist: Path
    wheel: Path
    sdist: Path
    venv: Path
    python: Path
    env: dict[str, str]  # for commands run "as a job author": no trace of the checkout
    took: dict[str, float]


def _clean_env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("FLOWSHIP_") and k not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"}
    }
    venv_bin = str(ROOT / ".venv" / "bin")
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != venv_bin)
    return env


def _run(
    cmd: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)
    output = tail(done.stdout + done.stderr)
    assert done.returncode == 0, f"{cmd} exited {done.returncode}:\n{output}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    base = tmp_path_factory.mktemp("wheel")
    assert not base.resolve().is_relative_to(ROOT)
    took = {}
    dist = base / "dist"
    started = time.monotonic()
    # sdist first, then the wheel from the unpacked sdist (what `python -m build` does)
    _run([sys.executable, "-m", "build", "--outdir", str(dist), str(ROOT)], cwd=base, timeout=900)
    took["build"] = time.monotonic() - started
    (wheel,) = dist.glob("flowship-*.whl")
    (sdist,) = dist.glob("flowship-*.tar.gz")

    started = time.monotonic()
    venv = base / "venv"
    env = _clean_env()
    _run([sys.executable, "-m", "venv", str(venv)], cwd=base, env=env, timeout=300)
    python = venv / "bin" / "python"
    # a direct reference: the index can never substitute another "flowship"
    _run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         f"flowship[testing] @ {wheel.as_uri()}"],
        cwd=base, env=env, timeout=900,
    )
    took["install"] = time.monotonic() - started
    env = {**env, "PATH": f"{venv / 'bin'}{os.pathsep}{env['PATH']}"}
    env["XDG_CACHE_HOME"] = str(base / "user-cache")  # the broker jars: fetched on first use
    yield Installed(dist, wheel, sdist, venv, python, env, took)
    print(f"\nwheel test timings: {json.dumps({k: round(v, 1) for k, v in took.items()})}")


def test_wheel_carries_the_jars_and_the_sdist_the_jvm_sources(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as whl:
        names = set(whl.namelist())
        meta = whl.read(f"flowship-{flowship.__version__}.dist-info/METADATA").decode()
        provenance_pom = _pom_properties(whl.read("flowship/_jvm/flowship-provenance.jar"))
    assert installed.wheel.name == f"flowship-{flowship.__version__}-py3-none-any.whl"
    jvm = "flowship/_jvm/"
    assert {f"{jvm}flowship-provenance.jar", f"{jvm}flowship-state-reader.jar"} <= names
    connector = re.compile(rf"{jvm}connector/flink-sql-connector-kafka-.+\.jar")
    assert len([n for n in names if connector.fullmatch(n)]) == 1, sorted(names)
    assert not [n for n in names if "kafka_2.13" in n], "the broker belongs to no runtime wheel"
    assert {"flowship/testing/broker/pom.xml", "flowship/testing/broker/jars.sha256"} <= names
    assert re.search(rf"^Version: {re.escape(flowship.__version__)}$", meta, re.M)
    assert re.search(r"^Requires-Python: >=3\.11$", meta, re.M)
    assert re.search(r"^Requires-Dist: apache-flink==2\.2\.1$", meta, re.M)
    # the jar's own Maven version is the package's
    assert provenance_pom.get("version") == flowship.__version__

    with tarfile.open(installed.sdist) as sdist:
        members = {m.name.split("/", 1)[1] for m in sdist.getmembers() if "/" in m.name}
    poms = {"jvm/pom.xml", "jvm/provenance/pom.xml", "jvm/state-reader/pom.xml"}
    assert {"setup.py", "MANIFEST.in", *poms} <= members
    assert any(m.startswith("jvm/provenance/src/main/java/") for m in members)
    assert not [m for m in members if "/target/" in m]


def _pom_properties(jar: bytes) -> dict[str, str]:
    import io

    with zipfile.ZipFile(io.BytesIO(jar)) as z:
        name = next(n for n in z.namelist() if n.endswith("/pom.properties"))
        lines = z.read(name).decode().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


@pytest.fixture
def job_dir(tmp_path: Path) -> Path:
    """The example job, copied into an empty folder outside the checkout."""
    target = tmp_path / "my-job"
    shutil.copytree(EXAMPLE, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def test_installed_wheel_runs_the_example_job_exactly_once(
    installed: Installed, job_dir: Path, tmp_path: Path
) -> None:
    env, python = installed.env, str(installed.python)

    # the installation finds everything in itself, nothing in the checkout
    probe = json.loads(_run([python, "-c", PROBE], cwd=job_dir, env=env).stdout)
    site = str(installed.venv)
    for key in ("file", "connector", "provenance", "state_reader"):
        assert probe[key].startswith(site), (key, probe[key])
    assert probe["version"] == flowship.__version__
    assert not [p for p in probe["path"] if p and Path(p).resolve().is_relative_to(ROOT)]

    driver = tmp_path / "broker_driver.py"
    driver.write_text(BROKER_DRIVER)
    broker_log = (tmp_path / "broker-driver.log").open("w")
    started = time.monotonic()
    proc = subprocess.Popen(
        [python, str(driver), str(tmp_path / "kafka")],
        cwd=job_dir, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=broker_log,
        text=True,
    )
    broker_pid = None
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().split()
        assert line, "the broker did not start:\n" + (tmp_path / "broker-driver.log").read_text()
        bootstrap, broker_pid, classpath = line[0], int(line[1]), line[2]
        installed.took["broker"] = time.monotonic() - started
        # fetched into the (empty) per-user cache, checked against the wheel's lock
        assert classpath.startswith(env["XDG_CACHE_HOME"]), classpath

        setup_topics(bootstrap)
        evs = list(events.clicks(EVENTS, users=50))
        assert produce_clicks(bootstrap, evs) == EVENTS

        started = time.monotonic()
        done = subprocess.run(
            [python, "job.py", "--bounded", "--kafka-bootstrap", bootstrap,
             "--state-dir", str(tmp_path / "state"), "--rest-port", str(free_port())],
            cwd=job_dir, env=env, capture_output=True, text=True, timeout=600, check=False,
        )
        installed.took["job"] = time.monotonic() - started
        assert done.returncode == 0, tail(done.stdout + done.stderr)

        outputs = read_topic(bootstrap, "session-stats", schema=STATS, expect=EVENTS,
                             timeout=120, idle=4.0)
        assert_exactly_once(outputs, evs)
        assert len({m.headers["flowship.source"] for m in outputs}) == EVENTS
    finally:
        if proc.stdin:
            proc.stdin.close()
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            if broker_pid:
                stop_pid(broker_pid, timeout=30)
            proc.kill()
            proc.wait(timeout=30)
        broker_log.close()

    started = time.monotonic()
    ok = subprocess.run([str(installed.venv / "bin" / "flowship"), "check", "job.py", "job_v2.py"],
                        cwd=job_dir, env=env, capture_output=True, text=True, timeout=300,
                        check=False)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    refused = subprocess.run(
        [str(installed.venv / "bin" / "flowship"), "check", "job_v2.py", "job_v3_incompatible.py"],
        cwd=job_dir, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert refused.returncode == 1, refused.stdout + refused.stderr
    installed.took["check"] = time.monotonic() - started
