"""Rules bench: the generated rules evaluated by a real Prometheus over days of synthesized fleet history,
against the Sloth-style raw-window SLO rules, in one run over the same blocks.

A fleet of ``--pods`` vLLM pods (spread over ``--models`` models, so ``pods / models`` pods per service; 8 GPUs
each, every series the rules read, native vLLM buckets) is written as OpenMetrics for the last ``--minutes``
(default 4320: 3 days) at ``--step`` seconds (default 60: the scrape interval of this bench), and backfilled
with ``promtool tsdb create-blocks-from openmetrics``. The recorded short-window SLO counts the long windows
read (``slo:sli_requests:rate2m``, ``slo:sli_errors:rate2m``) are backfilled over the same days from those
blocks by ``promtool tsdb create-blocks-from rules`` with the generated rules themselves, as a Prometheus that
had run for days would hold them. Two Prometheus servers then load copies of the blocks:

- A: the generated rules (SLO long windows built from the recorded counts, per service);
- B: the same rules with the SLO groups replaced by the raw-window baseline (every window read from raw
  series: ``optiinfra.rules.slo.raw_window_groups``, Sloth's layout).

Both evaluate every group at least ``--evaluations`` times (``evaluation_interval`` = ``--eval-interval``; the
SLO groups' own intervals are overridden by it in both, so A and B evaluate equally often). The bench prints
each SLO group's mean evaluation duration (``prometheus_rule_group_last_duration_seconds``, sampled after each
evaluation) and the process CPU seconds per evaluation round (``process_cpu_seconds_total`` over the
measuring period), for all groups and per pod; then the static cost (bench/rules/static_cost.py). The two
servers run one after the other on the same machine; on a busy machine durations include contention.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

from optiinfra import metrics as m
from optiinfra.config import load_config
from optiinfra.demo.stack import free_port
from optiinfra.rules.generate import RULES_FILE, dump_yaml, generate, write
from optiinfra.rules.promql import Ctx
from optiinfra.rules.slo import ERRORS, REQUESTS, raw_window_groups

HISTOGRAMS = ("llm_time_to_first_token_seconds", "llm_inter_token_latency_seconds",
              "llm_time_per_output_token_seconds", "llm_request_duration_seconds", "llm_request_queue_time_seconds")


def _lbl(labels: dict[str, str]) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


def pod_series(i: int, models: int, rng: random.Random) -> list[tuple[str, float, float]]:
    """(series, value at t=0, increase per second) of one pod."""
    pod = {"namespace": "bench", "pod": f"pod-{i:05d}", "instance": f"10.{i // 250}.{i % 250}.1:9400",
           "job": "optiinfra"}
    eng = {**pod, "engine": "vllm", "model": f"model-{i % models}"}
    rps = rng.uniform(0.5, 5)
    out: list[tuple[str, float, float]] = [(f"up{_lbl(pod)}", 1, 0),
                                           (f"llm_upstream_up{_lbl({**pod, 'engine': 'vllm'})}", 1, 0)]
    for name in HISTOGRAMS:
        bounds = m.NATIVE_BUCKETS["vllm"][name]
        scale = rng.uniform(0.2, 2.0)
        for le in (*bounds, float("inf")):
            share = 1.0 if le == float("inf") else min(1.0, le / (scale * 2))
            le_text = "+Inf" if le == float("inf") else repr(float(le))
            out.append((f"{name}_bucket{_lbl({**eng, 'le': le_text})}", 0, rps * share))
        out.append((f"{name}_count{_lbl(eng)}", 0, rps))
        out.append((f"{name}_sum{_lbl(eng)}", 0, rps * scale))
    for rank in ("0", "1"):
        out.append((f"llm_kv_cache_usage_ratio{_lbl({**eng, 'dp_rank': rank})}", rng.uniform(0.3, 0.99), 0))
    out += [
        (f"llm_requests_waiting{_lbl(eng)}", rng.choice((0, 0, 1, 4)), 0),
        (f"llm_requests_running{_lbl(eng)}", rng.randint(1, 64), 0),
        (f"llm_prompt_tokens_total{_lbl(eng)}", 0, rps * 900),
        (f"llm_generation_tokens_total{_lbl(eng)}", 0, rps * 250),
        (f"llm_prefix_cache_queried_tokens_total{_lbl(eng)}", 0, rps * 900),
        (f"llm_prefix_cache_hit_tokens_total{_lbl(eng)}", 0, rps * 900 * rng.uniform(0.05, 0.6)),
        (f"llm_preemptions_total{_lbl(eng)}", 0, rng.choice((0.0, 0.0, 0.2))),
        (f"llm_requests_finished_total{_lbl({**eng, 'outcome': 'stop'})}", 0, rps * 0.98),
        (f"llm_requests_finished_total{_lbl({**eng, 'outcome': 'error'})}", 0, rps * 0.02),
        (f"llm_host_cpu_utilization_ratio{_lbl(pod)}", rng.uniform(0.1, 0.95), 0),
        (f"llm_host_memory_total_bytes{_lbl(pod)}", 2**40, 0),
        (f"llm_host_memory_available_bytes{_lbl(pod)}", 2**40 * rng.uniform(0.05, 0.5), 0),
    ]
    for g in range(8):
        gpu = {**pod, "gpu": str(g), "UUID": f"GPU-{i:05d}-{g}", "device": f"nvidia{g}",
               "modelName": "NVIDIA H100 80GB HBM3", "Hostname": f"node-{i // 1}", "pci_bus_id": f"0000:{g:02x}:00.0"}
        out += [
            (f"DCGM_FI_DEV_GPU_UTIL{_lbl(gpu)}", rng.randint(5, 100), 0),
            (f"DCGM_FI_DEV_FB_USED{_lbl(gpu)}", 70000, 0),
            (f"DCGM_FI_DEV_FB_FREE{_lbl(gpu)}", 11000, 0),
            (f"DCGM_FI_DEV_CLOCKS_EVENT_REASONS{_lbl(gpu)}", rng.choice((0, 0, 1, 64)), 0),
            (f"DCGM_FI_DEV_ECC_DBE_VOL_TOTAL{_lbl(gpu)}", 0, 0),
            (f"DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS{_lbl(gpu)}", 0, 0),
        ]
    return out


def write_openmetrics(path: Path, pods: int, models: int, start: int, end: int, step: int) -> int:
    rng = random.Random(7)
    times = list(range(start, end + 1, step))
    count = 0
    with path.open("w", encoding="utf-8") as out:
        for i in range(pods):
            for series, value, per_s in pod_series(i, models, rng):
                count += 1
                out.write("".join(f"{series} {value + per_s * (t - start):.6g} {t}\n" for t in times))
        out.write("# EOF\n")
    return count


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=60) as resp:
        return str(resp.read().decode())


def _metric(text: str, name: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line.startswith(name + "{"):
            group = re.search(r'rule_group="[^"]*;([^"]+)"', line)
            if group:
                out[group.group(1)] = float(line.rsplit(" ", 1)[1])
    return out


def _cpu(text: str) -> float:
    line = next(x for x in text.splitlines() if x.startswith("process_cpu_seconds_total "))
    return float(line.split()[1])


def short_window_rules(rules_text: str) -> str:
    """Only the rules that record the short-window counts (they read raw series only): what the backfill needs."""
    doc = yaml.safe_load(rules_text)
    groups = []
    for group in doc["groups"]:
        rules = [r for r in group["rules"] if r.get("record") in (REQUESTS, ERRORS)]
        for rule in rules:  # the `or 0 * requests` fallback reads a recorded series; every bench pod has errors
            rule["expr"] = rule["expr"].split("\nor on (")[0]
        if rules:
            groups.append({"name": group["name"], "interval": group.get("interval", "1m"), "rules": rules})
    return dump_yaml({"groups": groups})


def baseline_rules(rules_text: str, ctx: Ctx) -> str:
    """The generated rules with the SLO groups replaced by the raw-window baseline."""
    doc = yaml.safe_load(rules_text)
    doc["groups"] = [g for g in doc["groups"] if not g["name"].startswith("optiinfra.slo.")]
    doc["groups"] += [g.to_dict() for g in raw_window_groups(ctx)]
    return dump_yaml(doc)


def same_interval(rules_text: str) -> str:
    """Every group at the global interval, so A and B evaluate equally often (the bench measures a round)."""
    doc = yaml.safe_load(rules_text)
    for group in doc["groups"]:
        group.pop("interval", None)
    return dump_yaml(doc)


def run_prometheus(prometheus: str, root: Path, label: str, rules: Path, data: Path, eval_interval: str,
                   evaluations: int) -> dict[str, object] | None:
    port = free_port()
    config, log = root / f"prometheus-{label}.yml", root / f"prometheus-{label}.log"
    config.write_text(f"global:\n  evaluation_interval: {eval_interval}\nrule_files:\n  - {rules}\n"
                      "scrape_configs: []\n")
    # min = max block duration: no compaction of the backfilled blocks competes with the rules while measuring
    proc = subprocess.Popen([prometheus, f"--config.file={config}", f"--storage.tsdb.path={data}",
                             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn",
                             "--storage.tsdb.min-block-duration=2h", "--storage.tsdb.max-block-duration=2h"],
                            stdout=subprocess.DEVNULL, stderr=log.open("wb"))  # a file: a full pipe blocks it
    base = f"http://127.0.0.1:{port}"
    durations: dict[str, list[float]] = {}
    try:
        deadline = time.monotonic() + 1200
        seen, cpu0, it0, text = -1.0, None, 0.0, ""
        while True:
            if proc.poll() is not None:
                print("prometheus exited:", log.read_text(errors="replace")[-2000:])
                return None
            if time.monotonic() > deadline:
                print(f"{label}: rule groups did not evaluate {evaluations} times within 1200s")
                return None
            try:
                text = _get(base + "/metrics")
            except OSError:
                time.sleep(1)
                continue
            iterations = _metric(text, "prometheus_rule_group_iterations_total")
            done = min(iterations.values()) if iterations else 0
            if done >= 2 and cpu0 is None:  # the first rounds load the blocks: measure from the second on
                cpu0, it0 = _cpu(text), done
            if cpu0 is not None and done > seen:
                seen = done
                for group, value in _metric(text, "prometheus_rule_group_last_duration_seconds").items():
                    durations.setdefault(group, []).append(value)
            if cpu0 is not None and done >= it0 + evaluations:
                break
            time.sleep(0.5)
        history = json.loads(_get(f"{base}/api/v1/query?" + urllib.parse.urlencode(
            {"query": f"max(count_over_time({REQUESTS}[3d]))"})))["data"]["result"]
        return {
            "history": float(history[0]["value"][1]) if history else 0.0,
            "durations": {g: statistics.mean(v) for g, v in durations.items()},
            "samples": _metric(text, "prometheus_rule_group_last_evaluation_samples"),
            "cpu_per_round": (_cpu(text) - (cpu0 or 0)) / (done - it0),
            "missed": sum(_metric(text, "prometheus_rule_group_iterations_missed_total").values()),
        }
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pods", type=int, default=10)
    parser.add_argument("--models", type=int, default=2, help="services: pods are spread over this many models")
    parser.add_argument("--minutes", type=int, default=4320, help="history backfilled (default 4320 = 3 days)")
    parser.add_argument("--step", type=int, default=60, help="scrape interval of the history in seconds (default 60)")
    parser.add_argument("--eval-interval", default="20s")
    parser.add_argument("--evaluations", type=int, default=6, help="evaluation rounds measured (default 6)")
    args = parser.parse_args()
    prometheus, promtool = shutil.which("prometheus"), shutil.which("promtool")
    if not prometheus or not promtool:
        print("prometheus and promtool are needed: apt-get install prometheus")
        return 1
    config = load_config(None)
    with tempfile.TemporaryDirectory(prefix="bench-rules-") as tmp:
        root = Path(tmp)
        write(root / "rules", generate(config))
        generated = (root / "rules" / RULES_FILE).read_text(encoding="utf-8")
        now = int(time.time())
        start = now - args.minutes * 60
        t0 = time.perf_counter()
        om = root / "fleet.om"
        raw_series = write_openmetrics(om, args.pods, args.models, start, now - 5, args.step)
        gen_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", str(om), str(root / "data")],
                       check=True, capture_output=True)
        om.unlink()
        backfill_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        short = root / "short-window.yml"
        short.write_text(short_window_rules(generated))
        port = free_port()
        (root / "backfill.yml").write_text("global: {}\nscrape_configs: []\n")
        server = subprocess.Popen([prometheus, f"--config.file={root / 'backfill.yml'}",
                                   f"--storage.tsdb.path={root / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
                                   "--log.level=warn"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(120):
                try:
                    _get(f"http://127.0.0.1:{port}/-/ready")
                    break
                except OSError:
                    time.sleep(1)
            subprocess.run([promtool, "tsdb", "create-blocks-from", "rules", f"--url=http://127.0.0.1:{port}",
                            f"--start={start}", f"--end={now - 60}", f"--output-dir={root / 'recorded'}",
                            str(short)], check=True, capture_output=True)
        finally:
            server.terminate()
            server.wait(timeout=30)
        for block in (root / "recorded").iterdir():
            shutil.move(str(block), root / "data" / block.name)
        recorded_s = time.perf_counter() - t0
        print(f"fleet: {args.pods} pods over {args.models} models ({args.pods / args.models:g} pods per service) x 8 "
              f"GPUs, {raw_series} raw series ({raw_series / args.pods:.0f}/pod), {args.minutes} min "
              f"({args.minutes / 1440:g} days) at {args.step}s; written in {gen_s:.0f}s, backfilled in "
              f"{backfill_s:.0f}s, recorded short-window counts backfilled in {recorded_s:.0f}s")
        shutil.copytree(root / "data", root / "data-b")
        a_rules, b_rules = root / "rules-a.yml", root / "rules-b.yml"
        a_rules.write_text(same_interval(generated))
        b_rules.write_text(same_interval(baseline_rules(generated, Ctx(config))))
        results = []
        for label, rules, data in (("A recorded windows", a_rules, root / "data"),
                                   ("B raw-window baseline", b_rules, root / "data-b")):
            result = run_prometheus(prometheus, root, label[0], rules, data, args.eval_interval, args.evaluations)
            if result is None:
                return 1
            results.append((label, result))
        print_report(args, results)
    print()
    from static_cost import main as static_main

    sys.argv = sys.argv[:1]
    return static_main()


def print_report(args: argparse.Namespace, results: list[tuple[str, dict]]) -> None:
    (_, a), (_, b) = results

    def slo(r: dict, key: str) -> float:
        return sum(v for g, v in r[key].items() if g.startswith("optiinfra.slo"))

    print(f"\n1. SLO rule groups, mean evaluation duration over {args.evaluations} rounds "
          f"(A = recorded windows, B = raw-window baseline):")
    for label, r in results:
        for group, value in sorted(r["durations"].items()):
            if group.startswith("optiinfra.slo"):
                print(f"   {label[0]} {group:40s} {value * 1000:9.1f} ms  {r['samples'].get(group, 0):6.0f} samples")
    sa, sb = slo(a, "durations"), slo(b, "durations")
    print(f"   SLO groups per evaluation: A {sa * 1000:.1f} ms, B {sb * 1000:.1f} ms ({sb / sa:.1f}x); per pod: "
          f"A {sa * 1000 / args.pods:.2f} ms, B {sb * 1000 / args.pods:.2f} ms")
    oa = sum(a["durations"].values()) - sa
    ob = sum(b["durations"].values()) - sb
    print(f"   all other groups (identical in A and B): A {oa * 1000:.1f} ms, B {ob * 1000:.1f} ms")
    print(f"   history the long windows read: {a['history']:.0f} recorded {REQUESTS} samples per service "
          f"over 3d in A (B reads raw series only)")
    print("\n2. ruler process CPU per evaluation round (every group once), process_cpu_seconds_total:")
    ca, cb = a["cpu_per_round"], b["cpu_per_round"]
    print(f"   A {ca * 1000:.0f} ms ({ca * 1000 / args.pods:.1f} ms/pod), B {cb * 1000:.0f} ms "
          f"({cb * 1000 / args.pods:.1f} ms/pod): {cb / ca:.1f}x; missed iterations A {a['missed']:.0f}, "
          f"B {b['missed']:.0f}")


if __name__ == "__main__":
    sys.exit(main())
