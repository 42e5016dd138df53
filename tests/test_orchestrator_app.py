"""The process orchestrator against a fake engine process: flags, health-gated restarts, revert on a failed
start, rollbacks, idempotency, status reports to a recording receiver, crash supervision."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from optiinfra.cli import main
from optiinfra.demo.controller import ApplyError
from optiinfra.demo.stack import free_port
from optiinfra.orchestrator.app import Orchestrator, create_app, planned_argv
from optiinfra.orchestrator.engine import Engine, changed_flags, flag_value, with_flag

FAKE = Path(__file__).with_name("fake_engine.py")


def test_flag_helpers() -> None:
    argv = ["vllm", "--port", "8000", "--enforce-eager", "--kv-cache-memory-bytes=1024", "--x", "1"]
    assert flag_value(argv, "--port") == "8000"
    assert flag_value(argv, "--enforce-eager") == "true"
    assert flag_value(argv, "--kv-cache-memory-bytes") == "1024"
    assert flag_value(argv, "--missing") is None
    assert with_flag(argv, "--kv-cache-memory-bytes", 2048) == [
        "vllm", "--port", "8000", "--enforce-eager", "--kv-cache-memory-bytes", "2048", "--x", "1"]
    assert with_flag(argv, "--enforce-eager", False) == [
        "vllm", "--port", "8000", "--kv-cache-memory-bytes=1024", "--x", "1"]
    assert with_flag(argv, "--new", True)[-1] == "--new"
    assert with_flag(argv, "--gpu-memory-utilization", 0.95)[-2:] == ["--gpu-memory-utilization", "0.95"]
    assert changed_flags(argv, with_flag(argv, "--port", 9000)) == {"--port": ("8000", "9000")}


def test_planned_argv_resolves_relative_changes_and_refuses_scaling() -> None:
    argv = ["e", "--kv-cache-memory-bytes", "1000", "--max-num-seqs", "16"]
    plan = {"actions": [
        {"kind": "engine_arg", "name": "--kv-cache-memory-bytes", "knob": "kv_cache_memory_bytes", "to": "x2",
         "relative": True},
        {"kind": "engine_arg", "name": "--max-num-seqs", "knob": "max_num_seqs", "to": "x0.75", "relative": True,
         "min_value": 1},
        {"kind": "engine_env", "name": "FAKE_ENV", "knob": "fake_env", "to": "on"},
    ]}
    new_argv, env = planned_argv(argv, {}, plan)
    assert flag_value(new_argv, "--kv-cache-memory-bytes") == "2000"
    assert flag_value(new_argv, "--max-num-seqs") == "12"
    assert env == {"FAKE_ENV": "on"}
    with pytest.raises(ApplyError, match="cannot carry out scale"):
        planned_argv(argv, {}, {"actions": [{"kind": "scale", "name": "replicas", "to": "+1", "relative": True}]})


class Receiver:
    """Records the status reports; answers 409 to the first one, as a receiver that has not yet recorded the
    push does."""

    def __init__(self) -> None:
        self.reports: list[tuple[str, dict[str, Any]]] = []
        self.refused_first = False

    async def status(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != "Bearer rt":
            return web.json_response({"error": "unauthorized"}, status=401)
        if not self.refused_first:
            self.refused_first = True
            return web.json_response({"error": "not pushed yet"}, status=409)
        self.reports.append((request.match_info["plan_id"], await request.json()))
        return web.json_response({})


async def _metrics(port: int) -> str:
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/metrics") as resp:
        return await resp.text()


async def _wait(predicate: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.1)


@pytest.fixture
async def rig(aiohttp_server: Any) -> Any:
    receiver = Receiver()
    rapp = web.Application()
    rapp.router.add_post("/api/v1/plans/{plan_id}/status", receiver.status)
    rserver = await aiohttp_server(rapp)
    port = free_port()
    argv = [sys.executable, str(FAKE), "--port", str(port), "--kv-cache-memory-bytes", "1000"]
    orch = Orchestrator(Engine(argv, f"http://127.0.0.1:{port}/health", start_timeout=20, crash_backoff=0.2),
                        receiver_url=str(rserver.make_url("")), receiver_token="rt", token="ot")
    server = await aiohttp_server(create_app(orch))
    assert await orch.engine.wait_healthy()
    return orch, receiver, server, port


def _headers(key: str) -> dict[str, str]:
    return {"Authorization": "Bearer ot", "Idempotency-Key": key}


def _plan(plan_id: str, actions: list[dict[str, Any]]) -> dict[str, Any]:
    return {"plan_id": plan_id, "idempotency_key": f"key-{plan_id}", "actions": actions}


KV_UP = {"kind": "engine_arg", "name": "--kv-cache-memory-bytes", "knob": "kv_cache_memory_bytes", "to": "x2",
         "relative": True}


async def test_plan_restarts_with_new_flags_once_and_rollback_restores(rig: Any) -> None:
    orch, receiver, server, port = rig
    first_pid = orch.engine.pid
    client = aiohttp.ClientSession()
    try:
        async with client.post(server.make_url("/api/v1/plans"), json=_plan("p1", [KV_UP]),
                               headers=_headers("k1")) as resp:
            assert resp.status == 202
        await _wait(lambda: [s for _, s in receiver.reports if s["status"] == "completed"])
        assert [s["status"] for _, s in receiver.reports] == ["rolling_out", "completed"]
        assert "step" not in receiver.reports[0][1]  # no canary: a step would be analysed during the restart
        assert 'kv_cache_memory_bytes="2000"' in await _metrics(port)
        assert orch.engine.pid != first_pid
        starts = orch.engine.starts

        async with client.post(server.make_url("/api/v1/plans"), json=_plan("p1", [KV_UP]),
                               headers=_headers("k1")) as resp:
            assert resp.status == 200
            assert (await resp.json())["duplicate"] is True
        await asyncio.sleep(0.5)
        assert orch.engine.starts == starts
        assert 'kv_cache_memory_bytes="2000"' in await _metrics(port)

        for _ in range(2):
            async with client.post(server.make_url("/api/v1/plans/p1/rollback"), json={"reason": "slo burn"},
                                   headers=_headers("rb-p1")) as resp:
                assert resp.status in (200, 202)
        await _wait(lambda: orch.results.get("p1") == "rolled_back")
        assert 'kv_cache_memory_bytes="1000"' in await _metrics(port)
        assert orch.engine.starts == starts + 1
        async with client.get(server.make_url("/api/v1/engine")) as resp:
            state = await resp.json()
        assert [h["what"] for h in state["history"]] == ["applied", "restored"]
        assert state["history"][0]["changes"] == {"--kv-cache-memory-bytes": ["1000", "2000"]}
    finally:
        await client.close()


async def test_failed_start_reverts_to_previous_flags_and_reports_failed(rig: Any) -> None:
    orch, receiver, server, port = rig
    fail = {"kind": "engine_arg", "name": "--fail-start", "knob": "fail_start", "to": True}
    async with aiohttp.ClientSession() as client, client.post(
            server.make_url("/api/v1/plans"), json=_plan("bad", [KV_UP, fail]), headers=_headers("kb")) as resp:
        assert resp.status == 202
    await _wait(lambda: orch.results.get("bad") == "failed")
    await _wait(lambda: [s for _, s in receiver.reports if s["status"] == "failed"])
    failed = next(s for _, s in receiver.reports if s["status"] == "failed")
    assert "previous flags (healthy)" in failed["message"]
    assert flag_value(orch.engine.argv, "--fail-start") is None
    assert 'kv_cache_memory_bytes="1000"' in await _metrics(port)


async def test_unauthorized_and_malformed_pushes_are_refused(rig: Any) -> None:
    _orch, _receiver, server, _port = rig
    async with aiohttp.ClientSession() as client:
        async with client.post(server.make_url("/api/v1/plans"), json=_plan("x", [KV_UP])) as resp:
            assert resp.status == 401
        async with client.post(server.make_url("/api/v1/plans"), data=b"{not json",
                               headers=_headers("m")) as resp:
            assert resp.status == 400
        async with client.post(server.make_url("/api/v1/plans"), json={"plan_id": "x"},
                               headers=_headers("m2")) as resp:
            assert resp.status == 400


async def test_engine_that_dies_is_restarted(rig: Any) -> None:
    orch, _receiver, _server, port = rig
    pid = orch.engine.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    await _wait(lambda: orch.engine.pid not in (None, pid))
    assert await orch.engine.wait_healthy()
    assert 'kv_cache_memory_bytes="1000"' in await _metrics(port)


def test_cli_rejects_bad_input_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    for args in (["--engine-cmd", ""], ["--engine-cmd", "a 'b"], ["--engine-cmd", "x", "--listen", "nope"],
                 ["--engine-cmd", "x", "--engine-niceness", "20"]):
        assert main(["orchestrator", *args]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1
        assert err.startswith("optiinfra orchestrator: error:")


async def test_engine_niceness_covers_its_whole_session() -> None:
    """--engine-niceness lowers the engine's session (its autogroup: what weighs against the sidecar's and
    Prometheus's sessions) and the engine process, and a child the engine forks later inherits both."""
    script = ("import subprocess, sys, time; time.sleep(0.5); "
              "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); time.sleep(60)")
    mine = os.getpriority(os.PRIO_PROCESS, 0)
    engine = Engine([sys.executable, "-c", script], "http://127.0.0.1:9/health", niceness=mine + 7, stop_timeout=5)
    await engine.start()
    try:
        pid = engine.pid
        assert pid is not None
        await _wait(lambda: bool(_children(pid)), timeout=20)
        for member in (pid, *_children(pid)):
            assert os.getpriority(os.PRIO_PROCESS, member) == mine + 7
            group = Path(f"/proc/{member}/autogroup")
            if group.exists():
                assert group.read_text().split()[-1] == str(mine + 7)
        assert os.getpriority(os.PRIO_PROCESS, 0) == mine  # the orchestrator itself keeps its priority
    finally:
        await engine.stop()


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []
