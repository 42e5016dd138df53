"""Receiver benchmark: sustained webhook intake (notifications/s, p50/p99 latency) on SQLite and PostgreSQL,
and the time from intake to the plan's arrival at the orchestrator.

Everything runs on loopback: the receiver (``optiinfra receiver``) and the orchestrator sink
(``python -m optiinfra.demo.orchestrator``) as subprocesses, the load generator here (aiohttp client, a bounded
number of requests at a fixed concurrency). Baseline in the same run: a bare aiohttp handler answering 200 after
reading the body, driven by the same load generator. Targets: >= 1,000 notifications/s and p99 <= 50 ms on
SQLite; intake-to-orchestrator <= 1 s.

Each notification carries one kv_cache_pressure alert; every episode is delivered 4 times (an HA pair, each
re-sending once), so a quarter of the requests create episodes and the rest are duplicates. The fleet workload
cycles the episodes over ``--targets`` pods (alerts that fire, resolve and fire again), so most new episodes meet
a plan in flight or the cooldown; the worst case gives every episode its own pod, so every episode becomes a plan
pushed to the sink while the load runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import datetime, timedelta
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))

from conftest import free_port  # noqa: E402
from pg import PgUnavailable, running_postgres  # noqa: E402

TOKEN = "bench-token"
BARE = """
import sys
from aiohttp import web
async def ok(request):
    await request.read()
    return web.json_response({"status": "accepted"})
app = web.Application()
app.router.add_post("/api/v1/alerts", ok)
app.router.add_get("/health", lambda r: web.json_response({"status": "ok"}))
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


def payload(episode: int, starts_at: str, targets: int | None = None) -> bytes:
    """One notification of ``episode``; with ``targets`` the episodes cycle over that many pods (a fleet whose
    alerts fire, resolve and fire again: same fingerprint, a new startsAt each time)."""
    pod = episode % targets if targets else episode
    if targets:
        start = datetime.fromisoformat(starts_at) + timedelta(seconds=episode // targets)
        starts_at = start.isoformat().replace("+00:00", "Z")
    labels = {"alertname": "LLMKVCachePressure", "bottleneck": "kv_cache_pressure", "severity": "warning",
              "component": "engine", "namespace": "bench", "pod": f"vllm-{pod}", "engine": "vllm",
              "model": "llama", "instance": f"10.0.{pod // 250}.{pod % 250}:9400"}
    return json.dumps({
        "version": "4", "groupKey": f'{{}}/{{bottleneck=~".+"}}:{{pod="vllm-{pod}"}}', "truncatedAlerts": 0,
        "status": "firing", "receiver": "optiinfra", "groupLabels": {"pod": labels["pod"]},
        "commonLabels": labels, "commonAnnotations": {"summary": "KV cache full"},
        "externalURL": "http://alertmanager:9093",
        "alerts": [{"status": "firing", "labels": labels,
                    "annotations": {"summary": "KV cache full", "description": "KV at 97%",
                                    "runbook_url": "https://example/runbooks/kv_cache_pressure.md"},
                    "startsAt": starts_at, "endsAt": "0001-01-01T00:00:00Z",
                    "generatorURL": "http://prometheus:9090/graph?g0.expr=x", "fingerprint": f"{pod:016x}"}],
    }).encode()


async def wait_up(url: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{url}: process exited with {proc.returncode}")
            try:
                async with session.get(url) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def spawn(stack: ExitStack, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(argv, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)

    def stop() -> None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
    stack.callback(stop)
    return proc


async def load(url: str, total: int, concurrency: int, offset: int, targets: int | None = None) -> dict[str, float]:
    """POST ``total`` notifications at ``concurrency``; every episode 4 times. Returns throughput and latency."""
    starts_at = "2026-11-22T03:00:00.000Z"
    bodies = [payload(offset + i // 4, starts_at, targets) for i in range(total)]
    latencies: list[float] = []
    errors = 0
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    queue = iter(bodies)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def worker() -> None:
            nonlocal errors
            for body in queue:
                t0 = time.perf_counter()
                async with session.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    if resp.status != 200:
                        errors += 1
                latencies.append(time.perf_counter() - t0)
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    latencies.sort()
    return {"rate": total / wall, "wall": wall, "p50": statistics.median(latencies) * 1000,
            "p99": latencies[int(len(latencies) * 0.99) - 1] * 1000, "errors": errors}


async def intake_to_orchestrator(receiver: str, sink: str, samples: int, offset: int) -> list[float]:
    """One fresh episode at a time: seconds from the POST to the plan's arrival at the sink."""
    delays: list[float] = []
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{sink}/api/v1/requests?since=1000000000") as resp:
            seen = (await resp.json())["next"]
        for i in range(samples):
            episode = offset + i
            sent = time.time()
            async with session.post(f"{receiver}/api/v1/alerts", data=payload(episode, "2026-11-22T04:00:00.000Z"),
                                    headers=headers) as resp:
                assert resp.status == 200, await resp.text()
            deadline = time.monotonic() + 10
            arrived = None
            while arrived is None and time.monotonic() < deadline:
                async with session.get(f"{sink}/api/v1/requests?since={seen}") as resp:
                    answer = await resp.json()
                requests, seen = answer["requests"], answer["next"]
                for r in requests:
                    if r["path"] == "/api/v1/plans" and r["body"]["target"]["pod"] == f"vllm-{episode}":
                        arrived = r["at"]
                        break
                else:
                    await asyncio.sleep(0.005)
            if arrived is None:
                raise RuntimeError(f"plan for episode {episode} never reached the orchestrator")
            delays.append(arrived - sent)
    return delays


async def bench_receiver(db: str, total: int, concurrency: int, samples: int,
                         targets: int | None) -> tuple[dict[str, float], list[float]]:
    with ExitStack() as stack:
        sink_port = free_port()
        port = free_port()
        while port == sink_port:
            port = free_port()
        sink_proc = spawn(stack, [sys.executable, "-m", "optiinfra.demo.orchestrator", "--listen",
                                  f"127.0.0.1:{sink_port}"])
        sink = f"http://127.0.0.1:{sink_port}"
        await wait_up(f"{sink}/health", sink_proc)
        token_file = Path(tempfile.mkdtemp(prefix="optiinfra-bench-")) / "token"
        token_file.write_text(TOKEN)
        proc = spawn(stack, [sys.executable, "-m", "optiinfra.cli", "--log-level", "error", "receiver",
                             "--orchestrator-url", sink, "--listen", f"127.0.0.1:{port}", "--db", db,
                             "--token-file", str(token_file), "--auto-approve-low-risk"])
        receiver = f"http://127.0.0.1:{port}"
        await wait_up(f"{receiver}/health/detailed", proc)  # only the receiver serves this path
        await load(f"{receiver}/api/v1/alerts", 200, 8, offset=10_000_000)  # warm-up
        result = await load(f"{receiver}/api/v1/alerts", total, concurrency, offset=0, targets=targets)
        result["drain"] = await drained(receiver, time.perf_counter() - result["wall"])
        delays = await intake_to_orchestrator(receiver, sink, samples, offset=20_000_000)
        return result, delays


async def drained(receiver: str, started: float, timeout: float = 300) -> float:
    """Seconds from the start of the load until every episode is planned and every plan pushed."""
    async with aiohttp.ClientSession() as session:
        while time.perf_counter() - started < timeout:
            async with session.get(f"{receiver}/api/v1/episodes?state=new") as resp:
                waiting = len((await resp.json())["episodes"])
            async with session.get(f"{receiver}/health/detailed") as resp:
                depth = (await resp.json())["outbox_depth"]
            if waiting == 0 and depth == 0:
                return time.perf_counter() - started
            await asyncio.sleep(0.05)
    raise RuntimeError("the receiver did not drain its backlog")


async def bench_bare(total: int, concurrency: int) -> dict[str, float]:
    with ExitStack() as stack:
        port = free_port()
        proc = spawn(stack, [sys.executable, "-c", BARE, str(port)])
        await wait_up(f"http://127.0.0.1:{port}/health", proc)
        await load(f"http://127.0.0.1:{port}/api/v1/alerts", 200, 8, offset=10_000_000)
        return await load(f"http://127.0.0.1:{port}/api/v1/alerts", total, concurrency, offset=0)


def line(name: str, r: dict[str, float]) -> str:
    return (f"{name:<28} {r['rate']:>9.0f} notif/s   p50 {r['p50']:>6.2f} ms   p99 {r['p99']:>6.2f} ms"
            f"   errors {int(r['errors'])}")


def drain_line(name: str, r: dict[str, float], total: int) -> str:
    episodes = total // 4
    return (f"{name:<28} {episodes} episodes processed (planned or skipped) and every plan pushed "
            f"{r['drain']:.1f} s after the load started ({episodes / r['drain']:.0f} episodes/s end to end)")


def delay_line(name: str, delays: list[float]) -> str:
    d = sorted(delays)
    return (f"{name:<28} intake->orchestrator p50 {statistics.median(d) * 1000:.1f} ms   "
            f"p99 {d[max(0, int(len(d) * 0.99) - 1)] * 1000:.1f} ms   max {d[-1] * 1000:.1f} ms   (n={len(d)})")


def median_round(rounds: list[dict[str, float]]) -> dict[str, float]:
    """The round with the median throughput (its latencies are reported with it)."""
    return sorted(rounds, key=lambda r: r["rate"])[len(rounds) // 2]


async def main_async(args: argparse.Namespace) -> int:
    print(f"receiver intake benchmark: {args.requests} notifications per run, concurrency {args.concurrency}, "
          f"each episode delivered 4 times; loopback; {os.cpu_count()} CPUs")
    print(f"fleet workload: {args.requests // 4} episodes over {args.targets} pods (one plan in flight per pod); "
          f"worst case: every episode a new pod, so every episode becomes a plan and a push")
    print(f"{args.rounds} rounds, baseline and SQLite alternating; the median round is summarised")
    bares, sqlites, sqlite_delays = [], [], []
    for n in range(args.rounds):
        bare = await bench_bare(args.requests, args.concurrency)
        print(line(f"[{n + 1}] baseline: bare aiohttp", bare))
        tmp = tempfile.mkdtemp(prefix="optiinfra-bench-")
        sqlite, delays = await bench_receiver(f"sqlite:///{tmp}/receiver.db", args.requests, args.concurrency,
                                              args.samples, args.targets)
        print(line(f"[{n + 1}] receiver, SQLite", sqlite))
        bares.append(bare)
        sqlites.append(sqlite)
        sqlite_delays += delays
    bare, sqlite = median_round(bares), median_round(sqlites)
    tmp = tempfile.mkdtemp(prefix="optiinfra-bench-")
    worst, _ = await bench_receiver(f"sqlite:///{tmp}/receiver.db", args.requests, args.concurrency, 5, None)
    print("--- median round (fleet workload) and the worst case")
    print(line("baseline: bare aiohttp 200", bare))
    print(line("receiver, SQLite", sqlite))
    print(drain_line("receiver, SQLite", sqlite, args.requests))
    print(delay_line("receiver, SQLite", sqlite_delays))
    print(line("receiver, SQLite, worst case", worst))
    print(drain_line("receiver, SQLite, worst case", worst, args.requests))
    try:
        with running_postgres() as pg:
            postgres, pg_delays = await bench_receiver(pg.new_database(), args.requests, args.concurrency,
                                                       args.samples, args.targets)
            pg_worst, _ = await bench_receiver(pg.new_database(), args.requests, args.concurrency, 5, None)
        print(line("receiver, PostgreSQL", postgres))
        print(drain_line("receiver, PostgreSQL", postgres, args.requests))
        print(delay_line("receiver, PostgreSQL", pg_delays))
        print(line("receiver, PostgreSQL, worst", pg_worst))
        print(drain_line("receiver, PostgreSQL, worst", pg_worst, args.requests))
    except PgUnavailable as exc:
        print(f"receiver, PostgreSQL: skipped ({exc})")
    ok = sqlite["rate"] >= 1000 and sqlite["p99"] <= 50 and max(sqlite_delays) <= 1.0
    print(f"SQLite vs baseline: {sqlite['rate'] / bare['rate']:.0%} of bare-handler throughput; "
          f"targets (>= 1000/s, p99 <= 50 ms, intake->orchestrator <= 1 s): {'met' if ok else 'NOT met'}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=8000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--samples", type=int, default=30, help="intake->orchestrator samples per round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating baseline/SQLite rounds")
    parser.add_argument("--targets", type=int, default=50, help="pods the fleet workload's episodes cycle over")
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
