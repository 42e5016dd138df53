"""The receiver's HTTP API: the Alertmanager webhook, the plan API, health, metrics and OpenAPI.

``create_app(config)`` builds the app; the store, the HTTP client session and the background loops (planner,
outbox, registration/heartbeat) are opened and closed in ``cleanup_ctx``. The webhook persists first and
answers at once: planning and pushing happen in the background, so Alertmanager is never kept waiting.
"""

from __future__ import annotations

import dataclasses
import hmac
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from functools import cache, partial
from importlib import resources
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from optiinfra.secrets import redact_url

from . import intake
from . import store as st
from .orchestrator import STATUS_PATH
from .outbox import enqueue_push
from .service import ReceiverConfig, Service, schedule_analyses
from .states import PLAN_STATUSES, IllegalTransition, OrchestratorStatus, PlanNotFound, PlanStatus
from .worker import next_action

log = logging.getLogger(__name__)

SERVICE = web.AppKey("service", Service)
PLAN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
#: Query parameters compared with stored columns.
_STORE_FILTERS = ("target", "bottleneck", "status", "state")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")
    by: str = Field(default="api", max_length=200)
    reason: str = Field(default="", max_length=2000)


class StatusReport(BaseModel):
    model_config = ConfigDict(extra="allow")
    status: OrchestratorStatus
    step: int | None = Field(default=None, ge=0, le=100, description="canary step reached, percent of traffic")
    message: str = Field(default="", max_length=2000)


class ClearRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    target: str = Field(min_length=1, max_length=500)
    knob: str | None = Field(default=None, max_length=200)
    by: str = Field(default="api", max_length=200)


def _error(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers or None)


def _bad_request(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=json.dumps({"error": message}), content_type="application/json")


def _default(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return str(value)


def _json(value: Any) -> web.Response:
    """A JSON answer; the store's rows (dataclasses) become objects."""
    return web.json_response(value, dumps=partial(json.dumps, default=_default))


def _authorized(request: web.Request, token: str | None) -> bool:
    """Constant-time bearer check; any header (bytes aiohttp could not decode included) is just refused."""
    if not token:
        return True
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode("utf-8", "surrogateescape"), token.encode())


class _NoHeaderValues(logging.Filter):
    """aiohttp logs a request it cannot parse with the parser's message, which quotes the offending header line
    (an ``Authorization`` value with a NUL in it, say). Keep the event, drop the quoted bytes."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):  # the parser's refusal, not a bug: no traceback, no bytes
            record.msg = f"{record.getMessage()}: {type(exc).__name__} {exc.code} (request refused)"
            record.args, record.exc_info, record.exc_text = None, None, None
        return True


def _quiet_aiohttp_parser() -> None:
    server_log = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, _NoHeaderValues) for f in server_log.filters):
        server_log.addFilter(_NoHeaderValues())


@web.middleware
async def _guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bearer token on every mutating call; malformed input never becomes a 5xx."""
    service = request.app[SERVICE]
    if request.method == "POST" and not _authorized(request, service.config.token):
        return _error(401, "missing or wrong bearer token (Authorization: Bearer <token>)",
                      **{"WWW-Authenticate": "Bearer"})
    for name in _STORE_FILTERS:  # the query parameters that reach a store (others are ignored)
        problem = intake.unstorable(request.query.get(name, ""))
        if problem:
            return _error(400, f"query parameter {name!r}: {problem}")
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
        parsed = model.model_validate_json(raw)
    except RecursionError:
        raise _bad_request("(body): nested too deeply") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(body)"
        raise _bad_request(f"{where}: {first['msg']}") from None
    for name, value in parsed:  # top-level strings become columns; nested ones are stored as escaped JSON
        problem = intake.unstorable(value) if isinstance(value, str) else None
        if problem:
            raise _bad_request(f"{name}: {problem}")
    return parsed


def _plan_id(request: web.Request) -> str:
    plan_id = request.match_info["plan_id"]
    if not PLAN_ID.match(plan_id):
        raise _bad_request(f"invalid plan id {plan_id[:80]!r}")
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
        result = await service.recorder.record(note, body.decode("utf-8"))
    except st.StoreError as exc:
        service.metrics.notifications.labels("store_error").inc()
        log.error("could not persist a notification; Alertmanager will retry", extra={"error": str(exc)})
        return _error(503, "could not persist the notification; retry")
    service.metrics.recorded(result, time.perf_counter() - started)
    return web.json_response({"status": "accepted", **vars(result)})  # notification_id and the episode counts


# -------------------------------------------------------------------------------------------------------- plans

def _plan_view(plan: st.PlanRow) -> dict[str, Any]:
    return {"plan_id": plan.plan_id, "status": plan.status, "target_key": plan.target_key,
            "bottleneck": plan.bottleneck, "risk": plan.risk, "knobs": plan.knobs, "last_error": plan.last_error,
            "document": plan.document}


MAX_PLANS = 1000


async def list_plans(request: web.Request) -> web.Response:
    q = request.query
    text = q.get("limit", "200")
    limit = int(text) if text.isdigit() and len(text) <= 4 else 0
    if not 1 <= limit <= MAX_PLANS:
        return _error(400, f"limit must be an integer from 1 to {MAX_PLANS}, not {text[:40]!r}")
    status = q.get("status")
    if status and status not in PLAN_STATUSES:
        return _error(400, f"unknown status {status[:40]!r}; one of {', '.join(PLAN_STATUSES)}")
    plans = await request.app[SERVICE].store.run(partial(
        st.list_plans, status=status, target=q.get("target"), bottleneck=q.get("bottleneck"), limit=limit))
    return _json({"plans": [_plan_view(p) for p in plans]})


async def get_plan(request: web.Request) -> web.Response:
    plan_id = _plan_id(request)

    async def read(tx: st.Tx) -> tuple[st.PlanRow | None, list[st.AuditEntry], list[st.OutboxRow],
                                       list[st.AnalysisRow]]:
        return (await st.get_plan(tx, plan_id), await st.audit_log(tx, plan_id), await st.outbox_rows(tx, plan_id),
                await st.plan_analyses(tx, plan_id))

    plan, audit, outbox, analyses = await request.app[SERVICE].store.run(read)
    if plan is None:
        return _error(404, f"no plan {plan_id}")
    view = _plan_view(plan)
    view["audit"] = audit
    view["analyses"] = [{"phase": a.phase, "state": a.state, "due_at": a.due_at, "done_at": a.done_at,
                         "verdict": a.verdict, "detail": a.detail} for a in analyses]
    view["pushes"] = [{"kind": r.kind, "key": r.key, "state": r.state, "attempts": r.attempts,
                       "last_error": r.last_error} for r in outbox]
    return _json(view)


async def _act(request: web.Request, to: PlanStatus, detail: dict[str, Any], *, cause: str = "api",
               error: str | None = None, then: Callable[[st.Tx, st.PlanRow, float], Awaitable[object]] | None = None,
               ) -> web.Response:
    """Move a plan to ``to`` (audited; 404/409 when it is missing or may not) and run ``then(tx, the plan as it
    was, now)`` in the same transaction."""
    plan_id, service = _plan_id(request), request.app[SERVICE]
    now = service.clock()

    async def body(tx: st.Tx) -> st.PlanRow:
        before = await st.transition(tx, plan_id, to, cause=cause, detail=detail, now=now, error=error)
        if then is not None:
            await then(tx, before, now)
        return await st.existing_plan(tx, plan_id)

    try:
        plan = await service.store.run(body)
    except PlanNotFound as exc:
        return _error(404, str(exc))
    except IllegalTransition as exc:
        return _error(409, str(exc))
    if to == "approved":
        service.wake_outbox.set()
    return _json(_plan_view(plan))


async def approve_plan(request: web.Request) -> web.Response:
    decision: Decision = await _body(request, Decision, optional=True)
    return await _act(request, "approved", {"event": "approve", "by": decision.by},
                      then=lambda tx, plan, now: enqueue_push(tx, plan.document, now))


async def reject_plan(request: web.Request) -> web.Response:
    decision: Decision = await _body(request, Decision, optional=True)
    return await _act(request, "rejected", {"event": "reject", "by": decision.by, "reason": decision.reason},
                      then=lambda tx, plan, now: st.outbox_cancel(tx, plan.plan_id, "plan", now))


async def plan_status(request: web.Request) -> web.Response:
    report: StatusReport = await _body(request, StatusReport)
    detail = report.model_dump(exclude={"status"})
    analysed = request.app[SERVICE].analyzer is not None  # analyses need Prometheus (--prometheus-url)
    failed = report.status == "failed"

    async def then(tx: st.Tx, plan: st.PlanRow, now: float) -> None:
        if failed:
            await next_action(tx, plan, verdict="failed", reason=f"the orchestrator failed it: {report.message}",
                              now=now)
        elif analysed:
            await schedule_analyses(tx, plan, now, status=report.status, step=report.step)

    return await _act(request, report.status, {"event": "status", **detail}, cause="orchestrator",
                      error=report.message if failed else None, then=then)


# ---------------------------------------------------------------------------------------- diagnoses, episodes

async def list_diagnoses(request: web.Request) -> web.Response:
    rows = await request.app[SERVICE].store.run(partial(st.list_diagnoses, target=request.query.get("target")))
    return _json({"diagnoses": rows})


async def list_episodes(request: web.Request) -> web.Response:
    state = request.query.get("state")
    if state and state not in st.EPISODE_STATES:
        return _error(400, f"unknown state {state!r}; one of {', '.join(st.EPISODE_STATES)}")
    rows = await request.app[SERVICE].store.run(partial(st.list_episodes, state=state))
    return _json({"episodes": rows})


async def _of_target(request: web.Request, key: str, read: Callable[..., Coroutine[Any, Any, list[Any]]],
                     **filters: str | None) -> web.Response:
    target = request.query.get("target")
    if not target:
        return _error(400, "query parameter 'target' (a target key, namespace/workload/model) is required")
    rows = await request.app[SERVICE].store.run(partial(read, target_key=target, **filters))
    return _json({"target": target, key: rows})


async def blocked_knobs(request: web.Request) -> web.Response:
    return await _of_target(request, "blocked", st.blocked_knobs)


async def learned(request: web.Request) -> web.Response:
    return await _of_target(request, "learned", st.learned, bottleneck=request.query.get("bottleneck"))


async def clear_target(request: web.Request) -> web.Response:
    req: ClearRequest = await _body(request, ClearRequest)
    service = request.app[SERVICE]
    cleared = await service.store.run(partial(st.clear_knobs, target_key=req.target, knob=req.knob, who=req.by,
                                              now=service.clock()))
    return _json({"target": req.target, "cleared": cleared})


# ---------------------------------------------------------------------------------------------- health, metrics

async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def health_detailed(request: web.Request) -> web.Response:
    """Public: up or degraded, store and orchestrator reachability, outbox depth. With the bearer token (or when
    none is configured) also where the store is, the orchestrator URL and the last errors, all redacted."""
    service = request.app[SERVICE]
    if "Authorization" in request.headers and not _authorized(request, service.config.token):
        return _error(401, "wrong bearer token (omit it for the public part)", **{"WWW-Authenticate": "Bearer"})
    store_ok, store_error, depth = True, "", None
    try:
        depth = await service.outbox_depth()
    except st.StoreError as exc:
        store_ok, store_error = False, str(exc)
    orchestrator = service.orchestrator
    body: dict[str, Any] = {
        "status": "ok" if store_ok else "degraded",
        "store": {"ok": store_ok, "backend": service.store.dialect},
        "orchestrator": {"reachable": orchestrator.reachable, "registered": orchestrator.registered},
        "outbox_depth": depth,
    }
    if _authorized(request, service.config.token):
        body["store"].update(location=service.store.describe(), error=store_error)
        body["orchestrator"].update(url=redact_url(service.config.orchestrator_url),
                                    last_ok=orchestrator.last_ok, last_error=orchestrator.last_error)
        body["worker"] = service.config.run_worker
    return web.json_response(body, status=200 if store_ok else 503)


async def metrics(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    try:
        await service.metrics.refresh(service.store)
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
                                        "orchestrator": redact_url(service.config.orchestrator_url)})
    yield
    started = time.perf_counter()
    await service.stop(tasks)
    await service.store.close()
    log.info("receiver stopped", extra={"seconds": round(time.perf_counter() - started, 3)})


def create_app(config: ReceiverConfig, *, store: st.Store | None = None) -> web.Application:
    _quiet_aiohttp_parser()
    app = web.Application(client_max_size=config.max_body_bytes, middlewares=[_guard])
    app[SERVICE] = Service(config=config, store=store or st.open_store(config.db))
    app.cleanup_ctx.append(_lifecycle)
    r = app.router
    r.add_post("/api/v1/alerts", post_alerts)
    r.add_get("/api/v1/plans", list_plans)
    r.add_get("/api/v1/plans/{plan_id}", get_plan)
    r.add_post("/api/v1/plans/{plan_id}/approve", approve_plan)
    r.add_post("/api/v1/plans/{plan_id}/reject", reject_plan)
    r.add_post(STATUS_PATH, plan_status)  # the orchestrator's status reports
    r.add_get("/api/v1/diagnoses", list_diagnoses)
    r.add_get("/api/v1/episodes", list_episodes)
    r.add_get("/api/v1/targets/blocked", blocked_knobs)
    r.add_get("/api/v1/targets/learned", learned)
    r.add_post("/api/v1/targets/clear", clear_target)
    r.add_get("/health", health)
    r.add_get("/health/detailed", health_detailed)
    r.add_get("/metrics", metrics)
    r.add_get("/openapi.json", openapi_json)
    return app
