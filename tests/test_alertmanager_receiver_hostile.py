"""Hostile but well-formed input hurts nothing (issue 12): one bad notification is refused alone, strings no store
can hold are refused before any store sees them, timestamps and limits that overflow are 400s, the same instant
spelled three ways is one episode, secrets never reach an unauthenticated endpoint or a log, and SIGTERM ends the
process promptly even with a client stalled mid-body."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import socket
import subprocess
import sys
import time
from typing import Any

import pytest
from conftest import free_port
from receiver_kit import TOKEN, alert, notification, start_pair

pytest_plugins = ("pg",)

HEADERS = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


def _bad(where: str, value: str) -> dict[str, Any]:
    body = notification(alert("fp-bad"))
    if where == "groupKey":
        body["groupKey"] = value
    elif where == "fingerprint":
        body["alerts"][0]["fingerprint"] = value
    else:
        body["alerts"][0]["labels"]["alertname"] = value
    return body


@pytest.mark.parametrize(("where", "value"), [
    ("alertname", "X\ud800"), ("groupKey", "g\ud800"), ("fingerprint", "fp\udfff"),
    ("alertname", "X\x00Y"), ("groupKey", "g\x00"),
])
async def test_one_bad_notification_is_refused_alone_and_its_batch_mates_are_stored(
        aiohttp_client, aiohttp_server, db_url, where, value):
    pair = await start_pair(aiohttp_client, aiohttp_server, db_url, run_worker=False)
    bodies = [notification(alert(f"fp-ok-{i}", pod=f"p{i}")) for i in range(20)]
    bodies.insert(7, _bad(where, value))
    # json.dumps escapes the surrogate / NUL as \\udXXX / \\u0000: valid JSON that passes the schema
    sends = [pair.client.post("/api/v1/alerts", data=json.dumps(b).encode(), headers=HEADERS) for b in bodies]
    responses = await asyncio.wait_for(asyncio.gather(*sends), timeout=60)
    statuses = [r.status for r in responses]
    assert statuses[7] == 400, statuses
    error = (await responses[7].json())["error"]
    assert "NUL" in error or "surrogate" in error
    assert statuses[:7] + statuses[8:] == [200] * 20
    assert {e["fingerprint"] for e in await pair.episodes()} == {f"fp-ok-{i}" for i in range(20)}


@pytest.mark.parametrize("stamp", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"])
async def test_timestamps_that_overflow_in_utc_are_400(aiohttp_client, aiohttp_server, tmp_path, stamp):
    pair = await start_pair(aiohttp_client, aiohttp_server, f"sqlite:///{tmp_path}/r.db", run_worker=False)
    for field in ("startsAt", "endsAt"):
        body = notification(alert("fp-t"))
        body["alerts"][0][field] = stamp
        resp = await pair.post(body)
        assert resp.status == 400, field
        assert f"alerts[0].{field}" in (await resp.json())["error"]
    assert (await pair.counts())["episodes"] == 0


async def test_deeply_nested_json_is_400(aiohttp_client, aiohttp_server, tmp_path):
    pair = await start_pair(aiohttp_client, aiohttp_server, f"sqlite:///{tmp_path}/r.db", run_worker=False)
    deep = b'{"version": "4", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    for path in ("/api/v1/alerts", "/api/v1/targets/clear", "/api/v1/plans/p-1/status"):
        resp = await pair.client.post(path, data=deep, headers=HEADERS)
        assert resp.status == 400, path
        assert "error" in await resp.json()


async def test_the_same_instant_spelled_three_ways_is_one_episode(aiohttp_client, aiohttp_server, db_url):
    pair = await start_pair(aiohttp_client, aiohttp_server, db_url, run_worker=False)
    for stamp in ("2026-11-22T03:00:00Z", "2026-11-22T03:00:00.000Z", "2026-11-22T04:00:00+01:00"):
        assert (await pair.post(notification(alert("fp-same", stamp)))).status == 200
    episodes = await pair.episodes()
    assert len(episodes) == 1 and episodes[0]["deliveries"] == 3
    assert episodes[0]["starts_at"] == "2026-11-22T03:00:00Z"
    resolved = alert("fp-same", "2026-11-22T02:00:00.000000-01:00", status="resolved")
    body = await (await pair.post(notification(resolved))).json()
    assert body["resolved"] == 1
    assert [e["status"] for e in await pair.episodes()] == ["resolved"]


@pytest.mark.parametrize("limit", ["-1", "-99999999999999999999", "0", "1001", "ten", "1e3"])
async def test_plan_limit_out_of_range_is_400(aiohttp_client, aiohttp_server, db_url, limit):
    pair = await start_pair(aiohttp_client, aiohttp_server, db_url, run_worker=False)
    status, body = await pair.api("GET", f"/api/v1/plans?limit={limit}")
    assert status == 400 and "limit" in body["error"]
    status, body = await pair.api("GET", "/api/v1/plans?limit=1000")
    assert status == 200 and body == {"plans": []}


async def _raw(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(65536), timeout=10)
    writer.close()
    return data


@pytest.mark.parametrize("authorization", [b"Bearer \xff" + TOKEN.encode(), b"Bearer " + TOKEN.encode() + b"\x00x",
                                           b"\xff\xfe"])
async def test_malformed_authorization_is_refused_and_never_logged(aiohttp_client, aiohttp_server, tmp_path, caplog,
                                                                   authorization):
    caplog.set_level(logging.DEBUG)
    pair = await start_pair(aiohttp_client, aiohttp_server, f"sqlite:///{tmp_path}/r.db", run_worker=False)
    body = json.dumps(notification(alert("fp-auth"))).encode()
    answer = await _raw(pair.client.server.port,
                        b"POST /api/v1/alerts HTTP/1.1\r\nHost: x\r\nAuthorization: " + authorization +
                        b"\r\nContent-Type: application/json\r\nContent-Length: " + str(len(body)).encode() +
                        b"\r\nConnection: close\r\n\r\n" + body)
    status = int(answer.split(b" ", 2)[1])
    assert status in (400, 401), answer[:200]
    assert TOKEN not in caplog.text
    assert (await pair.counts())["notifications"] == 0


async def test_health_detailed_shows_secrets_to_nobody(aiohttp_client, aiohttp_server, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    pair = await start_pair(aiohttp_client, aiohttp_server, f"sqlite:///{tmp_path}/r.db", run_worker=False)
    service = pair.service
    secret_url = pair.sink_url.replace("http://", "http://ORCHTOKEN@") + "/?api_key=QUERYSECRET"
    service.config = service.config.model_copy(update={"orchestrator_url": secret_url})
    status, public = await pair.api("GET", "/health/detailed", token=None)
    assert status == 200
    assert set(public) == {"status", "store", "orchestrator", "outbox_depth"}
    assert "location" not in public["store"] and "url" not in public["orchestrator"]
    status, full = await pair.api("GET", "/health/detailed", token=TOKEN)
    assert status == 200 and full["store"]["location"].startswith("sqlite:///")
    text = json.dumps(full)
    assert "ORCHTOKEN" not in text and "QUERYSECRET" not in text and "127.0.0.1" in full["orchestrator"]["url"]
    status, _ = await pair.api("GET", "/health/detailed", token="wrong")
    assert status == 401
    assert "ORCHTOKEN" not in caplog.text


# ------------------------------------------------------------------------------------------------ shutdown

def _start(port: int, db: str, sink_url: str, log: Any = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "optiinfra.cli", "--log-level", "info", "receiver", "--orchestrator-url",
         sink_url, "--listen", f"127.0.0.1:{port}", "--db", db, "--auto-approve-low-risk"],
        stdout=subprocess.DEVNULL, stderr=log)


def _wait_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the receiver exited"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("the receiver did not start listening")


def _post(port: int, body: bytes) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(b"POST /api/v1/alerts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
        return int(conn.recv(4096).split(b" ", 2)[1])


async def _hanging_server() -> tuple[asyncio.Server, str]:
    """An orchestrator that accepts connections and never answers."""
    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client goes away
        writer.close()

    server = await asyncio.start_server(hang, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


@pytest.mark.parametrize("case", ["stalled_body", "after_normal_flow", "idle_keepalive", "orchestrator_hangs"])
async def test_sigterm_exits_within_five_seconds(aiohttp_server, db_url, case, tmp_path):
    from optiinfra.demo.orchestrator import Sink
    from optiinfra.demo.orchestrator import create_app as create_sink_app

    sink = Sink()
    sink_server = await aiohttp_server(create_sink_app(sink))
    hanging, hanging_url = await _hanging_server()
    port = free_port()
    orchestrator = hanging_url if case == "orchestrator_hangs" else str(sink_server.make_url("")).rstrip("/")
    log = (tmp_path / "receiver.log").open("wb")
    proc = _start(port, db_url, orchestrator, log)
    held: list[socket.socket] = []
    try:
        await asyncio.to_thread(_wait_listening, port, proc)
        if case == "stalled_body":
            conn = socket.create_connection(("127.0.0.1", port), timeout=10)
            conn.sendall(b"POST /api/v1/alerts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 100000\r\n\r\n{\"version\": \"4\"")
            held.append(conn)
        elif case == "after_normal_flow":
            for i in range(5):
                body = json.dumps(notification(alert(f"fp-{i}", pod=f"p{i}"))).encode()
                assert await asyncio.to_thread(_post, port, body) == 200
            assert await sink.wait_for(lambda s: len(s.plans) == 5, timeout=30)
        elif case == "orchestrator_hangs":  # registration and the plan's push wait on an orchestrator that hangs
            body = json.dumps(notification(alert("fp-hang"))).encode()
            assert await asyncio.to_thread(_post, port, body) == 200
            await asyncio.sleep(1.0)
        else:
            conn = socket.create_connection(("127.0.0.1", port), timeout=10)
            conn.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert conn.recv(4096).startswith(b"HTTP/1.1 200")
            held.append(conn)
        await asyncio.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        # Kubernetes gives 30 s; the receiver promises to be gone in 5 (its shutdown timeout is below that)
        started = time.monotonic()
        try:
            returncode = await asyncio.to_thread(proc.wait, 5)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running {time.monotonic() - started:.1f}s after SIGTERM; its log:\n"
                                 + (tmp_path / "receiver.log").read_text()[-3000:]) from None
        assert returncode == 0, (tmp_path / "receiver.log").read_text()[-3000:]
        if case == "stalled_body":
            held[0].settimeout(5)
            answer = held[0].recv(4096)
            assert answer == b"" or answer.startswith(b"HTTP/1.1 "), answer[:100]
    finally:
        log.close()
        hanging.close()
        for conn in held:
            conn.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


@pytest.mark.parametrize(("method", "path", "body"), [
    ("GET", "/api/v1/plans?target=ml%00x", None),
    ("GET", "/api/v1/plans?bottleneck=%00", None),
    ("GET", "/api/v1/diagnoses?target=%00", None),
    ("GET", "/api/v1/targets/blocked?target=a%00", None),
    ("POST", "/api/v1/targets/clear", {"target": "ml/p\ud800/m"}),
    ("POST", "/api/v1/targets/clear", {"target": "ml/p/m", "knob": "x\x00"}),
    ("POST", "/api/v1/plans/p-1/reject", {"by": "\udfff"}),
])
async def test_api_strings_no_store_can_hold_are_400(aiohttp_client, aiohttp_server, db_url, method, path, body):
    pair = await start_pair(aiohttp_client, aiohttp_server, db_url, run_worker=False)
    resp = await pair.client.request(method, path, data=None if body is None else json.dumps(body).encode(),
                                     headers=HEADERS)
    assert resp.status == 400, await resp.text()
    error = (await resp.json())["error"]  # pydantic's own JSON parser already refuses a lone surrogate
    assert "NUL" in error or "surrogate" in error or "hex escape" in error, error
