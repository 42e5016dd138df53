"""The receiver's HTTP API: the Alertmanager webhook, the plan API, health, metrics and OpenAPI.

``create_app(config)`` builds the app; the store, the HTTP client session and the background loops (planner,
outbox, registration/heartbeat) are opened and closed in ``cleanup_ctx``. The webhook persists first and
answers at once: planning and pushing happen in the background, so Alertmanager is never kept waiting.
"""

from __future__ import annotations

import argparse
import hmac
import json
import logging
import re
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import cache
from importlib import resources
from typing import Any, Literal

from aiohttp import web
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from optiinfra.cliutil import UsageError, parse_listen, parse_seconds, read_secret

from . import intake
from . import store as st
from .service import ReceiverConfig, Service
from .states import IllegalTransition, PlanNotFound

log = logging.getLogger(__name__)

SERVICE = web.AppKey("service", Service)
PLAN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")
    by: str = Field(default="api", max_length=200)
    reason: str = Field(default="", max_length=2000)


class StatusReport(BaseModel):
    model_config = ConfigDict(extra="allow")
    status: Literal["rolling_out", "completed", "failed"]
    step: int | None = Field(default=None, ge=0, le=100, description="canary step reached, percent of traffic")
    message: str = Field(default="", max_length=2000)


class ClearRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    target: str = Field(min_length=1, max_length=500)
    knob: str | None = Field(default=None, max_length=200)
    by: str = Field(default="api", max_length=200)


def _error(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers or None)


def _dumps(value: Any) -> str:
    return json.dumps(value, default=str)


def _json(value: Any, status: int = 200) -> web.Response:
    return web.json_response(value, status=status, dumps=_dumps)


def _authorized(request: web.Request, token: str | None) -> bool:
    if not token:
        return True
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


@web.middleware
async def _guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bearer token on every mutating call; malformed input never becomes a 5xx."""
    service = request.app[SERVICE]
    if request.method == "POST" and not _authorized(request, service.config.token):
        return _error(401, "missing or wrong bearer token (Authorization: Bearer <token>)",
                      **{"WWW-Authenticate": "Bearer"})
    try:
        return await handler(request)
    except st.StoreError as exc:
        log.error("store unavailable", extra={"error": str(exc), "path": request.path})
        return _error(503, "the receiver's store is unavailable; retry later")


async def _body(request: web.Request, model: type[BaseModel], *, optional: bool = False) -> Any:
    raw = await request.read()
    if not raw.strip() and optional:
        return model()
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(body)"
        raise web.HTTPBadRequest(text=_dumps({"error": f"{where}: {first['msg']}"}),
                                 content_type="application/json") from None


def _plan_id(request: web.Request) -> str:
    plan_id = request.match_info["plan_id"]
    if not PLAN_ID.match(plan_id):
        raise web.HTTPBadRequest(text=_dumps({"error": f"invalid plan id {plan_id[:80]!r}"}),
                                 content_type="application/json")
    return plan_id


# ------------------------------------------------------------------------------------------------------ intake

async def post_alerts(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    started = time.perf_counter()
    limit = service.config.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        service.metrics.notifications.labels("too_large").inc()
        return _error(413, f"body of {request.content_length} bytes exceeds the limit of {limit} bytes")
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        service.metrics.notifications.labels("too_large").inc()
        return _error(413, f"body exceeds the limit of {limit} bytes")
    try:
        note = intake.parse(body)
    except intake.IntakeError as exc:
        service.metrics.notifications.labels("invalid").inc()
        return _error(400, str(exc))
    try:
        result = await service.record(note, body.decode("utf-8"))
    except st.StoreError as exc:
        service.metrics.notifications.labels("store_error").inc()
        log.error("could not persist a notification; Alertmanager will retry", extra={"error": str(exc)})
        return _error(503, "could not persist the notification; retry")
    m = service.metrics
    m.notifications.labels("accepted").inc()
    for kind, n in (("new", result.new_episodes), ("duplicate", result.duplicates),
                    ("resolved", result.resolved), ("ignored", result.ignored)):
        if n:
            m.episodes.labels(kind).inc(n)
    m.intake_latency.observe(time.perf_counter() - started)
    return web.json_response({
        "status": "accepted", "notification_id": result.notification_id, "new_episodes": result.new_episodes,
        "duplicates": result.duplicates, "resolved": result.resolved, "ignored": result.ignored,
    })


# -------------------------------------------------------------------------------------------------------- plans

def _plan_view(plan: dict[str, Any]) -> dict[str, Any]:
    return {"plan_id": plan["plan_id"], "status": plan["status"], "target_key": plan["target_key"],
            "bottleneck": plan["bottleneck"], "risk": plan["risk"], "knobs": plan["knobs"],
            "last_error": plan["last_error"], "document": plan["document"]}


async def list_plans(request: web.Request) -> web.Response:
    q = request.query
    try:
        limit = min(int(q.get("limit", "200")), 1000)
    except ValueError:
        return _error(400, "limit must be an integer")
    status = q.get("status")
    if status and status not in _statuses():
        return _error(400, f"unknown status {status!r}; one of {', '.join(_statuses())}")
    async with request.app[SERVICE].store.transaction() as tx:
        plans = await st.list_plans(tx, status=status, target=q.get("target"), bottleneck=q.get("bottleneck"),
                                    limit=limit)
    return _json({"plans": [_plan_view(p) for p in plans]})


@cache
def _statuses() -> tuple[str, ...]:
    from .plan import PLAN_STATUSES  # noqa: PLC0415

    return tuple(PLAN_STATUSES)


async def get_plan(request: web.Request) -> web.Response:
    plan_id = _plan_id(request)
    async with request.app[SERVICE].store.transaction() as tx:
        plan = await st.get_plan(tx, plan_id)
        if plan is None:
            return _error(404, f"no plan {plan_id}")
        audit = await st.audit_log(tx, plan_id)
        outbox = await st.outbox_rows(tx, plan_id)
    view = _plan_view(plan)
    view["audit"] = audit
    view["pushes"] = [{k: r[k] for k in ("kind", "key", "state", "attempts", "last_error")} for r in outbox]
    return _json(view)


async def _act(request: web.Request, action: Callable[[str], Awaitable[dict[str, Any]]]) -> web.Response:
    plan_id = _plan_id(request)
    try:
        plan = await action(plan_id)
    except PlanNotFound as exc:
        return _error(404, str(exc))
    except IllegalTransition as exc:
        return _error(409, str(exc))
    return _json(_plan_view(plan))


async def approve_plan(request: web.Request) -> web.Response:
    decision: Decision = await _body(request, Decision, optional=True)
    service = request.app[SERVICE]
    return await _act(request, lambda pid: service.approve(pid, decision.by))


async def reject_plan(request: web.Request) -> web.Response:
    decision: Decision = await _body(request, Decision, optional=True)
    service = request.app[SERVICE]
    return await _act(request, lambda pid: service.reject(pid, decision.by, decision.reason))


async def plan_status(request: web.Request) -> web.Response:
    report: StatusReport = await _body(request, StatusReport)
    service = request.app[SERVICE]
    detail = report.model_dump(exclude={"status"})
    return await _act(request, lambda pid: service.report_status(pid, report.status, detail))


# ---------------------------------------------------------------------------------------- diagnoses, episodes

async def list_diagnoses(request: web.Request) -> web.Response:
    async with request.app[SERVICE].store.transaction() as tx:
        rows = await st.list_diagnoses(tx, target=request.query.get("target"))
    return _json({"diagnoses": rows})


async def list_episodes(request: web.Request) -> web.Response:
    state = request.query.get("state")
    if state and state not in st.EPISODE_STATES:
        return _error(400, f"unknown state {state!r}; one of {', '.join(st.EPISODE_STATES)}")
    async with request.app[SERVICE].store.transaction() as tx:
        rows = await st.list_episodes(tx, state)
    return _json({"episodes": rows})


async def blocked_knobs(request: web.Request) -> web.Response:
    target = request.query.get("target")
    if not target:
        return _error(400, "query parameter 'target' (a target key, namespace/workload/model) is required")
    async with request.app[SERVICE].store.transaction() as tx:
        rows = await st.blocked_knobs(tx, target)
    return _json({"target": target, "blocked": rows})


async def clear_target(request: web.Request) -> web.Response:
    req: ClearRequest = await _body(request, ClearRequest)
    cleared = await request.app[SERVICE].clear_target(req.target, req.knob, req.by)
    return _json({"target": req.target, "cleared": cleared})


# ---------------------------------------------------------------------------------------------- health, metrics

async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def health_detailed(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    store_ok, store_error, depth = True, "", None
    try:
        depth = await service.outbox_depth()
    except st.StoreError as exc:
        store_ok, store_error = False, str(exc)
    body = {
        "status": "ok" if store_ok else "degraded",
        "store": {"ok": store_ok, "backend": service.store.dialect, "location": service.store.describe(),
                  "error": store_error},
        "orchestrator": {"url": st.redact(service.config.orchestrator_url), **service.orchestrator_state},
        "outbox_depth": depth,
        "worker": service.config.run_worker,
    }
    return web.json_response(body, status=200 if store_ok else 503)


async def metrics(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    try:
        counts = await service.store.run(st.plan_counts)
        depth = await service.store.run(st.outbox_depth)
        for status in _statuses():
            service.metrics.plans.labels(status).set(counts.get(status, 0))
        service.metrics.outbox_depth.set(depth)
    except st.StoreError as exc:
        log.warning("metrics: store unavailable", extra={"error": str(exc)})
    return web.Response(body=generate_latest(service.metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})


@cache
def openapi() -> dict[str, Any]:
    text = resources.files(__package__).joinpath("openapi.json").read_text(encoding="utf-8")
    spec: dict[str, Any] = json.loads(text)
    return spec


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(openapi())


# ------------------------------------------------------------------------------------------------------- the app

async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    service = app[SERVICE]
    await service.store.open()
    tasks = await service.start()
    log.info("receiver started", extra={"store": service.store.describe(),
                                        "orchestrator": st.redact(service.config.orchestrator_url)})
    yield
    await service.stop(tasks)
    await service.store.close()


def create_app(config: ReceiverConfig, *, store: st.Store | None = None) -> web.Application:
    app = web.Application(client_max_size=config.max_body_bytes, middlewares=[_guard])
    app[SERVICE] = Service(config=config, store=store or st.open_store(config.db))
    app.cleanup_ctx.append(_lifecycle)
    r = app.router
    r.add_post("/api/v1/alerts", post_alerts)
    r.add_get("/api/v1/plans", list_plans)
    r.add_get("/api/v1/plans/{plan_id}", get_plan)
    r.add_post("/api/v1/plans/{plan_id}/approve", approve_plan)
    r.add_post("/api/v1/plans/{plan_id}/reject", reject_plan)
    r.add_post("/api/v1/plans/{plan_id}/status", plan_status)
    r.add_get("/api/v1/diagnoses", list_diagnoses)
    r.add_get("/api/v1/episodes", list_episodes)
    r.add_get("/api/v1/targets/blocked", blocked_knobs)
    r.add_post("/api/v1/targets/clear", clear_target)
    r.add_get("/health", health)
    r.add_get("/health/detailed", health_detailed)
    r.add_get("/metrics", metrics)
    r.add_get("/openapi.json", openapi_json)
    return app


# --------------------------------------------------------------------------------------------- command line

def add_receiver_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``optiinfra receiver`` sub-command (registered by ``alertmanager/cli.py``)."""
    p = subparsers.add_parser("receiver", help="run the Alertmanager webhook receiver",
                              description="Alertmanager webhook receiver: alerts -> plans -> orchestrator.")
    p.add_argument("--orchestrator-url", help="base URL of the orchestrator (required)")
    p.add_argument("--listen", default="0.0.0.0:9095", help="host:port to serve on (default 0.0.0.0:9095)")
    p.add_argument("--db", default="sqlite:///optiinfra-receiver.db",
                   help="sqlite:///relative/path.db or sqlite:////absolute/path.db (default "
                        "sqlite:///optiinfra-receiver.db), or postgresql://USER[:PASSWORD]@HOST:PORT/DB")
    p.add_argument("--prometheus-url", help="Prometheus base URL to read llm_engine_info (current config) from")
    p.add_argument("--token-file", help="file holding the bearer token required on POST endpoints")
    p.add_argument("--orchestrator-token-file", help="file holding the bearer token sent to the orchestrator")
    p.add_argument("--auto-approve-low-risk", action="store_true", help="push low-risk plans without approval")
    p.add_argument("--cooldown", type=parse_seconds, default=1800.0,
                   help="per target and knob (and bottleneck) after a change (default 30m)")
    p.add_argument("--bake-seconds", type=float, help="rollback window after completion (default: the plan's)")
    p.add_argument("--max-body-bytes", type=int, default=1024 * 1024, help="webhook body limit (default 1 MiB)")
    p.add_argument("--max-attempts", type=int, default=8, help="push attempts before a plan fails (default 8)")
    p.add_argument("--heartbeat-seconds", type=float, default=30.0, help="orchestrator heartbeat period")
    p.add_argument("--advertise-url", help="URL the orchestrator reaches this receiver at (default from --listen)")
    p.add_argument("--agent-id", default=f"optiinfra-receiver-{socket.gethostname()}", help="agent id to register")
    p.set_defaults(func=run_receiver)


def config_from_args(args: argparse.Namespace) -> tuple[ReceiverConfig, str, int]:
    if not args.orchestrator_url:
        raise UsageError("--orchestrator-url is required (or OPTIINFRA_ORCHESTRATOR_URL)")
    host, port = parse_listen("--listen", args.listen, default_host="0.0.0.0")
    if not args.db.startswith(("sqlite://", "postgresql://", "postgres://")):
        raise UsageError(f"--db {st.redact(args.db)!r}: use sqlite:///PATH or postgresql://USER@HOST:PORT/DB")
    advertise = args.advertise_url or f"http://{socket.gethostname() if host == '0.0.0.0' else host}:{port}"
    try:
        config = ReceiverConfig(
            orchestrator_url=args.orchestrator_url, db=args.db, prometheus_url=args.prometheus_url,
            token=read_secret("--token-file", args.token_file),
            orchestrator_token=read_secret("--orchestrator-token-file", args.orchestrator_token_file),
            auto_approve_low_risk=args.auto_approve_low_risk, cooldown_seconds=args.cooldown,
            bake_seconds=args.bake_seconds, max_body_bytes=args.max_body_bytes, max_attempts=args.max_attempts,
            heartbeat_seconds=args.heartbeat_seconds, advertise_url=advertise, agent_id=args.agent_id)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise UsageError(f"--{str(first['loc'][0]).replace('_', '-')}: {first['msg']}") from None
    return config, host, port


def run_receiver(args: argparse.Namespace) -> int:
    config, host, port = config_from_args(args)
    log.info("starting the receiver", extra={"listen": f"{host}:{port}", "db": st.redact(config.db),
                                             "orchestrator": st.redact(config.orchestrator_url)})
    web.run_app(create_app(config), host=host, port=port, print=None, access_log=None)
    return 0
