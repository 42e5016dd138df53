"""promtool unit tests generated from the same catalogue as the rules.

Every alerting rule gets three test groups: ``fires`` (series synthesized from its thresholds: the alert
fires with the exact labels and rendered annotations), ``quiet`` (one signal short: no alert) and ``idle``
(the instance exists but serves no traffic: no alert). OptiInfraExporterDown also gets ``absent`` (another
target's ``up`` but no sidecar's: its ``absent()`` branch fires); rules with a log signature get ``fires on its log
signature``. Key recording rules get ``promql_expr_test`` cases with hand-checkable values. Timings go
through the profile, so the demo profile's tests are the production ones divided by 60. The tests are
split into three files (performance alerts, health alerts, SLOs) so promtool runs can go in parallel.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Mapping
from typing import Any

from optiinfra import metrics as m
from optiinfra import taxonomy as tx
from optiinfra.config import format_duration_ms, parse_duration_ms
from optiinfra.rules.alerts import alert_rules
from optiinfra.rules.check import selectors
from optiinfra.rules.promql import Ctx, Group, Rule
from optiinfra.signals import Cases, Fixture

STEP = "1m"
"""Input-series interval and evaluation interval (production); the profile scales it."""

Series = dict[str, str]


# ---- Go template helpers (exp_annotations must match the rendered text) ----------------------------------

def _g4(value: float) -> str:
    return "%.4g" % value  # noqa: UP031 (Go's %.4g)


def go_value(value: float) -> str:
    """``{{ $value }}``: Go prints a float64 with the shortest representation."""
    if value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return repr(value)


def humanize(value: float) -> str:
    prefix = ""
    if abs(value) >= 1:
        for p in ("k", "M", "G", "T", "P", "E", "Z", "Y"):
            if abs(value) < 1000:
                break
            prefix, value = p, value / 1000
    elif value:
        value, prefix = _small(value)
    return _g4(value) + prefix


def _small(value: float) -> tuple[float, str]:
    """A magnitude below 1 scaled up by thousands, and its SI prefix (Go's humanize)."""
    prefix = ""
    for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(value) >= 1:
            break
        prefix, value = p, value * 1000
    return value, prefix


def humanize_percentage(value: float) -> str:
    return _g4(value * 100) + "%"


def humanize_duration(value: float) -> str:
    if value == 0:
        return _g4(value) + "s"
    if abs(value) >= 1:
        sign = "-" if value < 0 else ""
        whole = int(abs(value))
        days, hours, minutes, seconds = whole // 86400, whole // 3600 % 24, whole // 60 % 60, whole % 60
        if days:
            return f"{sign}{days}d {hours}h {minutes}m {seconds}s"
        if hours:
            return f"{sign}{hours}h {minutes}m {seconds}s"
        if minutes:
            return f"{sign}{minutes}m {seconds}s"
        return f"{sign}{_g4(abs(value))}s"
    value, prefix = _small(value)
    return f"{_g4(value)}{prefix}s"


_FUNCS: Mapping[str, Callable[[float], str]] = {
    "": go_value, "humanize": humanize, "humanizePercentage": humanize_percentage,
    "humanizeDuration": humanize_duration,
}
_TEMPLATE = re.compile(r"\{\{\s*\$(labels\.(\w+)|value)\s*(?:\|\s*(\w+)\s*)?\}\}")


def render(template: str, labels: Mapping[str, str], value: float) -> str:
    def sub(match: re.Match[str]) -> str:
        if match.group(2):
            return labels.get(match.group(2), "")
        return _FUNCS[match.group(3) or ""](value)
    return _TEMPLATE.sub(sub, template)


# ---- fixtures -------------------------------------------------------------------------------------------

def _lbl(labels: Mapping[str, str]) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


class Synth:
    """Builds series for one test: sample count, identity labels, histograms from native buckets."""

    def __init__(self, ctx: Ctx, samples: int) -> None:
        self.ctx = ctx
        self.n = samples
        self.step_s = parse_duration_ms(ctx.w(STEP)) / 1000
        defaults = {"namespace": "llm", "pod": "pod-0", "instance": "10.0.0.1:9400", "job": "optiinfra"}
        chosen = {**satisfying(ctx.config.selectors.series, defaults),
                  **satisfying(ctx.config.selectors.sidecar_job, defaults)}
        self.pod = {label: chosen.get(label, defaults.get(label, "x")) for label in ctx.identity}
        self.raw = {**self.pod, "job": defaults["job"], **chosen}
        self.eng = {**self.raw, "engine": "vllm", "model": "m"}
        self.pod_model = {**self.pod, "engine": "vllm", "model": "m"}
        self.gpu_target = self.raw
        if ctx.dcgm:
            options = ctx.config.dcgm_exporter
            exporter = {"namespace": "gpu-operator", "pod": "nvidia-dcgm-exporter-x1", "instance": "10.0.9.1:9400",
                        "job": "nvidia-dcgm-exporter", "container": "nvidia-dcgm-exporter"}
            target = {**exporter, **satisfying(options.selector, exporter)}
            mapped = {options.namespace_label: self.pod.get("namespace", "llm"),
                      options.pod_label: self.pod["pod"], options.container_label: "engine"}
            # Identity labels besides namespace/pod/instance (a cluster label) are the same on both targets.
            shared = {k: v for k, v in self.pod.items() if k not in ("namespace", "pod", "instance")}
            self.gpu_target = {**target, **shared, **mapped}

    def gpu_labels(self, index: int, lower_case: bool) -> dict[str, str]:
        """One GPU of the pod as its exporter labels it: the sidecar on the pod's own target, or dcgm-exporter
        on its own target with the pod in its pod-mapping labels (``gpu_source``)."""
        host, uuid = ("hostname", "uuid") if lower_case else ("Hostname", "UUID")
        return {**self.gpu_target, "gpu": str(index), "device": f"nvidia{index}", "modelName": "NVIDIA H100 80GB HBM3",
                "pci_bus_id": f"00000000:0{index}:00.0", host: "node-1", uuid: f"GPU-000{index}"}

    def gpus(self, util_percent: float) -> Series:
        """Two GPUs of one pod, one with dcgm-exporter's Hostname/UUID spelling and one with hostname/uuid."""
        return {f"DCGM_FI_DEV_GPU_UTIL{_lbl(self.gpu_labels(i, i == 1))}": self.gauge(util_percent) for i in (0, 1)}

    def gauge(self, value: float) -> str:
        return f"{go_value(float(value))}+0x{self.n}"

    def alternating(self, high: float, low: float) -> str:
        """A gauge jumping between ``high`` and ``low`` every sample (real KV usage and queue length under
        pressure: vLLM 0.32 between 1 s scrapes), ending on ``low`` at the evaluation time."""
        values = [low if (self.n - i) % 2 == 0 else high for i in range(self.n + 1)]
        return " ".join(f"{v:g}" for v in values)

    def counter(self, per_second: float) -> str:
        return f"0+{go_value(float(per_second * self.step_s))}x{self.n}"

    def step_counter(self, amount: int) -> str:
        """A counter that rose by ``amount`` three samples before the evaluation time (inside every window)."""
        at = self.n - 8
        return f"0+0x{at} {amount}+0x{self.n - at - 1}"

    def born_counter(self, amount: int) -> str:
        """A series that first appears, already at ``amount``, three samples before the evaluation time."""
        at = self.n - 8
        return f"_x{at + 1} {amount}+0x{self.n - at - 1}"

    def hist(self, metric: str, engine: m.Engine, bucket: int, per_second: float,
             labels: Mapping[str, str] | None = None) -> Series:
        """A histogram whose observations all land in bucket index ``bucket`` of the engine's native bounds."""
        bounds = m.NATIVE_BUCKETS[engine][metric]
        base = {**(labels or self.eng), "engine": engine}
        out: Series = {}
        for i, bound in enumerate((*bounds, float("inf"))):
            le = "+Inf" if bound == float("inf") else repr(float(bound))
            out[f"{metric}_bucket{_lbl({**base, 'le': le})}"] = self.counter(per_second if i >= bucket else 0)
        out[f"{metric}_count{_lbl(base)}"] = self.counter(per_second)
        out[f"{metric}_sum{_lbl(base)}"] = self.counter(per_second * bounds[bucket])
        return out


def satisfying(matchers: str, defaults: Mapping[str, str]) -> dict[str, str]:
    """Label values that satisfy a config selector (``job="x"``, ``namespace=~"llm-.*"``), for test series."""
    if not matchers:
        return {}
    import promql_parser  # noqa: PLC0415

    selector = promql_parser.parse("up{" + matchers + "}")
    if not isinstance(selector, promql_parser.VectorSelector):
        raise ValueError(f"{matchers!r} is not a list of label matchers")
    out = {}
    for matcher in selector.matchers.matchers:
        op, value = str(matcher.op).rsplit(".", 1)[-1], matcher.value
        candidates = [defaults.get(matcher.name, "x"), value.replace(".*", "x").replace(".+", "x"), value, "x", "y"]
        if op == "Equal":
            out[matcher.name] = value
            continue
        if op == "NotEqual":
            found = next((c for c in candidates if c != value), None)
        else:  # Re: must match; NotRe: must not
            found = next((c for c in candidates if bool(re.fullmatch(value, c)) == (op == "Re")), None)
        if found is None:
            raise ValueError(f"cannot synthesize a value of {matcher.name} for the selector {matchers!r}")
        out[matcher.name] = found
    return out


def slow_bucket(bounds: tuple[float, ...], threshold: float) -> int:
    """Index of the first bucket lying wholly above ``threshold`` (its lower bound >= threshold)."""
    for i in range(1, len(bounds)):
        if bounds[i - 1] >= threshold:
            return i
    raise ValueError(f"no native bucket lies above {threshold}")


def fast_bucket(bounds: tuple[float, ...], threshold: float) -> int:
    """Index of the last bucket whose upper bound is <= ``threshold`` (all observations at or below it)."""
    for i in range(len(bounds) - 1, -1, -1):
        if bounds[i] <= threshold:
            return i
    raise ValueError(f"no native bucket lies below {threshold}")


def p_of(bounds: tuple[float, ...], bucket: int, q: float) -> float:
    lower = bounds[bucket - 1] if bucket > 0 else 0.0
    return lower + (bounds[bucket] - lower) * q


# ---- per-bottleneck cases (the fixtures live in each bottleneck's spec) ---------------------------------

class Kit(Synth):
    """What a spec's fixture builds its series from: the synthesizer plus the bottleneck's thresholds."""

    lbl = staticmethod(_lbl)
    slow_bucket = staticmethod(slow_bucket)
    fast_bucket = staticmethod(fast_bucket)
    p_of = staticmethod(p_of)

    def __init__(self, ctx: Ctx, samples: int, b: tx.Bottleneck, severity: str) -> None:
        super().__init__(ctx, samples)
        self.b, self.severity = b, severity
        finished = f"llm_requests_finished_total{_lbl({**self.eng, 'outcome': 'stop'})}"
        self.traffic, self.no_traffic = {finished: self.counter(1)}, {finished: self.counter(0)}

    def thr(self, name: str) -> float:
        return self.ctx.config.threshold(self.b, name)

    def rank(self, rank: str) -> dict[str, str]:
        return {**self.eng, "dp_rank": rank}

    def sidecar_job_labels(self) -> dict[str, str]:
        """The labels ``absent(up{sidecar_job})`` carries: the selector's equality matchers."""
        up = self.ctx.sidecar_up()
        return {k: v for k, v in selectors(up)[0][1].items() if f'{k}="{v}"' in up}


def _log_fixture(s: Synth, b: tx.Bottleneck) -> Fixture:
    source = "kernel" if b.component in ("host", "gpu") else "engine"
    labels = {**s.raw, "source": source, "signature": b.log_signatures[-1]}
    return Fixture({f"llm_log_events_total{_lbl(labels)}": s.step_counter(2)}, [(labels, 2)])


def cases_for(kit: Kit) -> Cases:
    """The spec's fixture; log-only bottlenecks: their last log signature, flat, and absent."""
    b = kit.b
    if b.fixture is None:
        fixture = _log_fixture(kit, b)
        flat = {k: kit.gauge(5) for k in fixture.series}
        return Cases(fires=fixture, quiet=Fixture(flat), idle=Fixture({k: kit.gauge(0) for k in fixture.series}))
    cases = b.fixture(kit)
    if b.log_signatures and cases.fires_log is None:
        cases.fires_log = _log_fixture(kit, b)
    return cases


# ---- assembling the test file ---------------------------------------------------------------------------

def _exp(ctx: Ctx, rule: Rule, fired: list[tuple[dict[str, str], float]]) -> list[dict[str, Any]]:
    out = []
    for labels, value in fired:
        all_labels = {**(ctx.gpu_labels(labels) if rule.labels["component"] == "gpu" else labels), **rule.labels}
        out.append({
            "exp_labels": dict(sorted(all_labels.items())),
            "exp_annotations": {k: render(v, all_labels, float(value)) for k, v in sorted(rule.annotations.items())},
        })
    return out


def promtool_test(ctx: Ctx, name: str, series: Mapping[str, str], **checks: list[dict[str, Any]]) -> dict[str, Any]:
    """One promtool test: ``series`` as input at the (profile's) step, then ``checks`` (``alert_rule_test`` or
    ``promql_expr_test``)."""
    return {"name": name, "interval": ctx.w(STEP),
            "input_series": [{"series": k, "values": v} for k, v in series.items()], **checks}


def _case(ctx: Ctx, name: str, rule: Rule, fixture: Fixture, *, eval_ms: int,
          exp: list[dict[str, Any]]) -> dict[str, Any]:
    return promtool_test(ctx, name, fixture.series, alert_rule_test=[
        {"eval_time": format_duration_ms(eval_ms), "alertname": rule.alert, "exp_alerts": exp}])


def alert_tests(ctx: Ctx, performance: bool, catalogue: tuple[tx.Bottleneck, ...] = tx.BOTTLENECKS,
                ) -> list[dict[str, Any]]:
    """Tests of the performance alerts (``performance``) or of all the others."""
    tests = []
    step_ms = parse_duration_ms(ctx.w(STEP))
    for b in catalogue:
        if (b.id in tx.PERFORMANCE_IDS) != performance:
            continue
        for rule in alert_rules(ctx, b):
            severity = rule.labels["severity"]
            probe = cases_for(Kit(ctx, 1, b, severity))
            eval_ms = parse_duration_ms(rule.for_) + parse_duration_ms(ctx.w(probe.hold))
            kit = Kit(ctx, eval_ms // step_ms + 5, b, severity)
            cases = cases_for(kit)
            tag = f"{rule.alert}[{rule.labels['severity']}]"
            runs = [("fires", cases.fires, _exp(ctx, rule, cases.fires.alerts))]
            if cases.fires_log is not None:
                runs.append(("fires on its log signature", cases.fires_log, _exp(ctx, rule, cases.fires_log.alerts)))
            runs += [("quiet", cases.quiet, []), ("idle", cases.idle, [])]
            if cases.absent_alerts:
                # another target's `up` exists (the ruler sees scraped data), the sidecar's does not
                other = {**satisfying(ctx.config.selectors.series, {}), "job": "other-exporter"}
                runs.append(("absent", Fixture({f"up{_lbl(other)}": kit.gauge(1)}),
                             _exp(ctx, rule, cases.absent_alerts)))
                runs.append(("cold start: no up at all", Fixture(), []))
            tests += [_case(ctx, f"{tag} {what}", rule, fixture, eval_ms=eval_ms, exp=exp)
                      for what, fixture, exp in runs]
    return tests


def _sample(name: str, labels: Mapping[str, str], value: float) -> dict[str, Any]:
    return {"labels": name + _lbl(labels), "value": value}


def recording_tests(ctx: Ctx) -> list[dict[str, Any]]:
    """Hand-checkable values for the key recording rules (exactly representable numbers)."""
    eval_ms = parse_duration_ms(ctx.w("10m"))
    s = Synth(ctx, eval_ms // parse_duration_ms(ctx.w(STEP)) + 5)
    pm = s.pod_model
    ttft = "llm_time_to_first_token_seconds"
    bounds = m.NATIVE_BUCKETS["vllm"][ttft]
    bucket = bounds.index(0.75)  # observations in (0.5, 0.75]: p50 = 0.5 + 0.25 * 0.5
    series: Series = {
        **s.hist(ttft, "vllm", bucket, 1),
        f"llm_kv_cache_usage_ratio{_lbl({**s.eng, 'dp_rank': '0'})}": s.gauge(0.5),
        f"llm_kv_cache_usage_ratio{_lbl({**s.eng, 'dp_rank': '1'})}": s.gauge(0.75),
        f"llm_prefix_cache_queried_tokens_total{_lbl(s.eng)}": s.counter(2),
        f"llm_prefix_cache_hit_tokens_total{_lbl(s.eng)}": s.counter(0.5),
        f"llm_requests_finished_total{_lbl({**s.eng, 'outcome': 'stop'})}": s.counter(0.75),
        f"llm_requests_finished_total{_lbl({**s.eng, 'outcome': 'error'})}": s.counter(0.25),
        **s.gpus(50),
    }
    # the second GPU (hostname/uuid spelling) at 25%
    series[f"DCGM_FI_DEV_GPU_UTIL{_lbl(s.gpu_labels(1, True))}"] = s.gauge(25)

    def folded(index: int) -> dict[str, str]:
        labels = {k: v for k, v in s.gpu_labels(index, index == 1).items() if k not in ("Hostname", "UUID")}
        return ctx.gpu_labels({**labels, "hostname": "node-1", "uuid": f"GPU-000{index}"})

    at = format_duration_ms(eval_ms)
    exprs: dict[str, list[dict[str, Any]]] = {}
    for name, labels, value in (
        ("pod_model:llm_time_to_first_token_seconds:p50_rate5m", pm, 0.625),
        ("model:llm_time_to_first_token_seconds:p50_rate5m", {"engine": "vllm", "model": "m"}, 0.625),
        ("pod_model:llm_kv_cache_usage_ratio:max", pm, 0.75),
        ("pod_model:llm_prefix_cache_hit_tokens_per_queried_tokens:ratio_rate5m", pm, 0.25),
        ("pod_model:llm_requests_errored_per_finished:ratio_rate5m", pm, 0.25),
        ("pod_model:llm_requests_finished:rate5m", pm, 1),
        ("gpu:DCGM_FI_DEV_GPU_UTIL:ratio", folded(0), 0.5),
        ("gpu:DCGM_FI_DEV_GPU_UTIL:ratio", folded(1), 0.25),
        ("pod:DCGM_FI_DEV_GPU_UTIL:avg_ratio", {k: s.pod[k] for k in ctx.gpu_on.split(", ")}, 0.375),
    ):
        exprs.setdefault(name, []).append(_sample(name, labels, value))
    return [promtool_test(ctx, "recording rules: quantile, KV max over ranks, hit ratio, error share, GPU ratio (both "
                           "spellings)", series,
                      promql_expr_test=[{"expr": e, "eval_time": at, "exp_samples": samples}
                                        for e, samples in exprs.items()])]


#: Test files (paths under the output directory; split so promtool runs can go in parallel). They live in
#: their own folder, apart from the rule file, so a ``*.yml`` glob in Prometheus' ``rule_files`` never loads
#: them.
TESTS_DIR = "tests"
TEST_FILES: tuple[str, ...] = (f"{TESTS_DIR}/optiinfra-rules.test.yml", f"{TESTS_DIR}/optiinfra-rules-health.test.yml",
                               f"{TESTS_DIR}/optiinfra-rules-slo.test.yml",
                               f"{TESTS_DIR}/optiinfra-rules-efficiency.test.yml")


def test_files(ctx: Ctx, groups: tuple[Group, ...], rules_file: str,
               catalogue: tuple[tx.Bottleneck, ...] = tx.BOTTLENECKS) -> dict[str, dict[str, Any]]:
    from optiinfra.rules.slo_tests import slo_tests  # noqa: PLC0415 (it builds on this module's helpers)

    def one(tests: list[dict[str, Any]]) -> dict[str, Any]:
        # promtool resolves rule files relative to the test file
        return {"rule_files": [posixpath.relpath(rules_file, TESTS_DIR)], "evaluation_interval": ctx.w(STEP),
                "group_eval_order": [g.name for g in groups], "tests": tests}
    from optiinfra.rules.efficiency_tests import efficiency_tests  # noqa: PLC0415 (it builds on this module)

    performance, health, slo, efficiency = TEST_FILES
    return {
        performance: one([*recording_tests(ctx), *alert_tests(ctx, True, catalogue)]),
        health: one(alert_tests(ctx, False, catalogue)),
        slo: one(slo_tests(ctx, groups)),
        efficiency: one(efficiency_tests(ctx)),
    }
