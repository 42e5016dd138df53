"""Plan actions: the engine-independent actions (scale, restart) and ``docs/plan-actions.md``.

The engine knobs an abstract taxonomy action turns come from the engine vocabulary (``optiinfra.engines``):
``VOCABULARY[engine].candidates(action)`` lists them, most preferred first; an empty tuple means the engine has no
such lever (the planner then tries the bottleneck's next action, ``no_knob`` says why). ``OPS_ACTIONS`` holds the
engine-independent actions, carried out by the orchestrator whatever the engine.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from optiinfra import engines
from optiinfra.taxonomy import ActionId

from .plan import ActionKind, Risk


@dataclass(frozen=True)
class OpsAction:
    """An engine-independent action carried out by the orchestrator."""

    kind: ActionKind
    name: str
    knob: str
    to: str
    relative: bool
    risk: Risk
    restart_required: bool
    effect: str
    minimum: float | None = None


OPS_ACTIONS: Mapping[ActionId, OpsAction] = MappingProxyType({
    "scale_out": OpsAction("scale", "replicas", "replicas", "+1", True, "high", False,
                           "one more replica adds capacity (and GPUs)", minimum=1),
    "consolidate_replicas": OpsAction("scale", "replicas", "replicas", "-1", True, "high", False,
                                      "one replica fewer frees idle GPUs", minimum=1),
    "restart_pod": OpsAction("restart", "pod", "restart", "restart", False, "low", True,
                             "a fresh process clears a hung or crashed engine"),
})


def _change_text(knob: engines.Knob) -> str:
    flag, lever = knob.setting.flag, knob.lever
    if lever.change.startswith("="):
        return f"`{flag}{' ' if knob.kind == 'engine_arg' else '='}{lever.change[1:]}`"
    limits = ", ".join(f"{name} {value:g}" for name, value in (("min", lever.minimum), ("max", lever.maximum))
                       if value is not None)
    return f"`{flag}` {lever.change}" + (f" ({limits})" if limits else "")


def markdown() -> str:
    """``docs/plan-actions.md``: what each taxonomy action becomes on each engine."""
    from optiinfra import taxonomy  # noqa: PLC0415 -- only the doc needs the entries

    vocabularies = engines.VOCABULARY.values()
    lines = [
        "# Plan actions per engine", "",
        "Generated from the engine vocabulary `optiinfra/engines.py` (`make generate`); do not edit. The planner",
        "walks a bottleneck's actions in order and proposes the first one whose knob exists on the engine, is not",
        "blocked (rolled back) or cooling, and is valid. A change is `current -> new` when `llm_engine_info` reports",
        "the current value, else relative (`+0.05`, `x0.75`) with the bounds given here. Every engine flag needs a",
        "restart.", "",
        "| bottleneck | action | " + " | ".join(v.title for v in vocabularies) + " |",
        "|---|---|" + "---|" * len(vocabularies),
    ]
    for entry in taxonomy.BOTTLENECKS:
        for action in entry.actions:
            ops = OPS_ACTIONS.get(action)
            cells = [f"{ops.kind} `{ops.name}` {ops.to} ({ops.risk})" if ops is not None
                     else "; then ".join(f"{_change_text(k)} ({k.lever.risk})" for k in v.candidates(action))
                     or "— " + v.no_knob.get(action, "no such flag") for v in vocabularies]
            lines.append(f"| `{entry.id}` | `{action}` | " + " | ".join(cells) + " |")
    lines += ["", "## Knobs", "",
              "| engine | flag | knob (cooldown id) | read from | default | change | risk | condition | effect |",
              "|---|---|---|---|---|---|---|---|---|"]
    for knob in engines.all_knobs():
        setting, lever = knob.setting, knob.lever
        condition = ", ".join(c for c in ("current value known" if lever.needs_current else "",
                                          "not yet set" if lever.only_when_unset else "",
                                          f"{knob.engine} >= {setting.since}" if setting.since else "") if c)
        lines.append(f"| {knob.engine} | `{setting.flag}` | `{setting.key}` | "
                     + ", ".join(f"`{k}`" for k in setting.lookups)
                     + f" | {setting.default} | {_change_text(knob)} | {lever.risk} | {condition} | {lever.effect} |")
    lines += ["", "Engine constraints checked before a plan leaves: " + "; ".join(
        f"{v.title} " + ", ".join(f"`{r.lower} {'<' if r.strict else '<='} {r.upper}`" for r in v.relations)
        for v in vocabularies if v.relations) + ";",
              "memory fractions within (0, 1]; integer limits >= 1. `!` marks a label holding the negation.", ""]
    return "\n".join(lines)
