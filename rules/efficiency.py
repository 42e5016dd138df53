"""Efficiency, cost and health recording rules: one group, ``optiinfra.recording.efficiency``, evaluated after the
engine and GPU recording groups whose series it reads (``EFFICIENCY_RULES``, name -> spec).

- GPUs of a pod are the GPU series the pod's own scrape carries (``pod:DCGM_FI_DEV_GPU_UTIL:count``): the sidecar
  exports only the GPUs attributed to its pod, so a pod on an 8-GPU node that holds 2 counts 2 (with
  ``gpu_source: dcgm-exporter``, the GPUs dcgm-exporter maps to the pod; GPU joins then omit ``instance``).
- Prices come from the config's ``cost`` section, per GPU model name (the ``modelName`` label) with a default;
  without any price the price rule records nothing and every cost rule is absent.
- Health: 100 minus the configured weight of each firing bottleneck (by severity, counted once per bottleneck
  whatever the number of its alerts) and of each SLO burning on the pod, floored at 0; read from ``ALERTS``.
- Efficiency: 50 points for mean GPU utilization and 50 for KV-cache usage, each in proportion to its configured
  target and capped there, so an idle or over-provisioned pod scores low.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from optiinfra import taxonomy as tx
from optiinfra.config import Config, promql_string
from optiinfra.rules.promql import Ctx, Group, Rule, num
from optiinfra.rules.recording import WINDOW, RecordingRule, _ratio, gpu_fold, pod_rate, reference_table

GROUP = "optiinfra.recording.efficiency"
COST_WINDOW = "1h"
#: Severities of the taxonomy, each with its health weight in the config (``health.<severity>``).
SEVERITIES: tuple[str, ...] = ("critical", "warning", "info")

GPUS = "pod:DCGM_FI_DEV_GPU_UTIL:count"
PRICE = "pod:llm_gpu_hour_price:sum"
GEN_PER_GPU = "pod_model:llm_generation_tokens_per_gpu_second:rate5m"
TOKENS_PER_JOULE = "pod:llm_tokens_per_joule:rate5m"
COST = "pod_model:llm_cost_per_million_tokens:rate1h"
MODEL_COST = "model:llm_cost_per_million_tokens:rate1h"
MODEL_GEN_PER_GPU = "model:llm_generation_tokens_per_gpu_second:rate5m"
EXTERNAL_HIT_RATIO = "pod_model:llm_external_kv_hit_ratio:rate5m"
PREFILL_SAVED = "pod_model:llm_prefill_tokens_saved:rate5m"
HEALTH = "pod:llm_health_score"
MODEL_HEALTH = "model:llm_health_score"
EFFICIENCY = "pod_model:llm_efficiency_score"


def price_terms(config: Config) -> list[str]:
    """One term per configured price: the price of every GPU of that model (the default for the rest)."""
    cost = config.cost
    terms = [f"{num(price)} + 0 * gpu:DCGM_FI_DEV_GPU_UTIL:ratio{{modelName={promql_string(name)}}}"
             for name, price in sorted(cost.gpu_hour_prices.items())]
    if cost.default_gpu_hour_price is not None:
        listed = "|".join(_regex_literal(name) for name in sorted(cost.gpu_hour_prices))
        rest = f"{{modelName!~{promql_string(listed)}}}" if listed else ""
        terms.append(f"{num(cost.default_gpu_hour_price)} + 0 * gpu:DCGM_FI_DEV_GPU_UTIL:ratio{rest}")
    return terms


def _regex_literal(text: str) -> str:
    return "".join("\\" + c if c in r".^$*+?()[]{}|\\" else c for c in text)


def _price(ctx: Ctx) -> str:
    terms = price_terms(ctx.config)
    if not terms:
        return "vector(0) < 0"  # no price configured: records nothing, so every cost rule is absent
    return f"sum by ({ctx.gpu_on}) (\n  " + "\n  or\n  ".join(f"({t})" for t in terms) + "\n)"


def _tokens_per_hour(ctx: Ctx) -> str:
    """Prompt + generated tokens per hour at the cost window's rate (the window is 1m under --profile demo)."""
    return (f"3600 * ({pod_rate(ctx, 'llm_prompt_tokens_total', window=COST_WINDOW)}\n"
            f"+ {pod_rate(ctx, 'llm_generation_tokens_total', window=COST_WINDOW)})")


def _cost(ctx: Ctx) -> str:
    return (f"1e6 * avg_over_time({PRICE}[{ctx.w(COST_WINDOW)}])\n"
            f"/ on ({ctx.gpu_on}) group_right()\n(({_tokens_per_hour(ctx)}) > 0)")


def _model_cost(ctx: Ctx) -> str:
    tokens = _tokens_per_hour(ctx)
    per_pod = (f"avg_over_time({PRICE}[{ctx.w(COST_WINDOW)}])\n"
               f"  * on ({ctx.gpu_on}) group_right()\n  (0 * ({tokens}) + 1)")
    return f"1e6 * sum by (engine, model) (\n  {per_pod}\n)\n/\n(sum by (engine, model) ({tokens}) > 0)"


def _model_gen_per_gpu(ctx: Ctx) -> str:
    return ("sum by (engine, model) (pod_model:llm_generation_tokens:rate5m)\n/\n"
            f"sum by (engine, model) (\n  {GPUS}\n  * on ({ctx.gpu_on}) group_right()\n"
            "  (0 * pod_model:llm_generation_tokens:rate5m + 1)\n)")


def _tokens_per_joule(ctx: Ctx) -> str:
    w = ctx.w(WINDOW)
    watts = gpu_fold(ctx, f"rate({ctx.sel('DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION')}[{w}]) / 1000")
    return (f"(\n  sum by ({ctx.gpu_on}) (pod_model:llm_prompt_tokens:rate5m)\n"
            f"  + sum by ({ctx.gpu_on}) (pod_model:llm_generation_tokens:rate5m)\n)\n"
            f"/\n(sum by ({ctx.gpu_on}) ({watts}) > 0)")


def _prefill_saved(ctx: Ctx) -> str:
    return (f"{pod_rate(ctx, 'llm_external_kv_hit_tokens_total')}\nand on ({ctx.by_pod})\n"
            f"({pod_rate(ctx, 'llm_external_kv_queried_tokens_total')} > 0)")


def _health(ctx: Ctx) -> str:
    weights = ctx.config.health
    firing = 'alertstate="firing"'
    by_severity = "\n    or\n    ".join(
        f'{num(getattr(weights, sev))} * ALERTS{{{firing}, bottleneck!~"|{tx.SLO_BURN}", severity="{sev}"}}'
        for sev in SEVERITIES)
    pods = f"group by ({ctx.on_pod}) ({ctx.sidecar_up()})"
    bottlenecks = f"sum by ({ctx.on_pod}) (max by ({ctx.on_pod}, bottleneck) (\n    {by_severity}\n  ))"
    slos = (f"{num(weights.slo_burn)} * count by ({ctx.on_pod}) "
            f'(max by ({ctx.on_pod}, slo) (ALERTS{{{firing}, bottleneck="{tx.SLO_BURN}"}}))')
    return (f"clamp_min(\n  100\n  - ({bottlenecks}\n  or on ({ctx.on_pod}) 0 * {pods})\n"
            f"  - on ({ctx.on_pod}) ({slos}\n  or on ({ctx.on_pod}) 0 * {pods}),\n  0\n)")


def _model_health(ctx: Ctx) -> str:
    return (f"min by (engine, model) (\n  {HEALTH}\n  * on ({ctx.on_pod}) group_right()\n"
            f"  group by ({ctx.by_pod}) (pod_model:llm_requests_running:sum)\n)")


def _efficiency(ctx: Ctx) -> str:
    targets = ctx.config.efficiency
    return (f"100 * (\n  0.5 * clamp_max(pod_model:llm_kv_cache_usage_ratio:max / {num(targets.kv_usage_target)}, 1)\n"
            f"  + on ({ctx.gpu_on}) group_left\n"
            f"  0.5 * clamp_max(pod:DCGM_FI_DEV_GPU_UTIL:avg_ratio / {num(targets.gpu_utilization_target)}, 1)\n)")


#: Every efficiency, cost and health rule, by name, in evaluation order.
EFFICIENCY_RULES: Mapping[str, RecordingRule] = MappingProxyType({r.name: r for r in (
    RecordingRule(GPUS, "GPUs attributed to the pod: its GPU series, counted once each.", "short", "pod",
                  lambda ctx: f"count by ({ctx.gpu_on}) (gpu:DCGM_FI_DEV_GPU_UTIL:ratio)"),
    RecordingRule(PRICE, "What the pod's GPUs cost per hour (sum of each GPU's `cost` price by its modelName), "
                  "label `currency`; absent without a price.", "currency/h", "pod", _price),
    RecordingRule(GEN_PER_GPU, "Generated tokens per second per GPU attributed to the pod.", "tokens/s", "pod_model",
                  lambda ctx: f"pod_model:llm_generation_tokens:rate5m\n/ on ({ctx.gpu_on}) group_left\n{GPUS}"),
    RecordingRule(MODEL_GEN_PER_GPU, "Generated tokens per second per GPU across the model's pods (fleet).",
                  "tokens/s", "model", _model_gen_per_gpu),
    RecordingRule(TOKENS_PER_JOULE, "Prompt + generated tokens per joule of the pod's GPU energy "
                  "(DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION).", "tokens/J", "pod", _tokens_per_joule),
    RecordingRule(COST, "GPU price per hour (mean over 1h) / (prompt + generated tokens per hour at the 1h rate) x "
                  "1e6; absent without a price or without tokens.", "currency", "pod_model", _cost),
    RecordingRule(MODEL_COST, "The model's GPU cost (every pod serving it, idle ones too) per million tokens over "
                  "1h; absent without a price.", "currency", "model", _model_cost),
    RecordingRule(EXTERNAL_HIT_RATIO, "Share of the tokens looked up in an external KV cache (LMCache, any KV "
                  "connector) that it held; absent without a connector.", "percentunit", "pod_model",
                  _ratio("llm_external_kv_hit_tokens_total", "llm_external_kv_queried_tokens_total")),
    RecordingRule(PREFILL_SAVED, "Prompt tokens per second served from an external KV cache instead of prefill; "
                  "absent without a connector.", "tokens/s", "pod_model", _prefill_saved),
    RecordingRule(HEALTH, "100 minus the `health` weights of the pod's firing bottlenecks (by severity) and "
                  "burning SLOs, at least 0.", "short", "pod", _health),
    RecordingRule(MODEL_HEALTH, "The lowest health score of the model's pods.", "short", "model", _model_health),
    RecordingRule(EFFICIENCY, "50 x min(GPU utilization / target, 1) + 50 x min(KV usage / target, 1).", "short",
                  "pod_model", _efficiency),
)})


def fleet_cost_per_million(ctx: Ctx, window: str | None, namespace: str = "") -> str:
    """Fleet cost per million tokens in PromQL: every priced pod's GPU cost / every token, x 1e6. Over
    ``window`` (raw counters: the report's period) or, with None, now (the recorded 5m token rates: dashboards).
    ``namespace`` is an optional matcher (``namespace=~"$namespace"``)."""
    sel = f"{{{namespace}}}" if namespace else ""
    if window is None:
        tokens = " + ".join(f"sum(pod_model:{m}:rate5m{sel})" for m in ("llm_prompt_tokens", "llm_generation_tokens"))
        return f"1e6 * sum({PRICE}{sel}) / (3600 * ({tokens}))"
    tokens = " + ".join(f"sum(rate({ctx.sel(m, namespace) if namespace else ctx.sel(m)}[{window}]))"
                        for m in ("llm_prompt_tokens_total", "llm_generation_tokens_total"))
    return f"1e6 * sum(avg_over_time({PRICE}{sel}[{window}])) / (3600 * ({tokens}))"


def efficiency_group(ctx: Ctx) -> Group:
    """The group; the price series carries the config's currency (``currency`` label) for the planner and report."""
    currency = {"currency": ctx.config.cost.currency}
    return Group(GROUP, tuple(Rule(record=r.name, expr=r.expr(ctx), labels=currency if r.name == PRICE else {})
                              for r in EFFICIENCY_RULES.values()))


def efficiency_reference(config: Config, level_labels: Mapping[str, str]) -> list[str]:
    """The docs/rules.md section of these rules (weights and targets from ``config``: the defaults there)."""
    h, e = config.health, config.efficiency
    return [
        "### Efficiency, cost and health", "",
        f"Group `{GROUP}`, evaluated after the others (the health score reads `ALERTS`). Promtool cases: "
        "`optiinfra-rules-efficiency.test.yml` (known inputs; values checked to 1/1024, absence without a KV "
        "connector and without a price).",
        "",
        *reference_table(EFFICIENCY_RULES.values(), level_labels),
        "",
        "- **GPUs of a pod** are the GPU series its own scrape carries: the sidecar exports only the GPUs "
        "attributed to its pod, so tokens per GPU, energy and cost count the pod's GPUs, not the node's.",
        "- **Cost** needs a price: `cost.gpu_hour_prices` (by the GPU's `modelName`) and/or "
        "`cost.default_gpu_hour_price` in the config; without one `" + PRICE + "` records nothing and every "
        "cost series is absent. Tokens are prompt + generated. A model's cost counts every pod serving it, idle "
        "ones too; a pod serving several models carries its whole GPU cost in each model's row.",
        "- **External KV cache** (LMCache or any vLLM KV connector, SGLang's host/storage tiers): "
        "`llm_external_kv_hit_tokens_total` / `llm_external_kv_queried_tokens_total`; absent while nothing is "
        "looked up, which is the case without a connector.",
        f"- **Health score**: 100 minus {h.critical:g} per firing critical bottleneck, {h.warning:g} per "
        f"warning, {h.info:g} per info (each bottleneck counted once however many of its alerts fire on the "
        f"pod), minus {h.slo_burn:g} per SLO whose `LLMSLOBurnRateFast` or `Slow` fires on the pod; at least 0. "
        "Pods are those whose sidecar target exists (`up`). The weights are the config's `health` section. "
        "Example: one warning bottleneck, one critical and one SLO burning: "
        f"100 - {h.warning:g} - {h.critical:g} - {h.slo_burn:g} = "
        f"{max(100 - h.warning - h.critical - h.slo_burn, 0):g}.",
        f"- **Efficiency score**: 50 x min(mean GPU utilization / {e.gpu_utilization_target:g}, 1) + 50 x "
        f"min(KV-cache usage / {e.kv_usage_target:g}, 1) (the config's `efficiency` targets): a pod using its "
        "GPUs and its KV cache at the targets scores 100; an idle or over-provisioned one scores near 0. Absent "
        "without GPU series.",
        "",
    ]
