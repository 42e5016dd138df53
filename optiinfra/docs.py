"""Reference docs generated from the catalogues (``optiinfra generate``); a test keeps them current."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
from collections.abc import Callable, Iterable
from typing import Any

import yaml

from optiinfra import metrics as m


def _flat(text: str | None) -> str:
    return " ".join((text or "").split())


def _cell(text: str | None) -> str:
    return _flat(text).replace("|", "\\|")


def _code(items: Iterable[object]) -> str:
    return ", ".join(f"`{item}`" for item in items)


def _source_cell(metric: m.Metric, engine: m.Engine) -> str:
    sources = metric.sources.get(engine, ())
    if not sources:
        return "absent"
    parts = []
    for src in sources:
        text = f"`{src.family}{src.sample}`"
        if src.aliases:
            text += " (alias " + _code(src.aliases) + ")"
        if src.keep:
            text += " where " + ", ".join(f"{k} in {{{', '.join(sorted(v))}}}" for k, v in src.keep.items())
        if src.set_labels:
            text += " as " + ", ".join(f'{k}="{v}"' for k, v in src.set_labels.items())
        if src.note:
            text += f" — {src.note}"
        parts.append(text)
    return "; ".join(parts)


def _table(metrics: tuple[m.Metric, ...], with_sources: bool) -> list[str]:
    head = "| name | type | unit | labels | help |"
    if with_sources:
        head = head[:-1] + " vLLM | SGLang | TGI |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for metric in metrics:
        labels = _code(metric.labels) or "—"
        row = f"| `{metric.name}` | {metric.type} | {metric.unit} | {labels} | {metric.help} |"
        if with_sources:
            row += " " + " | ".join(_source_cell(metric, e) for e in m.ENGINES) + " |"
        lines.append(row)
    return lines


def _section(title: str, metrics: tuple[m.Metric, ...], *intro: str) -> list[str]:
    return [f"## {title}", "", *intro, *_table(metrics, with_sources=False), ""]


def render_metrics_md() -> str:
    out = [
        "# Metrics reference",
        "",
        "<!-- generated from optiinfra/metrics.py by `optiinfra generate`; do not edit -->",
        "",
        "Every `llm_*` engine series carries `engine` (vllm, sglang, tgi) and `model`, plus "
        "`dp_rank`/`tp_rank`/`pp_rank` where the engine splits series by rank. Identity labels "
        "(`namespace`, `pod`, `instance`, `job`) come from Prometheus target labels. A concept an engine "
        "lacks is absent, never 0. Source labels that are not output labels are summed away "
        "(ratios: max).",
        "",
        "## Engine metrics",
        "",
        *_table(m.ENGINE_METRICS, with_sources=True),
        "",
        f"`llm_engine_info` (gauge, always 1) carries the current config plans need as labels: "
        f"{_code(m.ENGINE_INFO_LABELS)}. Sources: vLLM `vllm:cache_config_info`, SGLang `/get_server_info`, TGI "
        "`/info`, and `--engine-config k=v`.",
        "",
        "`llm_kv_cache_capacity_tokens` is the capacity the usage ratio divides by, so ratio x capacity is the "
        "tokens in use: for vLLM `(num_gpu_blocks - 1) x block_size` (vLLM keeps one null block back; "
        "`kv_cache_size_tokens` counts it too).",
        "",
        "`llm_requests_rejected_total` carries `dp_rank` and `reason`. vLLM refuses most requests in its API "
        "server before a rank is chosen, and counts those refusals only in the server's "
        "`http_requests_total{status=\"4xx\"}` (prompt longer than `--max-model-len`, bad parameters): the "
        "sidecar counts the 4xx answers of the inference endpoints ("
        + _code(sorted(m.VLLM_INFERENCE_HANDLERS)) + ") as `reason=\"http_4xx\"` and "
        "vLLM's `vllm:admission_rejections_total` by its own reason, both under `dp_rank=\"0\"` (neither "
        "family has a rank label: the API server is in front of every rank).",
        "",
        "### vLLM series deliberately not mapped",
        "",
        "| vLLM family | why it is dropped |",
        "|---|---|",
        *(f"| `{family}` | {why} |" for family, why in m.VLLM_DROPPED.items()),
        "",
        *_section("Sidecar health", m.SIDECAR_METRICS),
        *_section("GPU metrics (dcgm-exporter compatible)", m.GPU_METRICS,
                  f"Labels on every GPU series: {_code(m.GPU_LABELS)}.", ""),
        *_section("Host metrics", m.HOST_METRICS),
        *_section("Log signatures", m.LOG_METRICS),
    ]
    return "\n".join(out)

# ------------------------------------------------------------------------------------ configuration.md

def _help_text(action: argparse.Action, prog: str) -> str:
    text = action.help or ""
    if "%" in text:
        with contextlib.suppress(KeyError, TypeError, ValueError):
            text = text % {**vars(action), "prog": prog}
    return _cell(text)


def _default_text(action: argparse.Action) -> str:
    default = action.default
    if isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction):
        return "off" if default is False else "on"
    if default is None or default == [] or default is argparse.SUPPRESS:
        return "—"
    text = ", ".join(str(v) for v in default) if isinstance(default, list | tuple) else str(default)
    host = socket.gethostname()
    if host and host in text:
        text = text.replace(host, "<hostname>")
    return f"`{text}`"


def _flag_cell(action: argparse.Action) -> str:
    flags = _code(action.option_strings)
    if action.choices is not None:
        flags += " {" + ", ".join(str(c) for c in action.choices) + "}"
    elif action.metavar and action.nargs != 0:
        flags += f" {action.metavar}"
    if isinstance(action, argparse._AppendAction) or action.nargs in ("*", "+"):
        flags += " (repeatable)" if isinstance(action, argparse._AppendAction) else " (list)"
    return flags


def _options_table(parser: argparse.ArgumentParser, env_name: Callable[[str, str | None], str],
                   command: str | None = None) -> list[str]:
    lines = ["| flag | environment | default | what it does |", "|---|---|---|---|"]
    for action in parser._actions:
        if not action.option_strings or action.dest in ("help", "version") or action.help == argparse.SUPPRESS:
            continue
        lines.append(f"| {_flag_cell(action)} | `{env_name(action.dest, command)}` | {_default_text(action)} | "
                     f"{_help_text(action, parser.prog)} |")
    return lines


def _command_sections(parser: argparse.ArgumentParser, env_name: Callable[[str, str | None], str],
                      command: str | None = None) -> list[str]:
    out: list[str] = []
    for group in (a for a in parser._actions if isinstance(a, argparse._SubParsersAction)):
        helps = {choice.dest: choice.help for choice in group._choices_actions}
        for name, sub in group.choices.items():
            out += ["", f"## `{sub.prog}`", ""]
            summary = sub.description or helps.get(name) or ""
            if summary:
                out += [_flat(summary), ""]
            positionals = [a for a in sub._actions
                           if not a.option_strings and not isinstance(a, argparse._SubParsersAction)]
            for action in positionals:
                out.append(f"- argument `{action.metavar or action.dest}`: {_help_text(action, sub.prog)}")
            if positionals:
                out.append("")
            if any(a.option_strings and a.dest != "help" and a.help != argparse.SUPPRESS for a in sub._actions):
                out += _options_table(sub, env_name, command or name)
            out += _command_sections(sub, env_name, command or name)
    return out


def _schema_type(node: dict[str, Any]) -> str:
    if "enum" in node:
        return "one of " + _code(node["enum"])
    if "anyOf" in node:
        return " or ".join(_schema_type(n) for n in node["anyOf"])
    kind = node.get("type", "object" if "$ref" in node else "any")
    if isinstance(kind, list):
        return " or ".join(str(k) for k in kind)
    if kind == "array":
        return f"list of {_schema_type(node.get('items', {}))}"
    if kind == "object" and isinstance(node.get("additionalProperties"), dict):
        return f"map of {_schema_type(node['additionalProperties'])}"
    return str(kind)


def _config_rows(node: dict[str, Any], path: str, defaults: Any, defs: dict[str, Any]) -> list[str]:
    rows: list[str] = []
    for key, prop in node.get("properties", {}).items():
        target = defs[prop["$ref"].rsplit("/", 1)[1]] if "$ref" in prop else prop
        here = f"{path}{key}"
        default = defaults.get(key) if isinstance(defaults, dict) else None
        description = _cell(prop.get("description") or target.get("description"))
        if "properties" in target:
            rows += _config_rows(target, here + ".", default, defs)
            continue
        item = target.get("items") or target.get("additionalProperties")
        ref = item.get("$ref", "") if isinstance(item, dict) else ""
        rows.append(f"| `{here}` | {_schema_type(target).replace(ref, '')} | "
                    f"{_json_default(default)} | {description} |")
        if ref:
            suffix = "[]." if target.get("type") == "array" else ".<key>."
            rows += _config_rows(defs[ref.rsplit("/", 1)[1]], here + suffix, None, defs)
    return rows


def _json_default(value: Any) -> str:
    if value is None:
        return "—"
    text = json.dumps(value, sort_keys=True)
    if len(text) > 80:
        return "see below" if isinstance(value, list) else f"`{text[:77]}…`"
    return f"`{text}`"


def render_configuration_md() -> str:
    """Every sub-command, flag, environment twin and default of ``optiinfra``, and the config file's keys."""
    from optiinfra import config as cfg  # noqa: PLC0415
    from optiinfra.cli import ENV_PREFIX, ENV_TRUE, build_parser, env_name  # noqa: PLC0415

    # Without the OPTIINFRA_* variables, so that the documented defaults are the built-in ones.
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith(ENV_PREFIX)}
    try:
        parser = build_parser()
    finally:
        os.environ.update(saved)
    schema = cfg.json_schema()
    defaults = cfg.load_config(None).model_dump(mode="json", by_alias=True)
    out = [
        "# Configuration reference",
        "",
        "<!-- generated from optiinfra/cli.py and optiinfra/config.py by `optiinfra generate`; "
        "do not edit -->",
        "",
        "One entry point, `optiinfra`. Every flag has an environment-variable twin: `OPTIINFRA_` plus the "
        "flag's name in upper case with `-` as `_` (`--upstream` → `OPTIINFRA_UPSTREAM`); a flag that several "
        "commands have with different defaults names its command (`OPTIINFRA_RECEIVER_LISTEN`, "
        "`OPTIINFRA_EXPORTER_MAX_BODY_BYTES`), so one variable never sets two commands' flags. A flag on the command "
        "line wins over its variable. Switches (flags without a value) are on when the variable is one of "
        f"{', '.join(ENV_TRUE)}; repeatable flags take a comma-separated list. A bad value in a variable is reported "
        "with the variable's name. Logs are JSON on stderr unless `--log-format text`.",
        "",
        "## `optiinfra` (options of every command, given before or after it)",
        "",
        *_options_table(parser, env_name),
        *_command_sections(parser, env_name),
        "",
        "## The config file (`--slo-config FILE`)",
        "",
        "One YAML file (mixin style) drives every generated artifact (`optiinfra generate`): selectors, label "
        "names, per-bottleneck threshold and `for` overrides, SLOs, the runbook URL pattern and the Alertmanager "
        "routing and grouping. Every key is optional; an unknown key is an error that names "
        "it. Its JSON Schema is `optiinfra/config.schema.json`. `[]` marks a list item, `<key>` a map key "
        "(`bottlenecks.<key>` is a bottleneck id from docs/taxonomy.md; its thresholds are named there).",
        "",
        "| key | type | default | what it does |",
        "|---|---|---|---|",
        *_config_rows(schema, "", defaults, schema.get("$defs", {})),
        "",
        "Default SLOs (replaced, not merged, when the file sets `slos`):",
        "",
        "```yaml",
        yaml.safe_dump({"slos": defaults["slos"]}, sort_keys=False).rstrip(),
        "```",
        "",
    ]
    return "\n".join(out)


# ------------------------------------------------------------------------------------- receiver-api.md

def _ref_name(node: dict[str, Any]) -> str:
    if "$ref" in node:
        return f"`{node['$ref'].rsplit('/', 1)[1]}`"
    if node.get("type") == "array":
        return f"list of {_ref_name(node.get('items', {}))}"
    if node.get("type") == "object" and "properties" in node:
        fields = ", ".join(f"`{k}`: {_ref_name(v)}" for k, v in node["properties"].items())
        return "{" + fields + "}"
    return f"`{node.get('type', 'any')}`"


def _body(content: dict[str, Any] | None) -> str:
    if not content:
        return ""
    return "; ".join(f"{media} {_ref_name(spec.get('schema', {}))}" for media, spec in content.items())


def _operation(method: str, path: str, op: dict[str, Any]) -> list[str]:
    """One operation of an OpenAPI document: summary, description, parameters, body and answers."""
    details = ["", f"### `{method.upper()} {path}`", "", _flat(op.get("summary"))]
    if op.get("description"):
        details += ["", _flat(op["description"])]
    params = op.get("parameters", [])
    if params:
        details += ["", "| parameter | in | required | type | description |", "|---|---|---|---|---|"]
        for p in params:
            schema = p.get("schema", {})
            kind = schema.get("type", "any")
            if "enum" in schema:
                kind += " (" + ", ".join(map(str, schema["enum"])) + ")"
            if "maximum" in schema:
                kind += f" ≤ {schema['maximum']}"
            details.append(f"| `{p['name']}` | {p.get('in', '')} | {'yes' if p.get('required') else 'no'} "
                           f"| {kind} | {_flat(p.get('description'))} |")
    request = op.get("requestBody")
    if request:
        required = " (required)" if request.get("required") else ""
        details += ["", f"Request body{required}: {_body(request.get('content'))}"]
    responses = op.get("responses", {})
    if responses:
        details += ["", "| status | meaning | body |", "|---|---|---|"]
        for status, resp in responses.items():
            details.append(f"| {status} | {_flat(resp.get('description'))} | {_body(resp.get('content')) or '—'} |")
    return details


def _operations_of(paths: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, operation) of every operation of an OpenAPI ``paths`` (or ``webhooks``) object."""
    return [(method, path, op) for path, operations in paths.items() for method, op in operations.items()]


def _schema_sections(schemas: dict[str, Any], *, descriptions: bool = False) -> list[str]:
    """A section per component schema: its description and a table of its fields."""
    out: list[str] = []
    for name, schema in schemas.items():
        out += [f"### `{name}`", ""]
        if schema.get("description"):
            out += [_flat(schema["description"]), ""]
        required_fields = set(schema.get("required", []))
        props = schema.get("properties", {})
        if props:
            head = "| field | type | required |" + (" description |" if descriptions else "")
            out += [head, "|---|---|---|" + ("---|" if descriptions else "")]
            for field, node in props.items():
                row = (f"| `{field}` | {_schema_type(node) if '$ref' not in node else _ref_name(node)} | "
                       f"{'yes' if field in required_fields else 'no'} |")
                if descriptions:
                    row += f" {_cell(node.get('description'))} |"
                out.append(row)
            out.append("")
    return out


def render_receiver_api_md(openapi: dict[str, Any]) -> str:
    """The receiver's HTTP API from its OpenAPI document (``alertmanager/openapi.json``)."""
    info = openapi.get("info", {})
    out = [
        "# Receiver API",
        "",
        "<!-- generated from alertmanager/openapi.json by `optiinfra generate`; do not edit -->",
        "",
        f"{info.get('title', 'Receiver')} (OpenAPI {openapi.get('openapi', '?')}, API version "
        f"{info.get('version', '?')}). {info.get('description', '')}".rstrip(),
        "",
        "The running receiver serves this document at `GET /openapi.json`.",
        "",
        "| method | path | auth | summary |",
        "|---|---|---|---|",
    ]
    operations = _operations_of(openapi.get("paths", {}))
    out += [f"| {method.upper()} | `{path}` | {'bearer' if op.get('security') else '—'} | {_flat(op.get('summary'))} |"
            for method, path, op in operations]
    details = [line for operation in operations for line in _operation(*operation)]
    schemas = openapi.get("components", {}).get("schemas", {})
    out += ["", "## Endpoints", *details, "", "## Schemas", "", *_schema_sections(schemas)]
    return "\n".join(out)


# ------------------------------------------------------------------------------------- orchestrator-api.md

def _http_block(step: dict[str, Any]) -> list[str]:
    headers = {"Content-Type": "application/json", **step["headers"]}
    return ["```http", f"{step['method']} {step['path']}", *(f"{k}: {v}" for k, v in headers.items()), "",
            json.dumps(step["body"], indent=2), "```", "", f"Answer: {step['answer']}."]


def render_orchestrator_api_md(openapi: dict[str, Any], exchange: list[dict[str, Any]]) -> str:
    """The orchestrator's contract from its OpenAPI document and one worked exchange."""
    from optiinfra.alertmanager.contract import legal_reports  # noqa: PLC0415

    out = [
        "# Orchestrator API",
        "",
        "<!-- generated from alertmanager/contract.py (alertmanager/orchestrator.openapi.json) by "
        "`optiinfra generate`; do not edit -->",
        "",
        "The orchestrator is your deployment controller: the component that can change an inference "
        "deployment's launch flags, environment, replica count, or restart its pods. OptiInfra's receiver "
        "turns bottleneck alerts into plans and pushes them to it; the orchestrator applies them and reports "
        "back. This page is the whole contract; implement it in any language.",
        "",
        f"- OpenAPI {openapi['openapi']} document: "
        "[alertmanager/orchestrator.openapi.json](../alertmanager/orchestrator.openapi.json) (the `paths` are "
        "yours to serve, the `webhooks` entry is the receiver's endpoint you call).",
        "- The plan document's JSON Schema: [alertmanager/plan.schema.json](../alertmanager/plan.schema.json).",
        "- What each action means per engine: [plan-actions.md](plan-actions.md); the receiver's own API "
        "(approve, reject, inspect): [receiver-api.md](receiver-api.md).",
        "",
        f"{openapi['info']['description']}",
        "",
        "## What you serve",
        "",
        "| method | path | summary |",
        "|---|---|---|",
    ]
    operations = _operations_of(openapi["paths"])
    out += [f"| {method.upper()} | `{path}` | {_flat(op.get('summary'))} |" for method, path, op in operations]
    details = [line for operation in operations for line in _operation(*operation)]
    out += [
        "",
        "## The rules",
        "",
        "- **Answer fast, apply later.** Accept a plan (202) as soon as it is stored, then roll it out; the "
        "receiver waits at most 10 s for an answer.",
        "- **Apply each Idempotency-Key once.** The receiver delivers at least once: after a timeout, a crash "
        "or a 5xx it sends the same push again under the same key (a plan: the plan's `idempotency_key`; its "
        "rollback: that key plus `:rollback`). Remember the keys you applied and answer a repeat with 2xx or "
        "409 without acting again.",
        "- **One plan in flight per target.** The receiver never pushes a second plan for the same "
        "`namespace/deployment-or-pod-or-instance/model` while one is in flight, so plans for a target arrive "
        "in order.",
        "- **Apply the actions in order.** `engine_arg` is a launch flag (for a boolean flag `true` means pass "
        "it, `false` drop it), `engine_env` an environment variable, `scale` the replica count, `restart` the "
        "pod. With `relative: true`, `to` is a change to the running value (`+0.05`, `-1`, `x0.75`); clamp the "
        "result to `min_value`/`max_value`. `restart_required` says the engine must restart to take it.",
        "- **Roll out by `rollout.steps`** (percent of the target's replicas or traffic, ending at 100) and "
        "report each step, then `completed`; report `failed` with a `message` when you give up. Legal reports: "
        + legal_reports() + ". Send a report after you answered the push: one the receiver gets before it "
        "recorded the push is answered 409; send it again a moment later.",
        "- **A rollback restores the values before the plan** (the actions' `from`, or what you recorded "
        "before changing them). The receiver already counts the plan `rolled_back`: later reports for it are "
        "answered 409.",
        "- **Tokens.** The receiver sends `Authorization: Bearer <token>` when it runs with "
        "`--orchestrator-token-file`; your status reports need the receiver's own token when it runs with "
        "`--token-file`.",
        "",
        "## Endpoints",
        *details,
        "",
        "## Status reports (you call the receiver)",
    ]
    for method, name, op in _operations_of(openapi.get("webhooks", {})):
        out += _operation(method, op.get("x-url", name), op)
    out += ["", "## Schemas", "", *_schema_sections(openapi["components"]["schemas"], descriptions=True)]
    out += ["## A worked exchange", "",
            "One plan for a vLLM pod whose KV cache is full, from registration to completion, and the rollback "
            "that follows when an SLO burns within the plan's bake time.", ""]
    for number, step in enumerate(exchange, 1):
        who = "The receiver" if step["from"] == "receiver" else "You (the orchestrator)"
        out += [f"{number}. {who}:", "", *_http_block(step), ""]
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------- taxonomy.md

def render_taxonomy_md() -> str:
    """Every bottleneck: what fires it, what it means, what the planner does (from the catalogue and rules)."""
    from optiinfra import taxonomy as tx  # noqa: PLC0415
    from optiinfra.config import load_config  # noqa: PLC0415
    from optiinfra.rules.alerts import alert_rules  # noqa: PLC0415
    from optiinfra.rules.promql import Ctx  # noqa: PLC0415
    from optiinfra.rules.runbooks import action_text, prose  # noqa: PLC0415

    config = load_config(None)
    ctx = Ctx(config)
    out = [
        "# Bottleneck taxonomy",
        "",
        "<!-- generated from optiinfra/taxonomy.py, rules/alerts.py and rules/runbooks.py by "
        "`optiinfra generate`; do not edit -->",
        "",
        "Every alert OptiInfra generates names one bottleneck: its labels are `bottleneck` (the id below), "
        "`severity` and `component`. Alertmanager routes them to the receiver, which turns a plannable "
        "bottleneck into a plan for your orchestrator ([orchestrator-api.md](orchestrator-api.md)) and records "
        "a diagnosis for the others. Thresholds and `for` durations are the defaults; override them per "
        "bottleneck in the rules config ([configuration.md](configuration.md), `bottlenecks.<id>`). Each "
        "bottleneck has a runbook under [runbooks/](runbooks/); the engine flags behind each planner action are "
        "in [plan-actions.md](plan-actions.md), the series in [metrics.md](metrics.md), the log signatures in "
        "[log-signatures.md](log-signatures.md).",
        "",
        "| bottleneck | alert | severity | component | signal | for | the planner |",
        "|---|---|---|---|---|---|---|",
    ]
    for b in tx.BOTTLENECKS:
        planner = f"plan: {len(b.actions)} action(s)" if b.plannable else "diagnosis only"
        out.append(f"| [`{b.id}`](#{b.id}) | `{b.alert}` | {b.severity} | {b.component} | {b.signal} | "
                   f"{config.for_(b.id)} | {planner} |")
    out += ["", f"SLO burn-rate alerts ({_code(tx.SLO_ALERTS)}, bottleneck `{tx.SLO_BURN}`) are not "
            "bottlenecks: they roll back a plan in flight for the same scope ([runbook](runbooks/slo_burn.md)).",
            "", "Inhibitions (while the first fires on a pod, the others are silenced there):", ""]
    out += [f"- `{b.id}` silences " + _code(b.inhibits) for b in tx.BOTTLENECKS if b.inhibits]
    for b in tx.BOTTLENECKS:
        out += ["", f"## `{b.id}`", "", f"**{b.alert}** · {b.severity} · {b.component} · signal {b.signal}",
                "", f"What it means: {b.summary} {prose(b)[0]}", "",
                f"Fires when: {b.fires_when}, for {config.for_(b.id)}."]
        if b.thresholds:
            out += ["", "| threshold | default | unit | meaning |", "|---|---|---|---|"]
            out += [f"| `{name}` | {config.threshold(b.id, name):g} | {t.unit} | {t.description} |"
                    for name, t in b.thresholds.items()]
        if b.log_signatures:
            out += ["", "Log signatures that raise it: " + _code(b.log_signatures) + "."]
        for rule in alert_rules(ctx, b):
            out += ["", f"Rule (severity {rule.labels['severity']}):", "", "```promql", rule.expr, "```"]
        out += [""]
        if b.plannable:
            out += ["What the planner does: proposes the first of these that the engine has, that is not "
                    "cooling down or blocked after a rollback, and that is valid:", ""]
            out += [f"{i}. `{a}`: {action_text(a)}." for i, a in enumerate(b.actions, 1)]
        else:
            out += ["What the planner does: records a diagnosis, no plan."]
        if b.manual:
            out += ["", f"By hand: {b.manual}"]
        out += ["", f"Runbook: [runbooks/{b.id}.md](runbooks/{b.id}.md)."]
    out.append("")
    return "\n".join(out)


def render_all(openapi: dict[str, Any]) -> dict[str, str]:
    """The reference docs by file name (``optiinfra generate`` writes them under ``docs/``)."""
    from optiinfra.alertmanager import contract  # noqa: PLC0415

    return {"metrics.md": render_metrics_md(), "configuration.md": render_configuration_md(),
            "taxonomy.md": render_taxonomy_md(), "receiver-api.md": render_receiver_api_md(openapi),
            "orchestrator-api.md": render_orchestrator_api_md(contract.openapi(), contract.example_exchange())}
