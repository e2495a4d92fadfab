"""The wheel is the whole application: built from the working tree, installed (not editable)
into a fresh virtual environment, it migrates, makes keys, trains and serves from a folder
outside the repository.

The new environment holds only the wheel; its dependencies come from the project's own
environment through a `.pth` line (no download, and `.pth` files of that folder, such as the
editable install's import hook, are not run), so only the wheel can provide our modules.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

import db
from tests.support import REPO
from tests.support.payloads import RAW
from tests.support.servers import free_port, start

pytestmark = pytest.mark.slow

# What a working install needs beside the Python packages' modules.
REQUIRED_FILES = (
    "service.py",
    "settings.py",
    "db/schema.sql",
    "db/analytics.sql",
    "db/migrations/env.py",
    "db/migrations/script.py.mako",
    *(f"db/migrations/versions/{p.name}" for p in (REPO / "db/migrations/versions").glob("*.py")),
)
PACKAGES = ("cli", "db", "persistence", "scoring", "serving", "training")


def run(command: list[str], *, env: Mapping[str, str], cwd: Path, timeout: float = 600) -> str:
    done = subprocess.run(
        command, env=dict(env), cwd=cwd, capture_output=True, text=True, timeout=timeout
    )
    output = f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert done.returncode == 0, f"{' '.join(command)} exited {done.returncode}\n{output}"
    return done.stdout


def working_tree_copy(target: Path) -> Path:
    """The files a fresh clone of the working tree holds (tracked or new, never ignored ones):
    building there leaves no build/ or egg-info in the repository."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (n.decode() for n in listed)):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def build_wheel(source: Path, out: Path) -> Path:
    uv = Path(sys.executable).with_name("uv")
    attempts = (
        [[str(uv), "build", "--wheel", "--offline", "-o", str(out)]] if uv.exists() else []
    ) + [
        [str(uv), "build", "--wheel", "-o", str(out)] if uv.exists() else [],
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(out), str(source)],
    ]
    errors = []
    for command in filter(None, attempts):
        done = subprocess.run(command, cwd=source, capture_output=True, text=True, timeout=900)
        wheels = sorted(out.glob("attrition-*.whl"))
        if done.returncode == 0 and wheels:
            return wheels[-1]
        errors.append(f"{command}: {done.stderr[-1500:]}")
    raise AssertionError("could not build the wheel:\n" + "\n".join(errors))


@dataclass
class Installed:
    wheel: Path
    python: Path
    bin: Path
    site_packages: Path
    home: Path  # a folder outside the repository: the working directory of every command
    env: dict[str, str]


def install(wheel: Path, venv: Path) -> tuple[Path, Path]:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    uv = Path(sys.executable).with_name("uv")
    if uv.exists():
        command = [str(uv), "pip", "install", "--python", str(python), "--no-deps", "--offline"]
    else:
        command = [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps"]
    subprocess.run([*command, str(wheel)], check=True, capture_output=True, timeout=300)
    site_packages = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site_packages / "project_dependencies.pth").write_text("\n".join(sorted(ours)) + "\n")
    return python, site_packages


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Iterator[Installed]:
    root = tmp_path_factory.mktemp("wheel")
    assert not root.resolve().is_relative_to(REPO), "the test must run outside the repository"
    source = working_tree_copy(root / "source")
    wheel = build_wheel(source, root / "dist")
    python, site_packages = install(wheel, root / "venv")
    home = root / "home"
    home.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ATTRITION_", "BENTOML_", "PYTHON", "COVERAGE_"))
        and k not in ("DATABASE_URL", "VIRTUAL_ENV")
    }
    env |= {
        "PATH": f"{python.parent}{os.pathsep}{env.get('PATH', '')}",
        "BENTOML_HOME": str(home / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "true",
        "DATABASE_URL": f"sqlite:///{home / 'attrition.db'}",
        "ATTRITION_REPORTS_DIR": str(home / "reports"),
    }
    yield Installed(wheel, python, python.parent, site_packages, home, env)
    shutil.rmtree(root, ignore_errors=True)


def test_the_wheel_holds_every_package_the_migrations_and_the_sql(installed):
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    missing = [name for name in REQUIRED_FILES if name not in names]
    assert not missing, f"the wheel lacks {missing}"
    for package in PACKAGES:
        sources = {
            p.relative_to(REPO).as_posix()
            for p in (REPO / package).rglob("*.py")
            if "__pycache__" not in p.parts
        }
        assert sources <= names, f"the wheel lacks {sorted(sources - names)}"
    assert not any(name.startswith(("tests/", "bench/")) for name in names)


def test_our_modules_come_from_the_wheel_not_the_repository(installed):
    modules = ("service", "settings", *PACKAGES)
    script = "import importlib\n" + "\n".join(
        f"print(importlib.import_module({m!r}).__file__)" for m in modules
    )
    files = run([str(installed.python), "-c", script], env=installed.env, cwd=installed.home)
    paths = [Path(line) for line in files.splitlines()]
    assert len(paths) == len(modules)
    for path in paths:
        assert path.is_relative_to(installed.site_packages), path


def test_the_installed_cli_migrates_makes_keys_trains_and_the_service_serves(installed):
    attrition = str(installed.bin / "attrition")
    env, home = installed.env, installed.home

    run([attrition, "db", "upgrade"], env=env, cwd=home)
    with sqlite3.connect(home / "attrition.db") as connection:
        [(revision,)] = connection.execute("SELECT version_num FROM alembic_version").fetchall()
    assert revision == db.head_revision()

    read_key = run(
        [attrition, "keys", "create", "wheel-reader", "--role", "read"], env=env, cwd=home
    )
    predict_key = run([attrition, "keys", "create", "wheel-predictor"], env=env, cwd=home)
    read_key, predict_key = read_key.splitlines()[-1], predict_key.splitlines()[-1]
    assert read_key.startswith("atk_") and predict_key.startswith("atk_")

    trained = run(
        [attrition, "train", "--generated-rows", "300", "--folds", "3"],
        env=env,
        cwd=home,
        timeout=900,
    )
    assert "saved attrition_pipeline:" in trained

    port = free_port()
    command = [str(installed.python), "-m", "bentoml", "serve", "service:Attrition"]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    server = start(command, port=port, env=env, log=home / "serve.log", cwd=home, timeout=300)
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            assert client.get("/readyz").status_code == 200
            answer = client.post("/predict", json=RAW, headers={"X-API-Key": predict_key})
            assert answer.status_code == 200, (answer.text, server.log_tail())
            history = client.get("/history", headers={"X-API-Key": read_key})
            assert history.status_code == 200
            assert [i["id"] for i in history.json()["items"]] == [answer.json()["prediction_id"]]
            missing = client.get("/nonexistent", headers={"X-API-Key": read_key})
            assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    finally:
        server.stop()
