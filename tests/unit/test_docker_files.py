"""Static checks of docker/Dockerfile and docker/compose.yaml against the repository.

No Docker engine and no JVM: the files are parsed, every repository path they use must exist, the
versions they pin must agree with pyproject.toml and jvm/pom.xml, and every flag the compose
services pass to the example scripts must be one the script's ``--help`` lists.
"""

from __future__ import annotations

import ast
import base64
import fnmatch
import json
import re
import shlex
import subprocess
import sys
import tomllib
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
DOCKERFILE = DOCKER / "Dockerfile"
COMPOSE = DOCKER / "compose.yaml"
DOCKERIGNORE = DOCKER / "Dockerfile.dockerignore"
POM_NS = {"m": "http://maven.apache.org/POM/4.0.0"}

REQUIRED_SERVICES = {"kafka", "kafka-init", "jobmanager", "taskmanager", "job", "producer"}
EXPECTED_PARTITIONS = {"clicks": 4, "session-stats": 4, "clicks.dlq": 1}


# --------------------------------------------------------------------------- Dockerfile parsing


@dataclass
class Stage:
    image: str
    name: str | None
    workdir: str = "/"
    instructions: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Dockerfile:
    args: dict[str, str]
    stages: list[Stage]

    def all(self, instruction: str) -> list[tuple[Stage, str]]:
        return [(s, rest) for s in self.stages for i, rest in s.instructions if i == instruction]

    @property
    def stage_names(self) -> set[str]:
        return {s.name for s in self.stages if s.name}


def _logical_lines(text: str) -> list[str]:
    """Instructions with line continuations joined; comment lines dropped (as Docker does)."""
    lines: list[str] = []
    buf = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        buf += stripped
        if buf.strip():
            lines.append(" ".join(buf.split()))
        buf = ""
    assert not buf.strip(), "Dockerfile ends inside a line continuation"
    return lines


def _substitute(value: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m[1] or m[2], m[0]), value)


def parse_dockerfile(text: str) -> Dockerfile:
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in _logical_lines(text):
        instruction, _, rest = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name.strip()] = default.strip()
        elif instruction == "FROM":
            tokens = rest.split()
            name = tokens[2] if len(tokens) >= 3 and tokens[1].upper() == "AS" else None
            stages.append(Stage(image=_substitute(tokens[0], args), name=name))
        else:
            assert stages, f"{instruction} before the first FROM"
            stage = stages[-1]
            if instruction == "WORKDIR":
                stage.workdir = str(PurePosixPath(stage.workdir) / rest.strip())
            stage.instructions.append((instruction, rest))
    return Dockerfile(args=args, stages=stages)


@dataclass
class Copy:
    stage: Stage
    from_stage: str | None
    sources: list[str]
    dest: str


def copies(dockerfile: Dockerfile) -> list[Copy]:
    result = []
    for stage, rest in dockerfile.all("COPY"):
        tokens = shlex.split(rest)
        flags = [t for t in tokens if t.startswith("--")]
        paths = [t for t in tokens if not t.startswith("--")]
        assert len(paths) >= 2, f"COPY needs a source and a destination: {rest}"
        from_stage = next((f.split("=", 1)[1] for f in flags if f.startswith("--from=")), None)
        result.append(Copy(stage, from_stage, paths[:-1], paths[-1]))
    return result


def env_values(stage: Stage) -> dict[str, str]:
    values: dict[str, str] = {}
    for instruction, rest in stage.instructions:
        if instruction == "ENV":
            for token in shlex.split(rest):
                key, sep, value = token.partition("=")
                if sep:
                    values[key] = value
    return values


# --------------------------------------------------------------------------- fixtures / helpers


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    assert DOCKERFILE.is_file(), f"missing {DOCKERFILE}"
    return parse_dockerfile(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def compose() -> dict:
    assert COMPOSE.is_file(), f"missing {COMPOSE}"
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict) -> dict[str, dict]:
    return compose["services"]


@pytest.fixture(scope="module")
def final_stage(dockerfile: Dockerfile) -> Stage:
    return dockerfile.stages[-1]


def flink_pin() -> str:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = [d for d in deps if re.match(r"apache-flink\s*==", d)]
    assert len(pins) == 1, f"expected one apache-flink==X pin in pyproject.toml, got {pins}"
    return pins[0].split("==", 1)[1].strip()


def pom_properties(pom: Path) -> dict[str, str]:
    root = ET.parse(pom).getroot()
    props = root.find("m:properties", POM_NS)
    return {} if props is None else {el.tag.split("}")[1]: (el.text or "") for el in props}


def resolve_props(text: str, props: dict[str, str]) -> str:
    return re.sub(r"\$\{([^}]+)\}", lambda m: props.get(m[1], m[0]), text)


def command_list(service: dict) -> list[str]:
    command = service.get("command")
    if command is None:
        return []
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def repo_path_for(image_path: str, dockerfile: Dockerfile) -> Path | None:
    """Map a path inside the final image back to the repo file a plain COPY put there."""
    final = dockerfile.stages[-1]
    for copy in copies(dockerfile):
        if copy.stage is not final or copy.from_stage is not None or len(copy.sources) != 1:
            continue
        dest = copy.dest.rstrip("/") + "/"
        if image_path.startswith(dest):
            return REPO / copy.sources[0].rstrip("/") / image_path[len(dest) :]
    return None


def python_script_services(services: dict[str, dict]) -> dict[str, list[str]]:
    """Services whose command is ``<python> <script.py> ...``."""
    return {
        name: cmd
        for name, svc in services.items()
        if len(cmd := command_list(svc)) >= 2 and cmd[1].endswith(".py")
    }


def flink_properties(service: dict) -> dict[str, str]:
    """FLINK_PROPERTIES parsed the way the flink image's docker-entrypoint.sh does it."""
    env = service.get("environment") or {}
    text = env.get("FLINK_PROPERTIES", "")
    props = {}
    for line in text.splitlines():
        prop = re.sub(r"\s", "", line)
        if prop:
            key, _, value = prop.partition(":")
            props[key] = value
    return props


def venv_python(dockerfile: Dockerfile) -> str:
    for _, rest in dockerfile.all("RUN"):
        m = re.search(r"-m venv (\S+)", rest)
        if m:
            return m[1] + "/bin/python"
    raise AssertionError("the Dockerfile creates no venv (python -m venv ...)")


# --------------------------------------------------------------------------- Dockerfile checks


def test_dockerfile_is_multi_stage_with_jars_and_flink_stages(dockerfile: Dockerfile) -> None:
    images = [s.image for s in dockerfile.stages]
    assert len(dockerfile.stages) >= 2, images
    assert any(i.startswith("maven:3.9-eclipse-temurin-17") for i in images), images
    assert dockerfile.stages[-1].image.startswith("flink:"), "the final stage must be Flink"


def test_flink_images_are_pinned_to_pyproject_and_pom_versions(dockerfile: Dockerfile) -> None:
    version = flink_pin()
    pom_version = pom_properties(REPO / "jvm" / "pom.xml").get("flink.version")
    assert pom_version == version, f"jvm/pom.xml flink.version {pom_version} != {version}"
    flink_images = [s.image for s in dockerfile.stages if s.image.startswith("flink:")]
    assert flink_images, "no flink:* base image"
    for image in flink_images:
        tag = image.split(":", 1)[1]
        assert re.fullmatch(rf"{re.escape(version)}(-scala_2\.12)?-java(11|17|21)", tag), (
            f"{image} is not pinned to Flink {version} (pyproject apache-flink=={version})"
        )


def test_copy_sources_exist_in_repo(dockerfile: Dockerfile) -> None:
    plain = [c for c in copies(dockerfile) if c.from_stage is None]
    assert plain, "no COPY from the build context"
    for copy in plain:
        for source in copy.sources:
            if any(ch in source for ch in "*?["):
                continue  # optional by design (e.g. README.m[d]); checked below if it matches
            assert (REPO / source).exists(), f"COPY source {source!r} does not exist in the repo"
        matched = [p for s in copy.sources for p in REPO.glob(s.rstrip("/"))]
        assert matched, f"COPY {copy.sources} matches nothing in the repo"


def test_copied_sources_are_not_dockerignored(dockerfile: Dockerfile) -> None:
    if not DOCKERIGNORE.exists():
        pytest.skip("no Dockerfile.dockerignore")
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#") and not line.startswith("!")
    ]
    for copy in copies(dockerfile):
        if copy.from_stage is not None:
            continue
        for source in copy.sources:
            top = source.rstrip("/")
            for pattern in patterns:
                bare = pattern.removeprefix("**/")
                assert not fnmatch.fnmatch(top, pattern) and not fnmatch.fnmatch(top, bare), (
                    f"COPY source {source!r} is excluded by {pattern!r} in {DOCKERIGNORE.name}"
                )


def test_copy_from_refers_to_defined_stages(dockerfile: Dockerfile) -> None:
    staged = [c for c in copies(dockerfile) if c.from_stage is not None]
    assert staged, "the final image copies nothing from the build stages"
    for copy in staged:
        assert copy.from_stage in dockerfile.stage_names, f"unknown stage {copy.from_stage}"


def setup_py_modules() -> list[str]:
    """``MODULES`` of setup.py: the Maven modules whose jars the wheel bundles."""
    tree = ast.parse((REPO / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "MODULES" for t in node.targets
        ):
            return list(ast.literal_eval(node.value))
    raise AssertionError("setup.py defines no MODULES")


def test_maven_build_targets_the_modules_the_wheel_bundles(dockerfile: Dockerfile) -> None:
    runs = [rest for _, rest in dockerfile.all("RUN") if re.search(r"\bmvn\b", rest)]
    assert len(runs) == 1, runs
    tokens = shlex.split(runs[0])
    pom = tokens[tokens.index("-f") + 1]
    assert (REPO / pom).is_file(), f"{pom} does not exist"
    modules = {m.text for m in ET.parse(REPO / pom).getroot().findall("m:modules/m:module", POM_NS)}
    selected = tokens[tokens.index("-pl") + 1].split(",")
    assert selected == setup_py_modules(), (selected, setup_py_modules())
    assert "broker" not in selected, "the broker is for tests, not the image"
    assert set(selected) <= modules, f"{selected} not among the modules {modules} of {pom}"
    assert "-am" in tokens and "package" in tokens
    # every jar setup.py bundles comes from one of those modules
    bundled = re.findall(r'JVM / "([a-z-]+)/target/', (REPO / "setup.py").read_text())
    assert bundled and set(bundled) <= set(selected), bundled


def test_the_wheel_is_built_from_the_source_tree_and_the_jars_stage(
    dockerfile: Dockerfile,
) -> None:
    python = next(s for s in dockerfile.stages if s.name == "python")
    copied = [c for c in copies(dockerfile) if c.stage is python]
    src = {PurePosixPath(c.dest) for c in copied}
    assert len(src) >= 1
    plain = {s.rstrip("/") for c in copied if c.from_stage is None for s in c.sources}
    # everything setup.py needs to build the wheel
    assert {"pyproject.toml", "setup.py", "MANIFEST.in", "flowship"} <= plain, plain
    jars_stage = next(s for s in dockerfile.stages if s.name == "jars")
    jvm = [c for c in copied if c.from_stage == "jars"]
    assert len(jvm) == 1, "the python stage takes the jvm/ build from the jars stage"
    assert PurePosixPath(jvm[0].sources[0]) == PurePosixPath(jars_stage.workdir) / "jvm"
    tree = PurePosixPath(jvm[0].dest).parent
    assert any(PurePosixPath(c.dest) == tree / "flowship" for c in copied), (tree, copied)
    commands = [
        shlex.split(command)
        for st, rest in dockerfile.all("RUN")
        if st is python and "/pip " in rest
        for command in rest.split("&&")
    ]
    pips = [c for c in commands if c and c[0].endswith("/pip")]
    built = [c for c in pips if c[1] == "wheel" and "--no-deps" in c and str(tree) in c]
    assert built, f"no `pip wheel --no-deps ... {tree}` in the python stage: {pips}"
    installs = [c for c in pips if c[1] == "install"]
    assert any(t.endswith("/flowship-*.whl") for c in installs for t in c), installs
    for c in installs:
        assert not {str(tree), f"{tree}/"} & set(c), (
            f"flowship is installed from its wheel, not from the source tree: {c}"
        )


def test_installed_package_finds_its_jars_without_flowship_jars_dir(
    dockerfile: Dockerfile, final_stage: Stage
) -> None:
    for stage in dockerfile.stages:
        assert "FLOWSHIP_JARS_DIR" not in env_values(stage), f"stage {stage.name} sets it"
    assert not [c for c in copies(dockerfile) if c.stage is final_stage and c.from_stage == "jars"]
    final_runs = " ".join(rest for st, rest in dockerfile.all("RUN") if st is final_stage)
    assert "find_jars()" in final_runs and "find_state_reader()" in final_runs
    assert "FLOWSHIP_JARS_DIR" not in final_runs


def test_flink_config_points_python_at_the_venv(dockerfile: Dockerfile) -> None:
    python = venv_python(dockerfile)
    assert python == "/opt/flowship/venv/bin/python"
    assert f"-Dpython.executable={python}" in DOCKERFILE.read_text()


# --------------------------------------------------------------------------- compose checks


def test_compose_services_exist(services: dict[str, dict]) -> None:
    missing = REQUIRED_SERVICES - services.keys()
    assert not missing, f"compose.yaml lacks services {missing}"
    assert services["producer"].get("profiles"), "the producer must sit behind a profile"
    assert not services["job"].get("profiles"), "the job must start with a plain `up`"


def test_flowship_services_build_the_dockerfile(services: dict[str, dict]) -> None:
    for name in ("jobmanager", "taskmanager", "job", "producer"):
        build = services[name].get("build")
        assert build, f"{name} does not build docker/Dockerfile"
        context = (DOCKER / build["context"]).resolve()
        assert context == REPO, f"{name}: build context {context} is not the repo root"
        assert (context / build["dockerfile"]).resolve() == DOCKERFILE.resolve()
    images = {services[n]["image"] for n in ("jobmanager", "taskmanager", "job", "producer")}
    assert len(images) == 1, f"one image for all flowship services, got {images}"


def test_jobmanager_and_taskmanager_roles_and_flink_properties(
    services: dict[str, dict], dockerfile: Dockerfile
) -> None:
    assert services["jobmanager"]["command"] == "jobmanager"
    assert services["taskmanager"]["command"] == "taskmanager"
    python = venv_python(dockerfile)
    for name in ("jobmanager", "taskmanager"):
        raw = services[name]["environment"]["FLINK_PROPERTIES"]
        for line in raw.splitlines():
            if ":" in line:
                assert not re.search(r"\s", line.split(":", 1)[1].strip()), (
                    f"{name}: the entrypoint strips whitespace, value breaks: {line!r}"
                )
        props = flink_properties(services[name])
        assert props.get("jobmanager.rpc.address") == "jobmanager"
        assert "jobmanager" in services
        assert props.get("python.executable") == python, f"{name}: {props}"
    slots = int(flink_properties(services["taskmanager"])["taskmanager.numberOfTaskSlots"])
    parallelism = int(services["job"].get("environment", {}).get("FLOWSHIP_PARALLELISM", 2))
    assert slots >= parallelism, "the job would wait for slots forever"


def test_state_volume_is_shared_at_the_job_state_dir(compose: dict, final_stage: Stage) -> None:
    services = compose["services"]

    def mounts(name: str) -> dict[str, str]:
        out = {}
        for volume in services[name].get("volumes", []):
            source, _, target = volume.partition(":")
            out[target.split(":")[0]] = source
        return out

    cmd = command_list(services["job"])
    state_dir = cmd[cmd.index("--state-dir") + 1]
    jm, tm = mounts("jobmanager"), mounts("taskmanager")
    assert state_dir in jm and state_dir in tm, f"{state_dir} not mounted in JM {jm} / TM {tm}"
    assert jm[state_dir] == tm[state_dir], "JM and TM must mount the same volume"
    assert jm[state_dir] in (compose.get("volumes") or {}), "state volume must be a named volume"
    image_env = env_values(final_stage)
    assert image_env.get("FLOWSHIP_STATE_DIR") == state_dir


def test_script_commands_map_to_repo_files(
    services: dict[str, dict], dockerfile: Dockerfile
) -> None:
    scripts = python_script_services(services)
    assert {"job", "producer"} <= scripts.keys(), scripts
    python = venv_python(dockerfile)
    for name, cmd in scripts.items():
        assert cmd[0] == python, f"{name} runs {cmd[0]}, not the image's venv ({python})"
        repo_file = repo_path_for(cmd[1], dockerfile)
        assert repo_file is not None, f"{name}: {cmd[1]} is not under a COPY destination"
        assert repo_file.is_file(), f"{name}: {cmd[1]} -> {repo_file} does not exist"


def test_job_command_is_a_session_cluster_submission(services: dict[str, dict]) -> None:
    cmd = command_list(services["job"])
    assert cmd[1].endswith("examples/click_sessions/job.py")
    assert cmd[cmd.index("--target") + 1] == "http://jobmanager:8081"
    assert cmd[cmd.index("--kafka-bootstrap") + 1] == "kafka:9092"
    deps = services["job"]["depends_on"]
    assert deps["jobmanager"]["condition"] == "service_healthy"
    assert deps["kafka-init"]["condition"] == "service_completed_successfully"


@pytest.mark.parametrize("service", ["job", "producer", "reader"])
def test_command_flags_are_accepted_by_the_script(
    services: dict[str, dict], dockerfile: Dockerfile, service: str
) -> None:
    if service not in services:
        pytest.skip(f"no {service} service")
    cmd = command_list(services[service])
    script = repo_path_for(cmd[1], dockerfile)
    assert script is not None and script.is_file(), cmd[1]
    done = subprocess.run(
        [sys.executable, str(script), "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    flags = [a.split("=", 1)[0] for a in cmd[2:] if a.startswith("--")]
    assert flags, f"{service} passes no flags"
    for flag in flags:
        assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", done.stdout), (
            f"{service}: {flag} is not an option of {script.name} (see its --help)"
        )


def test_compose_commands_have_no_unescaped_dollar(services: dict[str, dict]) -> None:
    for name, svc in services.items():
        for part in command_list(svc):
            assert "$" not in part.replace("$$", ""), (
                f"{name}: compose interpolates $ in {part!r}; write $$"
            )


def test_kafka_init_creates_the_job_topics(services: dict[str, dict]) -> None:
    script = "\n".join(command_list(services["kafka-init"]))
    created: dict[str, int] = {}
    for line in script.splitlines():
        if "kafka-topics.sh" in line and "--create" in line:
            tokens = shlex.split(line)
            assert tokens[0] == "/opt/kafka/bin/kafka-topics.sh"
            assert tokens[tokens.index("--bootstrap-server") + 1] == "kafka:9092"
            assert tokens[tokens.index("--replication-factor") + 1] == "1"
            created[tokens[tokens.index("--topic") + 1]] = int(
                tokens[tokens.index("--partitions") + 1]
            )
    assert created == EXPECTED_PARTITIONS

    # the topics the job really uses, from its manifest (computed from the code, no Flink)
    manifest = json.loads(
        subprocess.run(
            [sys.executable, str(REPO / "examples" / "click_sessions" / "job.py"), "--manifest"],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        ).stdout
    )
    topics = {s["topic"] for s in manifest["sources"] + manifest["sinks"]}
    topics |= {s["dead_letter_topic"] for s in manifest["sources"]}
    assert topics == set(created), f"job.py uses {topics}, kafka-init creates {set(created)}"
    deps = services["kafka-init"]["depends_on"]
    assert deps["kafka"]["condition"] == "service_healthy"


def test_kafka_is_a_single_kraft_node_reachable_as_kafka_9092(services: dict[str, dict]) -> None:
    kafka = services["kafka"]
    assert kafka["image"] == "apache/kafka:4.1.1"
    assert services["kafka-init"]["image"] == kafka["image"]
    env = {k: str(v) for k, v in kafka["environment"].items()}
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    protocol_map = dict(
        p.split(":") for p in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    listeners = [entry.split("://")[0] for entry in env["KAFKA_LISTENERS"].split(",")]
    assert set(listeners) <= protocol_map.keys()
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] in listeners
    advertised = dict(e.split("://") for e in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    assert "kafka:9092" in advertised.values(), advertised
    voters = env["KAFKA_CONTROLLER_QUORUM_VOTERS"]
    assert voters.startswith(f"{env['KAFKA_NODE_ID']}@kafka:"), voters
    # the exactly-once sink needs the transaction log; one broker cannot replicate it 3 times
    assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == "1"
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    cluster_id = env["CLUSTER_ID"]
    raw = base64.urlsafe_b64decode(cluster_id + "=" * (-len(cluster_id) % 4))
    assert len(raw) == 16, f"CLUSTER_ID {cluster_id} is not a base64url UUID"


def test_healthchecks(services: dict[str, dict]) -> None:
    jm = " ".join(services["jobmanager"]["healthcheck"]["test"])
    assert "curl -f http://localhost:8081/overview" in jm
    kafka = " ".join(services["kafka"]["healthcheck"]["test"])
    assert "/opt/kafka/bin/kafka-broker-api-versions.sh --bootstrap-server localhost:9092" in kafka
    assert "curl" in DOCKERFILE.read_text(), "the image must install curl for the healthcheck"
