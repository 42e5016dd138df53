"""The generated Alertmanager config: current, accepted by amtool, and routing/inhibiting in a real Alertmanager."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web
from conftest import REPO, free_port, require_binary

from optiinfra import taxonomy
from optiinfra.cli import main
from optiinfra.rules import amconfig

GENERATED = REPO / "alertmanager" / "generated" / "alertmanager.yml"


def test_committed_config_is_current() -> None:
    assert GENERATED.read_text() == amconfig.render(amconfig.Options()), "run: make generate"


def test_amtool_accepts_default_and_custom_configs(tmp_path: Path) -> None:
    amtool = require_binary("amtool")
    custom = tmp_path / "custom.yml"
    custom.write_text(amconfig.render(amconfig.Options(
        receiver_url="https://receiver.example:8443/", credentials_file="", group_wait="1s",
        group_interval="2s", repeat_interval="1m", matchers=['cluster=~"eu-.*"', 'tier!="batch"'],
        group_by=["cluster", "pod", "bottleneck"], inhibit_equal=["cluster", "pod"])))
    for path in (GENERATED, custom):
        result = subprocess.run([amtool, "check-config", str(path)], capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "5 inhibit rules" in result.stdout


def test_route_and_receiver() -> None:
    config = amconfig.build_config(amconfig.Options(receiver_url="http://r:9095/", group_wait="1s"))
    route = config["route"]
    assert route["receiver"] == "null" and route["group_wait"] == "1s"
    (child,) = route["routes"]
    (matcher,) = child["matchers"]
    ids = matcher.removeprefix('bottleneck=~"').removesuffix('"').split("|")
    assert set(ids) == {b.id for b in taxonomy.BOTTLENECKS} | {"slo_burn"}
    (webhook,) = next(r for r in config["receivers"] if r["name"] == child["receiver"])["webhook_configs"]
    assert webhook["url"] == "http://r:9095/api/v1/alerts"
    assert webhook["send_resolved"] is True and webhook["max_alerts"] == 0
    assert webhook["http_config"]["authorization"]["credentials_file"] == amconfig.Options().credentials_file
    no_auth = amconfig.build_config(amconfig.Options(credentials_file=""))
    assert "http_config" not in no_auth["receivers"][1]["webhook_configs"][0]
    assert amconfig.webhook_url("http://r/api/v1/alerts") == "http://r/api/v1/alerts"


def test_inhibition_rules_cover_every_taxonomy_pair() -> None:
    covered = set()
    for rule in amconfig.inhibit_rules():
        (source,) = rule["source_matchers"]
        (target,) = rule["target_matchers"]
        source_id = source.split('"')[1]
        for target_id in target.split('"')[1].split("|"):
            covered.add((source_id, target_id))
            expected = ["namespace", "pod", "model"] if source_id == "kv_cache_pressure" else ["namespace", "pod"]
            assert rule["equal"] == expected
    assert covered == {(s.id, t.id) for s, t in taxonomy.inhibition_pairs()}


@pytest.mark.parametrize(("flag", "value", "message"), [
    ("--receiver-url", "ftp://x", "http(s) URL"),
    ("--receiver-url", "http://x/?a=1", "query string"),
    ("--group-wait", "10", "Prometheus duration"),
    ("--repeat-interval", "0s", "positive"),
    ("--resolve-timeout", "99999999999999999999h", "longer than any duration Prometheus can hold"),
])
def test_cli_rejects_bad_options(flag: str, value: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["alertmanager-config", flag, value]) == 2
    captured = capsys.readouterr()
    assert message in captured.err and captured.out == "" and "Traceback" not in captured.err
    assert captured.err.count("\n") == 1 and flag in captured.err


def test_config_section_drives_routing_grouping_and_inhibition(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"alertmanager": {
        "receiver_url": "http://recv:1", "group_by": ["cluster", "pod", "bottleneck"], "group_wait": "3s",
        "matchers": ['cluster=~"eu-.*"'], "inhibit_equal": ["cluster", "namespace", "pod"]}}))
    assert main(["alertmanager-config", "--slo-config", str(config), "--group-wait", "4s"]) == 0
    doc = yaml.safe_load(capsys.readouterr().out)
    route = doc["route"]
    assert route["group_by"] == ["cluster", "pod", "bottleneck"]
    assert route["group_wait"] == "4s", "a flag overrides the config's key"
    assert route["routes"][0]["matchers"][1] == 'cluster=~"eu-.*"'
    assert doc["receivers"][1]["webhook_configs"][0]["url"] == "http://recv:1/api/v1/alerts"
    equal = {tuple(r["equal"]) for r in doc["inhibit_rules"]}
    assert equal == {("cluster", "namespace", "pod"), ("cluster", "namespace", "pod", "model")}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"alertmanager": {"matchers": ["cluster=eu"]}}))
    assert main(["alertmanager-config", "--slo-config", str(bad)]) == 2
    assert "alertmanager.matchers: 'cluster=eu' is not an Alertmanager matcher" in capsys.readouterr().err


def test_cli_prints_the_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["alertmanager-config", "--receiver-url", "http://127.0.0.1:1", "--group-wait", "2s"]) == 0
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["route"]["group_wait"] == "2s"
    assert config["receivers"][1]["webhook_configs"][0]["url"] == "http://127.0.0.1:1/api/v1/alerts"


def _alert(bottleneck: str | None, pod: str, alertname: str) -> dict[str, Any]:
    labels = {"alertname": alertname, "namespace": "llm", "pod": pod, "model": "m", "severity": "warning"}
    if bottleneck:
        labels["bottleneck"] = bottleneck
    return {"labels": labels, "annotations": {"summary": "test"}}


@pytest.mark.slow
async def test_real_alertmanager_routes_authenticates_and_inhibits(tmp_path: Path) -> None:
    binary = require_binary("prometheus-alertmanager")
    received: list[tuple[str, dict[str, Any]]] = []
    arrived = asyncio.Event()

    async def webhook(request: web.Request) -> web.Response:
        received.append((request.headers.get("Authorization", ""), await request.json()))
        arrived.set()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/api/v1/alerts", webhook)
    runner = web.AppRunner(app)
    await runner.setup()
    receiver_port, am_port = free_port(), free_port()
    await web.TCPSite(runner, "127.0.0.1", receiver_port).start()
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    config = tmp_path / "alertmanager.yml"
    config.write_text(amconfig.render(amconfig.Options(
        receiver_url=f"http://127.0.0.1:{receiver_port}", credentials_file=str(token), group_wait="1s",
        group_interval="1s", repeat_interval="1h")))
    proc = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address="],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{am_port}"
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(100):
                try:
                    async with session.get(f"{base}/-/ready") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
            else:
                pytest.fail("alertmanager did not become ready")
            alerts = [_alert("gpu_xid_error", "pod-a", "GPUXidError"),
                      _alert("kv_cache_pressure", "pod-a", "LLMKVCachePressure"),
                      _alert("kv_cache_pressure", "pod-b", "LLMKVCachePressure"),
                      _alert("queue_buildup", "pod-b", "LLMQueueBuildup"),
                      _alert(None, "pod-b", "SomethingElse")]
            async with session.post(f"{base}/api/v2/alerts", json=alerts) as resp:
                assert resp.status == 200, await resp.text()
            delivered: set[tuple[str, str]] = set()
            while len(delivered) < 2:
                await asyncio.wait_for(arrived.wait(), timeout=30)
                arrived.clear()
                delivered = {(a["labels"]["pod"], a["labels"]["bottleneck"])
                             for _, body in received for a in body["alerts"]}
            async with session.get(f"{base}/api/v2/alerts") as resp:
                state = {(a["labels"]["pod"], a["labels"]["alertname"]): a["status"] for a in await resp.json()}
            # Resolving an alert reaches the receiver too (send_resolved), so episodes close.
            resolved_alert = {**alerts[2], "endsAt": "2000-01-01T00:00:00Z"}
            async with session.post(f"{base}/api/v2/alerts", json=[resolved_alert]) as resp:
                assert resp.status == 200, await resp.text()
            resolved: list[dict[str, Any]] = []
            while not resolved:
                await asyncio.wait_for(arrived.wait(), timeout=30)
                arrived.clear()
                resolved = [a for _, body in received for a in body["alerts"]
                            if a["status"] == "resolved" and a["labels"]["pod"] == "pod-b"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        await runner.cleanup()
    assert all(auth == "Bearer s3cret" for auth, _ in received)
    assert all(body["receiver"] == "optiinfra" for _, body in received)
    assert delivered == {("pod-a", "gpu_xid_error"), ("pod-b", "kv_cache_pressure")}
    # Xid silences KV pressure on the same pod; KV pressure silences the queue alert of the same pod and model.
    assert state[("pod-a", "LLMKVCachePressure")]["state"] == "suppressed"
    assert state[("pod-a", "LLMKVCachePressure")]["inhibitedBy"]
    assert state[("pod-b", "LLMQueueBuildup")]["state"] == "suppressed"
    assert state[("pod-b", "LLMKVCachePressure")]["state"] == "active"
    assert state[("pod-b", "SomethingElse")]["state"] == "active"
    assert resolved[0]["labels"]["bottleneck"] == "kv_cache_pressure"


def test_route_only_prints_the_parts_to_merge(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["alertmanager-config", "--route-only", "--receiver-url", "http://r:1"]) == 0
    doc = yaml.safe_load(capsys.readouterr().out)
    assert set(doc) == {"route", "receivers", "inhibit_rules"}
    (route,) = doc["route"]["routes"]
    assert route["receiver"] == "optiinfra" and route["continue"] is True
    assert route["group_by"] == amconfig.Options().group_by, "the route carries its own grouping"
    assert [r["name"] for r in doc["receivers"]] == ["optiinfra"]
    assert doc["inhibit_rules"] == amconfig.inhibit_rules()


def test_merge_keeps_the_users_config_and_is_idempotent() -> None:
    existing = {"global": {"smtp_smarthost": "mail:25"},
                "route": {"receiver": "default",
                          "routes": [{"receiver": "pager", "matchers": ['severity="critical"']}]},
                "receivers": [{"name": "default"}, {"name": "pager"}],
                "inhibit_rules": [{"source_matchers": ['a="b"'], "target_matchers": ['c="d"']}]}
    options = amconfig.Options(receiver_url="http://r:1")
    once = amconfig.merge(existing, options)
    assert once["global"] == existing["global"] and once["route"]["receiver"] == "default"
    assert [r["receiver"] for r in once["route"]["routes"]] == ["optiinfra", "pager"]
    assert [r["name"] for r in once["receivers"]] == ["default", "pager", "optiinfra"]
    assert once["inhibit_rules"][0] == existing["inhibit_rules"][0]
    assert amconfig.merge(once, options) == once


@pytest.mark.parametrize(("content", "message"), [
    ("route: [1, 2\n", "not valid YAML"),
    ("receivers: []\n", "has no `route` section"),
    ("route: {receiver: x}\nreceivers: [{name: optiinfra, email_configs: [{to: a@b}]}]\n",
     "already has a receiver named 'optiinfra'"),
])
def test_merge_into_refuses_with_one_line(content: str, message: str, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "alertmanager.yml"
    path.write_text(content)
    assert main(["alertmanager-config", "--merge-into", str(path)]) == 2
    captured = capsys.readouterr()
    assert message in captured.err and captured.out == "" and captured.err.count("\n") == 1
    assert main(["alertmanager-config", "--merge-into", str(tmp_path / "missing.yml")]) == 2
    assert "cannot read" in capsys.readouterr().err
