"""A bounded schemathesis run against the receiver's own ``/openapi.json`` (issue 12): for every documented
operation, generated requests (valid and invalid) never get a 5xx, and every response matches the document."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from conftest import free_port
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from receiver_kit import TOKEN
from schemathesis.checks import positive_data_acceptance


@pytest.fixture(scope="module")
def receiver_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp: Path = tmp_path_factory.mktemp("schemathesis")
    (tmp / "token").write_text(TOKEN)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "optiinfra.cli", "--log-level", "error", "receiver", "--orchestrator-url",
         "http://127.0.0.1:9", "--listen", f"127.0.0.1:{port}", "--db", f"sqlite:///{tmp}/r.db",
         "--token-file", str(tmp / "token")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, "the receiver exited"
            try:
                urllib.request.urlopen(f"{url}/health", timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the receiver did not come up"
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def api(receiver_url: str) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{receiver_url}/openapi.json")


@pytest.mark.slow
def test_no_server_error_and_every_response_documented(api: schemathesis.BaseSchema) -> None:
    # the Python API, not the pytest plugin (which does not load under this pytest): each operation in turn
    headers = {"Authorization": f"Bearer {TOKEN}"}
    operations = [result.ok() for result in api.get_all_operations()]
    statuses: list[int] = []
    assert len(operations) == 14  # every route (a test checks routes == documented paths)
    for operation, mode in itertools.product(operations, schemathesis.GenerationMode):
        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=15, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case: schemathesis.Case) -> None:
            # schema-valid but refused (a NUL in a label, 2026-13-45 as a date) is a 400 by design: not checked
            response = case.call_and_validate(headers=headers, excluded_checks=[positive_data_acceptance])
            statuses.append(response.status_code)

        try:
            check()
        except Unsatisfiable:  # no invalid request exists for an operation without inputs (GET /health)
            assert mode is schemathesis.GenerationMode.NEGATIVE and not operation.body and not operation.query
    # the run reached the receiver: accepted and refused requests alike (not a run that checked nothing)
    assert len(statuses) >= 13 * 10 and {200, 400} <= set(statuses), sorted(set(statuses))



def test_the_documented_notification_is_the_schema_intake_validates_against() -> None:
    from optiinfra.alertmanager.app import openapi
    from optiinfra.alertmanager.intake import schema as webhook

    components = {"alert": "WebhookAlert", "stringMap": "WebhookStringMap", "timestamp": "WebhookTimestamp"}
    text = json.dumps(webhook())
    for name, component in components.items():
        text = text.replace(f'"#/$defs/{name}"', f'"#/components/schemas/{component}"')
    expected = json.loads(text)
    spec = openapi()["components"]["schemas"]
    for name, component in components.items():
        assert spec[component] == expected["$defs"][name]
    assert spec["Notification"]["properties"] == expected["properties"]
    assert spec["Notification"]["required"] == expected["required"]
