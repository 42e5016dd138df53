"""Webhook intake parsing: the JSON Schema decides; the fast path never accepts what the schema refuses."""

from __future__ import annotations

import copy
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs
from receiver_kit import alert, notification

from optiinfra.alertmanager import intake

JSON_VALUES = hs.recursive(
    hs.none() | hs.booleans() | hs.integers(-3, 3) | hs.floats(allow_nan=False, allow_infinity=False)
    | hs.sampled_from(["", "4", "firing", "resolved", "2026-11-22T03:00:00Z", "2026-11-22T03:00:00Z\n", "x" * 129,
                       "2026-11-22 03:00:00", "alertname"]),
    lambda inner: hs.lists(inner, max_size=3) | hs.dictionaries(
        hs.sampled_from(["alertname", "status", "labels", "x"]), inner, max_size=3),
    max_leaves=6)

PATHS = [
    ("version",), ("status",), ("groupKey",), ("truncatedAlerts",), ("commonLabels",), ("commonLabels", "pod"),
    ("groupLabels",), ("routeLabels",), ("notification_reason",), ("externalURL",), ("alerts",),
    ("alerts", 0), ("alerts", 0, "status"), ("alerts", 0, "labels"), ("alerts", 0, "labels", "alertname"),
    ("alerts", 0, "labels", "pod"), ("alerts", 0, "annotations"), ("alerts", 0, "annotations", "summary"),
    ("alerts", 0, "startsAt"), ("alerts", 0, "endsAt"), ("alerts", 0, "fingerprint"),
    ("alerts", 0, "generatorURL"), ("alerts", 0, "extra"),
]


def _mutate(base: dict, path: tuple, value: object, delete: bool) -> dict:
    data = copy.deepcopy(base)
    node = data
    for part in path[:-1]:
        node = node[part]
    if delete:
        if isinstance(node, dict):
            node.pop(path[-1], None)
    else:
        node[path[-1]] = value
    return data


@settings(max_examples=400, deadline=None)
@given(path=hs.sampled_from(PATHS), value=JSON_VALUES, delete=hs.booleans())
def test_fast_path_accepts_only_what_the_schema_accepts(path, value, delete):
    data = _mutate(notification(alert("fp")), path, value, delete)
    if intake.fast_valid(data):
        assert intake._validator().is_valid(data), data


def test_typical_notifications_take_the_fast_path():
    for body in (notification(alert("a"), alert("b", status="resolved")),
                 {**notification(alert("c")), "notification_reason": "first notification", "routeLabels": {}}):
        assert intake.fast_valid(body)
        assert intake._validator().is_valid(body)


@pytest.mark.parametrize(("mutation", "field"), [
    (lambda d: d.update(version=4), "version"),
    (lambda d: d.pop("alerts"), "alerts"),
    (lambda d: d["alerts"][0]["labels"].pop("alertname"), "alerts[0].labels"),
    (lambda d: d["alerts"][0].update(startsAt="yesterday"), "alerts[0].startsAt"),
    (lambda d: d["alerts"][0].update(fingerprint=""), "alerts[0].fingerprint"),
    (lambda d: d["commonLabels"].update(pod=["x"]), "commonLabels.pod"),
    (lambda d: d["alerts"][0].update(startsAt="2026-13-45T99:99:99Z"), "alerts[0]"),
])
def test_errors_name_the_field(mutation, field):
    data = notification(alert("fp"))
    mutation(data)
    with pytest.raises(intake.IntakeError) as err:
        intake.parse(json.dumps(data).encode())
    assert str(err.value).startswith(field)


def test_bodies_that_are_not_json():
    for body, text in ((b"\xff\xfe", "UTF-8"), (b"{", "not valid JSON"), (b"[]", "(body)")):
        with pytest.raises(intake.IntakeError, match=text.replace("(", r"\(").replace(")", r"\)")):
            intake.parse(body)


def test_unknown_fields_are_allowed_and_start_keeps_its_nanoseconds():
    data = notification(alert("fp", "2026-11-22T03:00:00.123456789Z"))
    data["someFutureField"] = {"a": 1}
    data["alerts"][0]["newAlertField"] = [1, 2]
    note = intake.parse(json.dumps(data).encode())
    assert note.alerts[0].starts_at == "2026-11-22T03:00:00.123456789Z"
    assert note.alerts[0].ends_at is None
    assert note.alerts[0].bottleneck == "kv_cache_pressure"


@pytest.mark.parametrize(("spelled", "canonical"), [
    ("2026-11-22T03:00:00Z", "2026-11-22T03:00:00Z"),
    ("2026-11-22T03:00:00.000Z", "2026-11-22T03:00:00Z"),
    ("2026-11-22T04:00:00+01:00", "2026-11-22T03:00:00Z"),
    ("2026-11-22T02:30:00.120-00:30", "2026-11-22T03:00:00.12Z"),
    ("2026-11-22T03:00:00.123456789Z", "2026-11-22T03:00:00.123456789Z"),
    ("2026-11-23T00:00:00+21:00", "2026-11-22T03:00:00Z"),
    ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00Z"),
])
def test_one_spelling_per_instant(spelled, canonical):
    assert intake.canonical_time(spelled) == canonical


@pytest.mark.parametrize("bad", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00", "2026-13-01T00:00:00Z",
                                 "2026-11-22T03:00:00+24:00", "2026-11-22 03:00:00Z", "yesterday"])
def test_times_no_utc_instant_can_hold_are_refused(bad):
    with pytest.raises(intake.IntakeError):
        intake.canonical_time(bad)
