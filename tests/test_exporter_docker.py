"""The Dockerfile, checked by inspection (no Docker here), and its HEALTHCHECK command run for real."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import subprocess
import sys
import tomllib
from fnmatch import fnmatch
from typing import Any

from aiohttp.test_utils import TestServer
from conftest import REPO, free_port

from optiinfra.exporter.server import ExporterConfig, create_app


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in (REPO / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, args = line.partition(" ")
        out.append((keyword.upper(), args.strip()))
    return out


def final_stage() -> list[tuple[str, str]]:
    ins = instructions()
    last_from = max(i for i, (k, _) in enumerate(ins) if k == "FROM")
    return ins[last_from:]


def test_slim_python_base_and_non_root_user() -> None:
    froms = [args for k, args in instructions() if k == "FROM"]
    assert froms and all(a.split()[0].startswith("python:3.1") and "-slim" in a.split()[0] for a in froms)
    users = [args for k, args in final_stage() if k == "USER"]
    assert users and users[-1] not in ("root", "0") and not users[-1].startswith("0:")


def test_expose_healthcheck_and_command() -> None:
    stage = dict(final_stage())
    assert stage["EXPOSE"].split() == ["9400"]
    health = stage["HEALTHCHECK"]
    assert "CMD" in health and "curl" not in health and "wget" not in health
    assert "python" in health and "urllib" in health
    cmd = json.loads(stage["CMD"])
    assert cmd == ["optiinfra", "exporter"]
    assert "ENTRYPOINT" not in stage  # compose/Kubernetes give full ["optiinfra", ...] commands
    assert "OPTIINFRA_HEALTH_URL=http://127.0.0.1:9400/health" in stage["ENV"]


def test_installs_the_package_from_every_component_folder() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    package_dirs = set(pyproject["tool"]["setuptools"]["package-dir"].values())
    copied = {src for k, args in instructions() if k == "COPY" and "--from" not in args for src in args.split()[:-1]}
    assert {"pyproject.toml", "README.md"} <= copied
    assert package_dirs <= copied, package_dirs - copied
    for source in copied:
        assert (REPO / source).exists(), source
    runs = " ".join(args for k, args in instructions() if k == "RUN")
    assert "pip wheel" in runs and "pip install" in runs


def test_dockerignore_keeps_what_the_build_copies() -> None:
    patterns = [p.strip() for p in (REPO / ".dockerignore").read_text().splitlines()
                if p.strip() and not p.startswith("#")]
    assert {".git", ".venv", "tests"} <= set(patterns)
    copied = [src for k, args in instructions() if k == "COPY" and "--from" not in args for src in args.split()[:-1]]
    for source in copied:
        assert not any(fnmatch(source, p) for p in patterns), source


def _healthcheck_argv() -> list[str]:
    health = dict(final_stage())["HEALTHCHECK"]
    argv: list[str] = json.loads(health[health.index("CMD") + 3:].strip())
    return [sys.executable if argv[0] == "python" else argv[0], *argv[1:]]


async def test_healthcheck_command_against_a_real_sidecar() -> None:
    app = create_app(ExporterConfig(gpu=False, host=False))
    server: TestServer = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        env: dict[str, Any] = {**os.environ, "OPTIINFRA_HEALTH_URL": str(server.make_url("/health"))}
        proc = await asyncio.create_subprocess_exec(*_healthcheck_argv(), env=env, stderr=asyncio.subprocess.PIPE)
        _, err = await asyncio.wait_for(proc.communicate(), 20)
        assert proc.returncode == 0, err
    finally:
        await server.close()
    env = {**os.environ, "OPTIINFRA_HEALTH_URL": f"http://127.0.0.1:{free_port()}/health"}
    down = subprocess.run(_healthcheck_argv(), env=env, capture_output=True, timeout=20, check=False)
    assert down.returncode != 0, shlex.join(_healthcheck_argv())
