"""Rules bench: the generated rules evaluated by a real Prometheus over a synthesized fleet.

A fleet of ``--pods`` vLLM pods (1 model each, 8 GPUs each, every series the rules read, native vLLM buckets)
is written as OpenMetrics for the last ``--minutes`` at ``--step`` seconds, backfilled with
``promtool tsdb create-blocks-from openmetrics``, and a real Prometheus (temp dir, free port) loads it with
the generated production rules and ``evaluation_interval`` = ``--eval-interval``. After a few evaluations of
every group the bench prints:

1. each rule group's last evaluation duration (``prometheus_rule_group_last_duration_seconds``) and the
   samples it produced (``prometheus_rule_group_last_evaluation_samples``), for the generated rules (A) and,
   in a second Prometheus over the same blocks, a variant (B) that records each histogram's bucket rates once
   and computes the quantiles from them (fewer rate passes, more series);
2. series the recording rules add per pod, against the raw series per pod (baseline);
3. query latency of what alerts and dashboards read, recorded series vs the same PromQL over raw series
   (baseline: the rules without recording rules), median of 7 runs.
Groups run concurrently in Prometheus, so on a small or busy machine their durations include contention.
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
from optiinfra.rules.recording import HISTOGRAMS as RECORDED_HISTOGRAMS

MODEL = "llama-3-8b"
HISTOGRAMS = ("llm_time_to_first_token_seconds", "llm_inter_token_latency_seconds",
              "llm_time_per_output_token_seconds", "llm_request_duration_seconds", "llm_request_queue_time_seconds")


def _lbl(labels: dict[str, str]) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


def pod_series(i: int, rng: random.Random) -> list[tuple[str, float, float]]:
    """(series, value at t=0, increase per second) of one pod."""
    pod = {"namespace": "bench", "pod": f"pod-{i:05d}", "instance": f"10.{i // 250}.{i % 250}.1:9400",
           "job": "optiinfra"}
    eng = {**pod, "engine": "vllm", "model": MODEL}
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


def write_openmetrics(path: Path, pods: int, start: int, end: int, step: int) -> int:
    rng = random.Random(7)
    times = list(range(start, end + 1, step))
    count = 0
    with path.open("w", encoding="utf-8") as out:
        for i in range(pods):
            for series, value, per_s in pod_series(i, rng):
                count += 1
                out.write("".join(f"{series} {value + per_s * (t - start):.6g} {t}\n" for t in times))
        out.write("# EOF\n")
    return count


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=60) as resp:
        return str(resp.read().decode())


def query_seconds(base: str, expr: str, at: float) -> tuple[float, int]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr, "time": f"{at:.3f}"})
    times, n = [], 0
    for _ in range(7):
        t0 = time.perf_counter()
        body = json.loads(_get(url))
        times.append(time.perf_counter() - t0)
        n = len(body["data"]["result"])
    return statistics.median(times), n


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pods", type=int, default=200)
    parser.add_argument("--minutes", type=int, default=20, help="history backfilled (default 20)")
    parser.add_argument("--step", type=int, default=30, help="sample step in seconds (default 30)")
    parser.add_argument("--eval-interval", default="10s")
    args = parser.parse_args()
    prometheus, promtool = shutil.which("prometheus"), shutil.which("promtool")
    if not prometheus or not promtool:
        print("prometheus and promtool are needed: apt-get install prometheus")
        return 1
    with tempfile.TemporaryDirectory(prefix="bench-rules-") as tmp:
        root = Path(tmp)
        write(root / "rules", generate(load_config(None)))
        now = int(time.time())
        start = now - args.minutes * 60
        t0 = time.perf_counter()
        om = root / "fleet.om"
        raw_series = write_openmetrics(om, args.pods, start, now - 5, args.step)
        gen_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", str(om), str(root / "data")],
                       check=True, capture_output=True)
        backfill_s = time.perf_counter() - t0
        om.unlink()
        print(f"fleet: {args.pods} pods x 1 model x 8 GPUs, {raw_series} raw series "
              f"({raw_series / args.pods:.0f}/pod), {args.minutes} min at {args.step}s "
              f"(written in {gen_s:.1f}s, backfilled in {backfill_s:.1f}s)")
        variant = root / "rules-bucket-rates.yml"
        variant.write_text(bucket_rate_variant((root / "rules" / RULES_FILE).read_text()))
        shutil.copytree(root / "data", root / "data-b")
        results = []
        for label, rules, data in (("A generated", root / "rules" / RULES_FILE, root / "data"),
                                   ("B bucket-rate variant", variant, root / "data-b")):
            port = free_port()
            config = root / f"prometheus-{port}.yml"
            config.write_text(f"global:\n  evaluation_interval: {args.eval_interval}\n"
                              f"rule_files:\n  - {rules}\nscrape_configs: []\n")
            proc = subprocess.Popen([prometheus, f"--config.file={config}", f"--storage.tsdb.path={data}",
                                     f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            try:
                result = evaluate(f"http://127.0.0.1:{port}", proc, queries=label.startswith("A"))
            finally:
                proc.terminate()
                proc.wait(timeout=30)
            if result is None:
                return 1
            results.append((label, result))
        print_report(args, raw_series, results)
    return 0


def bucket_rate_variant(rules_text: str) -> str:
    """The generated rules with each histogram's bucket rates recorded once and the quantiles read from them."""
    doc = yaml.safe_load(rules_text)
    group = next(g for g in doc["groups"] if g["name"] == "optiinfra.recording.engine")
    by = "namespace, pod, instance, engine, model"
    added = []
    for histogram in RECORDED_HISTOGRAMS.values():
        name = f"pod_model_le:{histogram}_bucket:rate5m"
        raw_pod = f"sum by (le, {by}) (rate({histogram}_bucket[5m]))"
        raw_fleet = f"sum by (le, engine, model) (rate({histogram}_bucket[5m]))"
        added.append({"record": name, "expr": raw_pod})
        for rule in group["rules"]:
            rule["expr"] = rule["expr"].replace(raw_pod, name).replace(
                raw_fleet, f"sum by (le, engine, model) ({name})")
    group["rules"] = added + group["rules"]
    return dump_yaml(doc)


def _metric(text: str, name: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line.startswith(name + "{"):
            group = re.search(r'rule_group="[^"]*;([^"]+)"', line)
            if group:
                out[group.group(1)] = float(line.rsplit(" ", 1)[1])
    return out


def evaluate(base: str, proc: subprocess.Popen[bytes], queries: bool) -> dict[str, object] | None:
    deadline = time.monotonic() + 300
    while True:
        if proc.poll() is not None:
            print("prometheus exited:", proc.stderr.read().decode()[-2000:] if proc.stderr else "")
            return None
        try:
            text = _get(base + "/metrics")
            iterations = _metric(text, "prometheus_rule_group_iterations_total")
            if iterations and min(iterations.values()) >= 4:
                break
        except OSError:
            pass
        if time.monotonic() > deadline:
            print("rule groups did not evaluate 4 times within 300s")
            return None
        time.sleep(1)
    result: dict[str, object] = {
        "durations": _metric(text, "prometheus_rule_group_last_duration_seconds"),
        "samples": _metric(text, "prometheus_rule_group_last_evaluation_samples"),
        "missed": sum(_metric(text, "prometheus_rule_group_iterations_missed_total").values()),
    }
    if queries:
        at = time.time()
        result["queries"] = [(what, query_seconds(base, rec, at), query_seconds(base, raw, at))
                             for what, rec, raw in QUERY_PAIRS]
    return result


_BY = "namespace, pod, instance, engine, model"
QUERY_PAIRS = [
    ("p95 TTFT per pod (alert LLMHighTimeToFirstToken)",
     "pod_model:llm_time_to_first_token_seconds:p95_rate5m",
     f"histogram_quantile(0.95, sum by (le, {_BY}) (rate(llm_time_to_first_token_seconds_bucket[5m])))"),
    ("p99 TTFT per model (fleet dashboard)",
     "model:llm_time_to_first_token_seconds:p99_rate5m",
     "histogram_quantile(0.99, sum by (le, engine, model) (rate(llm_time_to_first_token_seconds_bucket[5m])))"),
    ("prefix-cache hit ratio per pod",
     "pod_model:llm_prefix_cache_hit_tokens_per_queried_tokens:ratio_rate5m",
     f"sum by ({_BY}) (rate(llm_prefix_cache_hit_tokens_total[5m])) / "
     f"sum by ({_BY}) (rate(llm_prefix_cache_queried_tokens_total[5m]))"),
    ("TTFT SLO error ratio over 1h",
     'slo:sli_error:ratio_rate1h{slo="ttft-vllm"}',
     f'(sum by ({_BY}) (rate(llm_time_to_first_token_seconds_count[1h])) - sum by ({_BY}) '
     f'(rate(llm_time_to_first_token_seconds_bucket{{le="2.5"}}[1h]))) / '
     f'sum by ({_BY}) (rate(llm_time_to_first_token_seconds_count[1h]))'),
]


def print_report(args: argparse.Namespace, raw_series: int, results: list[tuple[str, dict]]) -> None:
    (_, a), (_, b) = results
    print(f"\n1. rule group evaluation, last duration (evaluation_interval {args.eval_interval}); "
          f"A = generated rules, B = bucket-rate variant:")
    print(f"   {'group':34s} {'A ms':>9s} {'A samples':>10s} {'B ms':>9s} {'B samples':>10s}")
    groups = sorted(set(a["durations"]) | set(b["durations"]), key=lambda g: -a["durations"].get(g, 0))
    for group in groups:
        print(f"   {group:34s} {a['durations'].get(group, 0) * 1000:9.1f} {a['samples'].get(group, 0):10.0f} "
              f"{b['durations'].get(group, 0) * 1000:9.1f} {b['samples'].get(group, 0):10.0f}")
    interval = float(args.eval_interval.rstrip("s"))
    for label, r in results:
        total = sum(r["durations"].values())
        print(f"   {label:34s} all groups {total * 1000:9.1f} ms = {total / interval:.0%} of the interval "
              f"(one core), missed iterations {r['missed']:.0f}")
    print("\n2. series added by recording rules (baseline: raw series):")
    for label, r in results:
        recorded = sum(v for g, v in r["samples"].items() if g.startswith(("optiinfra.recording", "optiinfra.slo")))
        print(f"   {label:34s} {recorded:8.0f} = {recorded / args.pods:6.1f}/pod "
              f"vs raw {raw_series / args.pods:.0f}/pod (+{recorded / raw_series:.0%})")
    print("\n3. query latency, recorded series vs the same PromQL over raw series (baseline), median of 7 (A):")
    for what, (rec_s, rec_n), (raw_s, raw_n) in a["queries"]:
        print(f"   {what:48s} recorded {rec_s * 1000:7.1f} ms ({rec_n} series)   raw {raw_s * 1000:7.1f} ms "
              f"({raw_n} series)   {raw_s / rec_s:5.1f}x")


if __name__ == "__main__":
    sys.exit(main())
