"""Reference docs generated from the catalogues (``python -m optiinfra.docs``); a test keeps them current."""

from __future__ import annotations

import argparse
from pathlib import Path

from optiinfra import metrics as m


def _source_cell(metric: m.Metric, engine: m.Engine) -> str:
    sources = metric.sources.get(engine, ())
    if not sources:
        return "absent"
    parts = []
    for src in sources:
        text = f"`{src.family}{src.sample}`"
        if src.aliases:
            text += " (alias " + ", ".join(f"`{a}`" for a in src.aliases) + ")"
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
        labels = ", ".join(f"`{lb}`" for lb in metric.labels) or "—"
        row = f"| `{metric.name}` | {metric.type} | {metric.unit} | {labels} | {metric.help} |"
        if with_sources:
            row += " " + " | ".join(_source_cell(metric, e) for e in m.ENGINES) + " |"
        lines.append(row)
    return lines


def render_metrics_md() -> str:
    out = [
        "# Metrics reference",
        "",
        "<!-- generated from optiinfra/metrics.py by `python -m optiinfra.docs`; do not edit -->",
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
        "`llm_engine_info` (gauge, always 1) carries the current config plans need as labels: "
        + ", ".join(f"`{lb}`" for lb in m.ENGINE_INFO_LABELS)
        + ". Sources: vLLM `vllm:cache_config_info`, SGLang `/get_server_info`, TGI `/info`, and "
        "`--engine-config k=v`.",
        "",
        "## Sidecar health",
        "",
        *_table(m.SIDECAR_METRICS, with_sources=False),
        "",
        "## GPU metrics (dcgm-exporter compatible)",
        "",
        "Labels on every GPU series: " + ", ".join(f"`{lb}`" for lb in m.GPU_LABELS) + ".",
        "",
        *_table(m.GPU_METRICS, with_sources=False),
        "",
        "## Host metrics",
        "",
        *_table(m.HOST_METRICS, with_sources=False),
        "",
        "## Log signatures",
        "",
        *_table(m.LOG_METRICS, with_sources=False),
        "",
    ]
    return "\n".join(out)




def write(out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    path = out_dir / "metrics.md"
    path.write_text(render_metrics_md(), encoding="utf-8")
    written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("docs"))
    for path in write(parser.parse_args().out):
        print(path)


if __name__ == "__main__":
    main()
