"""The "Efficiency & cost" dashboard: pods and models ranked by cost per million tokens, tokens per GPU and per
joule, health and efficiency scores, and what an external KV cache (LMCache) saves. It reads only the
efficiency recording rules (``optiinfra.rules.efficiency``) and the engine rules they build on.
"""

from __future__ import annotations

from optiinfra.config import DASHBOARD_UIDS, Config
from optiinfra.grafana.dashboards import TOKENS_PER_S, Scope, _vars, scope
from optiinfra.grafana.model import Dashboard, Item, Panel, Row, Target, Threshold
from optiinfra.rules import efficiency as ef
from optiinfra.rules.promql import Ctx

POD_MODEL_LEGEND = "{{pod}} {{model}}"


def _per_pod_model(s: Scope, config: Config, pod_level: str) -> str:
    """A pod-level series with the pod's engine and model labels (one row per pod and model in a table)."""
    on = ", ".join(config.identity_labels)
    by = ", ".join((*config.identity_labels, "engine", "model"))
    return (f"{pod_level} * on ({on}) group_right() "
            f"group by ({by}) ({s.rec('pod_model:llm_requests_running:sum')})")


def efficiency(config: Config) -> Dashboard:
    s = scope(config, "namespace", "engine", "model")
    fleet_level, ns = ("engine", "model"), ("namespace",)
    currency = config.cost.currency
    money = f"suffix: {currency}"
    e = config.efficiency
    price_note = ("Needs a GPU-hour price in the config (`cost`)." if not config.cost.priced
                  else f"Prices: {currency} per GPU-hour from the config (`cost`).")
    cost, model_cost = s.rec(ef.COST), s.rec(ef.MODEL_COST, only=fleet_level)
    gen_gpu, model_gen_gpu = s.rec(ef.GEN_PER_GPU), s.rec(ef.MODEL_GEN_PER_GPU, only=fleet_level)
    joule = _per_pod_model(s, config, s.rec(ef.TOKENS_PER_JOULE, only=ns))
    health = _per_pod_model(s, config, s.rec(ef.HEALTH, only=ns))
    score = s.rec(ef.EFFICIENCY)
    saved, hit = s.rec(ef.PREFILL_SAVED), s.rec(ef.EXTERNAL_HIT_RATIO)
    prompt = s.rec("pod_model:llm_prompt_tokens:rate5m")
    by_pod = ", ".join((*config.identity_labels, "engine", "model"))
    fleet_cost = ef.fleet_cost_per_million(Ctx(config), None,
                                            f'{config.cluster_label}=~"$cluster", namespace=~"$namespace"')
    items: list[Item] = [
        Row("Fleet"),
        Panel("Cost per million tokens", "What the GPUs of the selected namespaces cost per hour / prompt + "
              f"generated tokens per hour (5m rate), x 1e6. {price_note}", (Target(fleet_cost),), money,
              type="stat", width=6, height=5, needs="price", decimals=3),
        Panel("Generated tokens per GPU-second", "Per selected model: generated tokens/s / GPUs of its pods "
              "(model:llm_generation_tokens_per_gpu_second:rate5m).", (Target(model_gen_gpu, "{{model}}"),),
              TOKENS_PER_S, type="stat", width=6, height=5, needs="gpu"),
        Panel("Lowest model health", "The lowest model:llm_health_score (100: nothing firing; see docs/rules.md "
              "for the weights).", (Target(f"min({s.rec(ef.MODEL_HEALTH, only=fleet_level)})"),), "short",
              type="stat", width=6, height=5, min=0, max=100,
              thresholds=(Threshold(0, "red"), Threshold(60, "orange"), Threshold(90, "green")), base_color="red"),
        Panel("Prefill tokens saved/s", "Prompt tokens per second an external KV cache (LMCache, a KV connector) "
              "served instead of prefill, across the selected pods.", (Target(f"sum({saved})"),), TOKENS_PER_S,
              type="stat", width=6, height=5),
        Row("Ranked"),
        Panel("Models by cost per million tokens", f"Most expensive first. {price_note}",
              (Target(model_cost, instant=True),
               Target(model_gen_gpu, instant=True),
               Target(s.rec(ef.MODEL_HEALTH, only=fleet_level), instant=True)),
              "short", type="table", width=24, height=6, needs="price",
              columns=(f"{currency} per 1M tokens", "generated tok/s per GPU", "health")),
        Panel("Pods by cost per million tokens", f"Most expensive first. {price_note}",
              (Target(cost, instant=True), Target(gen_gpu, instant=True), Target(joule, instant=True),
               Target(score, instant=True), Target(health, instant=True)),
              "short", type="table", width=24, height=8, needs="price",
              columns=(f"{currency} per 1M tokens", "generated tok/s per GPU", "tokens per joule", "efficiency",
                       "health")),
        Panel("Least efficient pods", f"Lowest efficiency score first: 50 x GPU utilization / "
              f"{e.gpu_utilization_target:g} + 50 x KV usage / {e.kv_usage_target:g}, each capped. An idle or "
              "over-provisioned pod ranks first.",
              (Target(score, instant=True),
               Target(_per_pod_model(s, config, s.rec("pod:DCGM_FI_DEV_GPU_UTIL:avg_ratio", only=ns)), instant=True),
               Target(s.rec("pod_model:llm_kv_cache_usage_ratio:max"), instant=True),
               Target(joule, instant=True)),
              "short", type="table", width=24, height=8, needs="gpu", sort_desc=False,
              columns=("efficiency", "GPU utilization", "KV usage", "tokens per joule")),
        Row("Over time"),
        Panel("Cost per million tokens by pod", f"pod_model:llm_cost_per_million_tokens:rate1h. {price_note}",
              (Target(cost, POD_MODEL_LEGEND),), money, width=12, needs="price"),
        Panel("Cost per million tokens by model", "model:llm_cost_per_million_tokens:rate1h: every pod of the "
              f"model, idle ones too. {price_note}", (Target(model_cost, "{{engine}} {{model}}"),), money,
              width=12, needs="price"),
        Panel("Generated tokens per GPU-second by pod", "Generated tokens/s / GPUs attributed to the pod.",
              (Target(gen_gpu, POD_MODEL_LEGEND),), TOKENS_PER_S, width=12, needs="gpu"),
        Panel("Tokens per joule by pod", "Prompt + generated tokens per joule of the pod's GPU energy.",
              (Target(s.rec(ef.TOKENS_PER_JOULE, only=ns), "{{pod}}"),), "short", width=12, needs="gpu"),
        Panel("Efficiency score by pod", "0-100 from GPU utilization and KV usage against their targets.",
              (Target(score, POD_MODEL_LEGEND),), "short", width=12, min=0, max=100, needs="gpu"),
        Panel("Health score by pod", "100 minus the weights of the pod's firing bottlenecks and burning SLOs.",
              (Target(s.rec(ef.HEALTH, only=ns), "{{pod}}"),), "short", width=12, min=0, max=100),
        Row("External KV cache (LMCache)"),
        Panel("External KV hit ratio", "Share of the tokens looked up in the external KV cache that it held; no "
              "data without a KV connector.", (Target(hit, POD_MODEL_LEGEND),), "percentunit", width=8, min=0, max=1),
        Panel("Prefill tokens saved/s", "Prompt tokens per second loaded from the external KV cache instead of "
              "computed.", (Target(saved, POD_MODEL_LEGEND),), TOKENS_PER_S, width=8),
        Panel("Share of prompt tokens saved", "Saved prompt tokens / all prompt tokens of the pods with a "
              "connector.", (Target(f"sum({saved}) / sum({prompt} and on ({by_pod}) {saved})"),), "percentunit",
              type="stat", width=8, min=0, max=1),
    ]
    return Dashboard(DASHBOARD_UIDS["efficiency"], "OptiInfra / Efficiency & cost",
                     "What a token costs and how well each pod and model uses its GPUs: cost per million tokens, "
                     "tokens per GPU-second and per joule, health and efficiency scores, external KV-cache "
                     "savings.", tuple(items), _vars(config, "namespace", "engine", "model"))
