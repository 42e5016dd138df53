"""One redaction for every URL and DSN form the project prints (issue 12, finding 3)."""

from __future__ import annotations

import pytest

from optiinfra.secrets import redact_url


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql://u:p4ss@db:5432/optiinfra", "postgresql://u:***@db:5432/optiinfra"),
    ("postgresql://u@db/optiinfra?password=p4ss", "postgresql://u@db/optiinfra?password=***"),
    ("postgres://u:p4ss@db/x?sslmode=require&password=p4ss", "postgres://u:***@db/x?sslmode=***&password=***"),
    ("postgresql://u:p:4ss@db/x", "postgresql://u:***@db/x"),
    ("postgresql://u:p4ss@h1,h2:5433/x", "postgresql://u:***@h1,h2:5433/x"),
    ("postgresql:///x?host=/run/pg&password=p4ss", "postgresql:///x?host=***&password=***"),
    ("postgresql://u@db/x", "postgresql://u@db/x"),
    ("sqlite:///relative.db", "sqlite:///relative.db"),
    ("sqlite:////abs/path.db", "sqlite:////abs/path.db"),
    ("sqlite:///x.db?password=p4ss", "sqlite:///x.db?password=***"),
    ("http://orch:8080", "http://orch:8080"),
    ("http://T0KEN@orch:8080/api", "http://***@orch:8080/api"),
    ("https://user:p4ss@orch/", "https://user:***@orch/"),
    ("http://orch/?api_key=p4ss&x=1", "http://orch/?api_key=***&x=***"),
    ("http://orch/?p4ss", "http://orch/?***"),
    ("http://orch/#p4ss", "http://orch/#***"),
    ("http://u:p4ss@orch:1/a/b@c?k=p4ss#p4ss", "http://u:***@orch:1/a/b@c?k=***#***"),
    ("orch:8080", "orch:8080"),
    ("", ""),
])
def test_redact_url_hides_every_secret(url, shown):
    assert redact_url(url) == shown
    assert "p4ss" not in redact_url(url) and "T0KEN" not in redact_url(url)
