"""The contract an orchestrator implements, as an OpenAPI 3.1 document (``alertmanager/orchestrator.openapi.json``).

The receiver is the client of this API: it registers, heartbeats, pushes approved plans and rollbacks
(``orchestrator.py`` speaks HTTP, ``outbox.py`` retries). The orchestrator calls one endpoint of the receiver
back, the status report, described under ``webhooks`` and copied from the receiver's own document
(``openapi.json``). Request bodies come from the models the receiver sends (the plan's pydantic models, the
agent document of ``orchestrator.py``); ``example_exchange()`` is one plan's messages, built from the same models.

``optiinfra generate`` (``make generate``) writes it; a test keeps it current, and
a test orchestrator written from the document validates every request a real receiver sends against it.
"""

from __future__ import annotations

import copy
import json
import re
from datetime import UTC, datetime
from importlib import resources
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from optiinfra import __version__

from .orchestrator import HEARTBEAT_PATH, PLANS_PATH, REGISTER_PATH, ROLLBACK_PATH, STATUS_PATH, Agent, Heartbeat
from .outbox import push_key, rollback_key
from .plan import Action, Plan
from .planner import idempotency_key
from .states import ORCHESTRATOR_STATUSES, TRANSITIONS

_REF = "#/components/schemas/{model}"
_SCHEMA_REF = re.compile(r'"\$ref": "#/components/schemas/([^"]+)"')


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SloAlertReason(_Model):
    kind: Literal["slo_alert"] = Field(description="What decided the rollback: an SLO burn-rate alert.")
    alertname: str
    fingerprint: str
    starts_at: str = Field(alias="startsAt")
    labels: dict[str, str]
    annotations: dict[str, str]


class AnalysisReason(_Model):
    kind: Literal["analysis"] = Field(description="What decided the rollback: the plan's own analysis against "
                                                  "Prometheus (the receiver's GET /api/v1/plans/{id} has its numbers).")
    phase: str = Field(description="`step-<percent>` (a rollout step) or `bake` (after the bake time).")
    verdict: Literal["worse", "no_effect"] = Field(description="`worse`: a guard (or the signal) got worse; "
                                                               "`no_effect`: the change did not help.")
    reason: str


RollbackReason = Annotated[SloAlertReason | AnalysisReason, Field(discriminator="kind")]


class RollbackRequest(_Model):
    """Undo a plan: restore the values of its actions' `from` (or the values before the change)."""

    plan_id: str
    idempotency_key: str = Field(description="The plan's idempotency key plus `:rollback`; also the header.")
    reason: RollbackReason


def legal_reports() -> str:
    """The status changes an orchestrator may report, from the plan state machine (it sees plans once pushed)."""
    reported = set(ORCHESTRATOR_STATUSES)
    return "; ".join(f"`{src}` → " + ", ".join(f"`{d}`" for d in sorted(dst & reported))
                     for src, dst in TRANSITIONS.items() if src in {"pushed", *reported} and dst & reported)


def _receiver_operation(receiver: dict[str, Any], path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """An operation of the receiver's OpenAPI document and every component schema it refers to."""
    operation = copy.deepcopy(receiver["paths"][path]["post"])
    known = receiver["components"]["schemas"]
    found: dict[str, Any] = {}
    pending = [operation]
    while pending:
        for name in _SCHEMA_REF.findall(json.dumps(pending.pop())):
            if name not in found:
                found[name] = copy.deepcopy(known[name])
                pending.append(found[name])
    operation.pop("security", None)
    return operation, found


def _json_body(ref: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": {"$ref": _REF.format(model=ref)}}}}


def _answers(accepted: str) -> dict[str, Any]:
    retry = ("Anything else (or no answer within the push timeout, 10 s) is retried with exponential backoff "
             "and jitter (0.5 s doubling up to 60 s); after `--max-attempts` (default 8) the receiver gives up "
             "and marks the plan `failed`.")
    return {
        "2XX": {"description": accepted},
        "409": {"description": "Already received under this Idempotency-Key: the receiver counts it delivered."},
        "default": {"description": retry},
    }


_IDEMPOTENCY = {
    "name": "Idempotency-Key", "in": "header", "required": True, "schema": {"type": "string", "minLength": 1},
    "description": "Stable across retries of one push. Apply a key once: answer a repeat with 2xx or 409 and do "
                   "nothing else.",
}
_PLAN_ID = {"name": "plan_id", "in": "path", "required": True, "schema": {"type": "string"}}


def openapi(receiver: dict[str, Any] | None = None) -> dict[str, Any]:
    """The orchestrator's OpenAPI document; ``receiver`` is the receiver's own (default: the packaged one)."""
    if receiver is None:
        receiver = json.loads(resources.files(__package__).joinpath("openapi.json").read_text(encoding="utf-8"))
    components: dict[str, Any] = {}
    for model in (Agent, Heartbeat, RollbackRequest, Plan):  # definitions hoisted into ``components``
        schema = model.model_json_schema(by_alias=True, mode="serialization", ref_template=_REF)
        components.update(schema.pop("$defs", {}))
        components[model.__name__] = schema
    status_op, status_schemas = _receiver_operation(receiver, STATUS_PATH)
    components.update(status_schemas)
    status_op["security"] = [{"bearer": []}]
    status_op["description"] = (
        "Sent by the orchestrator to the receiver's `endpoint` (from the registration), after answering the "
        "plan's push. Legal moves: " + legal_reports() + ". A report that arrives before the receiver recorded "
        "the push, or after it rolled the plan back, is answered 409. Needs `Authorization: Bearer <token>` when "
        "the receiver runs with `--token-file`.")
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "OptiInfra orchestrator contract", "version": "1",
            "description": "What the OptiInfra receiver expects of your deployment controller (the orchestrator): "
                           "accept its registration and heartbeats, apply the plans and rollbacks it pushes (each "
                           "once per Idempotency-Key), and report each plan's progress back to the receiver. "
                           "Requests carry `Authorization: Bearer <token>` when the receiver runs with "
                           "`--orchestrator-token-file`. Guide with a worked exchange: docs/orchestrator-api.md.",
        },
        "servers": [{"url": "{orchestrator_url}", "description": "`--orchestrator-url` of the receiver",
                     "variables": {"orchestrator_url": {"default": "http://orchestrator:8080"}}}],
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
                       "schemas": dict(sorted(components.items()))},
        "security": [{}, {"bearer": []}],
        "paths": {
            REGISTER_PATH: {"post": {
                "summary": "The receiver registers when it starts, and again until an answer is 2xx or 409.",
                "requestBody": _json_body("Agent"),
                "responses": {"2XX": {"description": "Registered."},
                              "default": {"description": "Retried after 1 s, 2 s, 4 s, ... up to the heartbeat "
                                                         "period."}}}},
            HEARTBEAT_PATH: {"post": {
                "summary": "After registering, the receiver sends a heartbeat every `--heartbeat-seconds` (30 s).",
                "requestBody": _json_body("Heartbeat"),
                "responses": {"2XX": {"description": "Alive."},
                              "default": {"description": "Logged; retried like a registration."}}}},
            PLANS_PATH: {"post": {
                "summary": "An approved plan to apply: change the target's engine flags, environment, replicas or "
                           "restart it, rolling out by `rollout.steps`.",
                "description": "The body is the plan document (JSON Schema: alertmanager/plan.schema.json) with "
                               "`status` `approved`. Report progress to the receiver (see `webhooks`).",
                "parameters": [_IDEMPOTENCY],
                "requestBody": _json_body("Plan"),
                "responses": _answers("Accepted (202 suggested); progress follows on the status webhook.")}},
            ROLLBACK_PATH: {"post": {
                "summary": "Undo a plan: an SLO burned while it rolled out or within its bake time.",
                "description": "The receiver has already marked the plan `rolled_back`; no status report follows.",
                "parameters": [_PLAN_ID, _IDEMPOTENCY],
                "requestBody": _json_body("RollbackRequest"),
                "responses": _answers("Accepted; restore the values before the plan.")}},
        },
        "webhooks": {"planStatus": {"post": {"x-url": "{endpoint}" + STATUS_PATH, **status_op}}},
    }


def text(receiver: dict[str, Any] | None = None) -> str:
    return json.dumps(openapi(receiver), indent=2) + "\n"


def example_exchange() -> list[dict[str, Any]]:
    """One plan from push to completion: (who, method, path, headers, body, answer) steps."""
    created = datetime(2026, 11, 22, 3, 5, tzinfo=UTC)
    action = Action.model_validate({"kind": "engine_arg", "name": "--gpu-memory-utilization",
                                    "knob": "gpu_memory_utilization", "from": 0.9, "to": 0.95,
                                    "restart_required": True})
    plan = Plan.model_validate({
        "plan_id": "4f2a9c1e-5b7d-4e0a-9d3c-2a6f8b1e7c40",
        "idempotency_key": idempotency_key("3be1f0a27c1d", "2026-11-22T03:00:00.000Z", [action]),
        "created_at": created, "target": {"namespace": "ml", "pod": "vllm-0", "deployment": "vllm",
                                          "engine": "vllm", "model": "llama"},
        "bottleneck": "kv_cache_pressure", "severity": "warning",
        "runbook_url": "https://github.com/optiinfra/optiinfra/blob/main/docs/runbooks/kv_cache_pressure.md",
        "evidence": {"alerts": [{"alertname": "LLMKVCachePressure", "fingerprint": "3be1f0a27c1d",
                                 "startsAt": "2026-11-22T03:00:00.000Z",
                                 "labels": {"namespace": "ml", "pod": "vllm-0", "model": "llama"}}],
                     "values": {"gpu_memory_utilization": 0.9}},
        "actions": [action],
        "rationale": "KV cache full while requests wait: give the KV cache more GPU memory.",
        "expected_impact": {"metric": "llm_kv_cache_usage_ratio", "direction": "down"},
        "risk": "low", "requires_approval": False,
        "rollout": {"strategy": "canary", "steps": [10, 50, 100], "bake_seconds": 600},
        "rollback": {"on_slos": ["*"], "on_alerts": []}, "status": "approved",
    })
    document = plan.document()
    pid, receiver = document["plan_id"], "http://optiinfra-receiver.monitoring.svc:9095"
    status_path = STATUS_PATH.format(plan_id=pid)
    agent = Agent(agent_id="optiinfra-receiver", agent_type="performance",
                  capabilities=["plans", "rollbacks", "bottleneck:kv_cache_pressure"], endpoint=receiver,
                  health_endpoint=receiver + "/health", version=__version__).model_dump()
    return [
        {"from": "receiver", "method": "POST", "path": REGISTER_PATH, "headers": {}, "body": agent, "answer": 200},
        {"from": "receiver", "method": "POST", "path": HEARTBEAT_PATH, "headers": {},
         "body": {**agent, "status": {"outbox_depth": 0}}, "answer": 200},
        {"from": "receiver", "method": "POST", "path": PLANS_PATH, "headers": {"Idempotency-Key": push_key(document)},
         "body": document, "answer": 202},
        {"from": "orchestrator", "method": "POST", "path": receiver + status_path, "headers": {},
         "body": {"status": "rolling_out", "step": 10, "message": "canary at 10%"}, "answer": 200},
        {"from": "orchestrator", "method": "POST", "path": receiver + status_path, "headers": {},
         "body": {"status": "completed", "step": 100, "message": "rolled out"}, "answer": 200},
        {"from": "receiver", "method": "POST", "path": ROLLBACK_PATH.format(plan_id=pid),
         "headers": {"Idempotency-Key": rollback_key(document)},
         "body": RollbackRequest.model_validate({
             "plan_id": pid, "idempotency_key": rollback_key(document),
             "reason": {"kind": "slo_alert", "alertname": "LLMSLOBurnRateFast", "fingerprint": "9c0d51e2aa07",
                        "startsAt": "2026-11-22T03:12:00.000Z",
                        "labels": {"slo": "ttft", "namespace": "ml", "pod": "vllm-0", "model": "llama"},
                        "annotations": {}}}).model_dump(by_alias=True),
         "answer": 202},
    ]

