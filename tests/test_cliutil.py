"""The helpers every command line shares: listen addresses, durations, secrets, the one-line error."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from optiinfra.cliutil import (
    MAX_DURATION_MS,
    ConfigError,
    UsageError,
    format_duration_ms,
    parse_duration_ms,
    parse_listen,
    parse_seconds,
    read_secret,
)


@pytest.mark.parametrize(("text", "default_host", "expected"), [
    ("0.0.0.0:9400", None, ("0.0.0.0", 9400)),
    ("[::1]:9500", None, ("::1", 9500)),
    (":9095", "0.0.0.0", ("0.0.0.0", 9095)),
    (" 127.0.0.1:1 ", None, ("127.0.0.1", 1)),
])
def test_listen_addresses(text: str, default_host: str | None, expected: tuple[str, int]) -> None:
    assert parse_listen("--listen", text, default_host) == expected


@pytest.mark.parametrize("text", ["9400", ":9400", "host:", "host:0", "host:65536", "host:http", "host:-1", ""])
def test_bad_listen_addresses_name_the_flag(text: str) -> None:
    with pytest.raises(UsageError, match=r"^--listen .*HOST:PORT"):
        parse_listen("--listen", text)


def test_durations() -> None:
    assert [parse_seconds(x) for x in ("90", "0.5", "90s", "30m", "1h30m", "500ms", "1D")] == \
        [90, 0.5, 90, 1800, 5400, 0.5, 86400]
    for bad in ("soon", "1.5h", "-1s", "", "9" * 5000, "99999999999999999999h"):
        with pytest.raises(ValueError, match="not a duration"):
            parse_seconds(bad)
    with pytest.raises(ValueError, match="longer than any duration Prometheus can hold"):
        parse_duration_ms("300y")
    assert parse_duration_ms("292y") <= MAX_DURATION_MS


@given(st.integers(min_value=0, max_value=MAX_DURATION_MS // 2))
def test_duration_text_round_trips(ms: int) -> None:
    assert parse_duration_ms(format_duration_ms(ms)) == ms


def test_secrets_come_from_files_and_errors_never_show_them(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("  s3cret\n")
    assert read_secret("--token-file", token) == "s3cret"
    assert read_secret("--token-file", None) is None
    token.write_text("\n")
    with pytest.raises(UsageError, match="the file is empty"):
        read_secret("--token-file", token)
    token.write_bytes(b"s3cret\xff")
    with pytest.raises(UsageError, match="not UTF-8") as err:
        read_secret("--token-file", token)
    assert "s3cret" not in str(err.value)
    with pytest.raises(UsageError, match="cannot read it"):
        read_secret("--token-file", tmp_path / "missing")


def test_config_errors_are_usage_errors() -> None:
    assert issubclass(ConfigError, UsageError) and issubclass(ConfigError, ValueError)
