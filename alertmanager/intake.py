"""Webhook intake: validate an Alertmanager v4 notification and turn it into alert records.

The body is checked against ``webhook.schema.json`` (unknown fields allowed). A problem a sender can fix
raises :class:`IntakeError` whose message names the offending field; the HTTP layer answers 400 with it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any

import jsonschema
from jsonschema import Draft202012Validator

SCHEMA_FILE = "webhook.schema.json"


class IntakeError(ValueError):
    """The notification is not a valid Alertmanager v4 webhook body; the message names the field."""


@dataclass(frozen=True)
class AlertRecord:
    """One alert of a notification; ``(fingerprint, starts_at)`` identifies its episode."""

    fingerprint: str
    status: str
    starts_at: str
    """RFC3339 exactly as Alertmanager sent it (HA peers marshal one Go time identically)."""
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

    @property
    def is_slo(self) -> bool:
        return self.component == "slo"

    def to_json(self) -> dict[str, Any]:
        return {
            "alertname": self.alertname, "fingerprint": self.fingerprint, "status": self.status,
            "startsAt": self.starts_at, "endsAt": self.ends_at, "labels": self.labels,
            "annotations": self.annotations, "generatorURL": self.generator_url,
        }


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


@cache
def _validator() -> Draft202012Validator:
    Draft202012Validator.check_schema(schema())
    return Draft202012Validator(schema())


def _field(path: Any) -> str:
    parts: list[str] = []
    for part in path:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        else:
            parts.append(("." if parts else "") + str(part))
    return "".join(parts) or "(body)"


def canonical_time(value: str) -> str:
    """RFC3339 in UTC with microseconds: one spelling per instant."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise IntakeError(f"{value!r} is not an RFC3339 timestamp") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse(body: bytes) -> Notification:
    """Validate a webhook body and return its alerts; raise :class:`IntakeError` naming what is wrong."""
    try:
        data = json.loads(body)
    except UnicodeDecodeError as exc:
        raise IntakeError(f"body is not UTF-8 JSON: {exc.reason}") from None
    except json.JSONDecodeError as exc:
        raise IntakeError(f"body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    error = jsonschema.exceptions.best_match(_validator().iter_errors(data))
    if error is not None:
        raise IntakeError(f"{_field(error.absolute_path)}: {error.message}")
    alerts: list[AlertRecord] = []
    for index, alert in enumerate(data["alerts"]):
        try:
            canonical_time(alert["startsAt"])
            starts_at = alert["startsAt"]
            ends_raw = alert.get("endsAt")
            ends_at = canonical_time(ends_raw) if ends_raw and not ends_raw.startswith("0001-") else None
        except IntakeError as exc:
            raise IntakeError(f"alerts[{index}]: {exc}") from None
        alerts.append(AlertRecord(
            fingerprint=alert["fingerprint"], status=alert["status"], starts_at=starts_at, ends_at=ends_at,
            labels=dict(alert["labels"]), annotations=dict(alert.get("annotations") or {}),
            generator_url=alert.get("generatorURL", ""),
        ))
    return Notification(
        status=data["status"], receiver=data.get("receiver", ""), group_key=data.get("groupKey", ""),
        reason=data.get("notification_reason", ""), alerts=tuple(alerts),
    )
