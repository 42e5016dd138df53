"""Webhook intake: validate an Alertmanager v4 notification and turn it into alert records.

The body is checked against ``webhook.schema.json`` (unknown fields allowed). A problem a sender can fix
raises :class:`IntakeError` whose message names the offending field; the HTTP layer answers 400 with it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any

import jsonschema
from jsonschema import Draft202012Validator

from optiinfra.taxonomy import SLO_BURN

SCHEMA_FILE = "webhook.schema.json"


class IntakeError(ValueError):
    """The notification is not a valid Alertmanager v4 webhook body; the message names the field."""


@dataclass(frozen=True)
class AlertRecord:
    """One alert of a notification; ``(fingerprint, starts_at)`` identifies its episode."""

    fingerprint: str
    status: str
    starts_at: str
    """RFC3339 in UTC, one spelling per instant (:func:`canonical_time`), so every spelling is one episode."""
    ends_at: str | None
    labels: dict[str, str]
    annotations: dict[str, str]
    generator_url: str

    @property
    def alertname(self) -> str:
        return self.labels.get("alertname", "")

    @property
    def bottleneck(self) -> str | None:
        return self.labels.get("bottleneck") or None

    @property
    def component(self) -> str | None:
        return self.labels.get("component") or None


def is_slo_burn(labels: Mapping[str, str]) -> bool:
    """The alert contract of an SLO burn alert (it rolls back plans for its scope, it is never planned):
    ``bottleneck="slo_burn"``, or ``component="slo"`` from rules written before that label existed."""
    return labels.get("bottleneck") == SLO_BURN or labels.get("component") == "slo"


@dataclass(frozen=True)
class Notification:
    status: str
    receiver: str
    group_key: str
    reason: str
    alerts: tuple[AlertRecord, ...]


@cache
def schema() -> dict[str, Any]:
    text = resources.files(__package__).joinpath(SCHEMA_FILE).read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def _inline_refs(node: Any, defs: dict[str, Any]) -> Any:
    """The schema with local ``$ref``s replaced by their definitions: same meaning, about twice as fast."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/") and len(node) == 1:
            return _inline_refs(defs[ref.removeprefix("#/$defs/")], defs)
        return {k: _inline_refs(v, defs) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_inline_refs(v, defs) for v in node]
    return node


@cache
def _validator() -> Draft202012Validator:
    Draft202012Validator.check_schema(schema())
    return Draft202012Validator(_inline_refs(schema(), schema().get("$defs", {})))


_TIMESTAMP = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$")
_ZERO_TIME = "0001-01-01T00:00:00Z"
"""Go's zero time: Alertmanager's endsAt of an alert that has not ended."""
_TOP_MAPS = ("groupLabels", "commonLabels", "commonAnnotations", "routeLabels")
_TOP_STRINGS = ("groupKey", "receiver", "externalURL", "notification_reason")


def _string_map(value: Any) -> bool:
    return type(value) is dict and all(type(v) is str for v in value.values())


def fast_valid(data: Any) -> bool:
    """A quick check that accepts only bodies the JSON Schema accepts (property-tested against it).

    Typical notifications pass here in a few microseconds; anything it does not accept goes to the full
    jsonschema validation, which decides and names the field.
    """
    if type(data) is not dict or data.get("version") != "4" or data.get("status") not in ("firing", "resolved"):
        return False
    if any(k in data and type(data[k]) is not str for k in _TOP_STRINGS):
        return False
    if len(data.get("groupKey", "")) > 65536 or any(k in data and not _string_map(data[k]) for k in _TOP_MAPS):
        return False
    truncated = data.get("truncatedAlerts", 0)
    if type(truncated) is not int or truncated < 0:
        return False
    alerts = data.get("alerts")
    if type(alerts) is not list or len(alerts) > 10000:
        return False
    for alert in alerts:
        if type(alert) is not dict or alert.get("status") not in ("firing", "resolved"):
            return False
        labels, fingerprint, starts = alert.get("labels"), alert.get("fingerprint"), alert.get("startsAt")
        if type(labels) is not dict or "alertname" not in labels or not _string_map(labels):
            return False
        if type(fingerprint) is not str or not 0 < len(fingerprint) <= 128:
            return False
        if type(starts) is not str or not _TIMESTAMP.match(starts):
            return False
        ends = alert.get("endsAt", "0001-01-01T00:00:00Z")
        if type(ends) is not str or not _TIMESTAMP.match(ends):
            return False
        if "annotations" in alert and not _string_map(alert["annotations"]):
            return False
        if type(alert.get("generatorURL", "")) is not str:
            return False
    return True


def _field(path: Any) -> str:
    parts: list[str] = []
    for part in path:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        else:
            parts.append(("." if parts else "") + str(part))
    return "".join(parts) or "(body)"


def canonical_time(value: str) -> str:
    """RFC3339 in UTC, spelled the way Go spells a UTC time (``RFC3339Nano``): one spelling per instant.

    ``2026-11-22T04:00:00.000+01:00`` becomes ``2026-11-22T03:00:00Z``; nanoseconds are kept (no float or
    microsecond rounding), trailing zeros of the fraction dropped. Raises :class:`IntakeError` for a value that
    is not RFC3339 or that leaves the years 0001-9999 once moved to UTC.
    """
    match = _TIMESTAMP.match(value)
    if match is None:
        raise IntakeError(f"{value[:40]!r} is not an RFC3339 timestamp")
    try:
        parsed = datetime.fromisoformat(value[:19] + ("+00:00" if match[2] == "Z" else match[2]))
    except ValueError as exc:
        raise IntakeError(f"{value!r} is not a valid RFC3339 time ({exc})") from None
    try:
        utc = parsed.astimezone(UTC)
    except OverflowError:
        raise IntakeError(f"{value!r} falls outside the years 0001-9999 in UTC") from None
    fraction = (match[1] or "").rstrip("0").rstrip(".")
    return utc.replace(tzinfo=None).isoformat(timespec="seconds") + fraction + "Z"


def unstorable(value: str) -> str | None:
    """Why no store can hold ``value`` (a NUL or a lone UTF-16 surrogate), or None."""
    if "\x00" in value:
        return "contains a NUL character"
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "contains a lone UTF-16 surrogate (not valid Unicode text)"
    return None


def _check_strings(data: dict[str, Any]) -> None:
    """Refuse, naming the field, any stored string (or label name) that PostgreSQL or SQLite cannot hold.

    Only the fields the receiver stores are walked (the schema has made them strings or string maps), so the
    walk is shallow whatever unknown fields the body carries.
    """
    fields: list[tuple[str, Any]] = [(k, data.get(k)) for k in _TOP_STRINGS]
    for index, alert in enumerate(data["alerts"]):
        fields += [(f"alerts[{index}].{k}", alert.get(k)) for k in ("fingerprint", "generatorURL")]
        for kind in ("labels", "annotations"):
            for key, value in (alert.get(kind) or {}).items():
                fields += [(f"alerts[{index}].{kind} name", key), (f"alerts[{index}].{kind}.{key[:40]}", value)]
    for where, value in fields:
        problem = unstorable(value) if isinstance(value, str) else None
        if problem:
            raise IntakeError(f"{where.encode('utf-8', 'backslashreplace').decode()}: {problem}")


#: A JSON escape that may decode to a NUL or a surrogate; bodies without one skip the string walk.
_SUSPECT_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")


def parse(body: bytes) -> Notification:
    """Validate a webhook body and return its alerts; raise :class:`IntakeError` naming what is wrong."""
    try:
        data = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise IntakeError(f"body is not UTF-8 JSON: {exc.reason} at byte {exc.start}") from None
    except json.JSONDecodeError as exc:
        raise IntakeError(f"body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise IntakeError("body is nested too deeply to be an Alertmanager notification") from None
    validator = _validator()
    if not fast_valid(data) and not validator.is_valid(data):
        error = jsonschema.exceptions.best_match(validator.iter_errors(data))
        if error is None:  # pragma: no cover - is_valid and iter_errors agree
            raise IntakeError("(body): does not match the Alertmanager v4 webhook schema")
        path = list(error.absolute_path)
        if error.validator == "required" and isinstance(error.instance, dict):
            path += [name for name in error.validator_value if name not in error.instance][:1]
        raise IntakeError(f"{_field(path)}: {error.message}")
    if _SUSPECT_ESCAPE.search(body):
        _check_strings(data)
    alerts: list[AlertRecord] = []
    for index, alert in enumerate(data["alerts"]):
        try:
            starts_at = canonical_time(alert["startsAt"])
        except IntakeError as exc:
            raise IntakeError(f"alerts[{index}].startsAt: {exc}") from None
        try:
            ends = canonical_time(alert.get("endsAt") or _ZERO_TIME)
        except IntakeError as exc:
            raise IntakeError(f"alerts[{index}].endsAt: {exc}") from None
        ends_at = None if ends == _ZERO_TIME else ends
        alerts.append(AlertRecord(
            fingerprint=alert["fingerprint"], status=alert["status"], starts_at=starts_at, ends_at=ends_at,
            labels=dict(alert["labels"]), annotations=dict(alert.get("annotations") or {}),
            generator_url=alert.get("generatorURL", ""),
        ))
    return Notification(
        status=data["status"], receiver=data.get("receiver", ""), group_key=data.get("groupKey", ""),
        reason=data.get("notification_reason", ""), alerts=tuple(alerts),
    )
