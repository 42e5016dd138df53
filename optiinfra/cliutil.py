"""What every command line and config of OptiInfra shares, defined once: the user-error types (one clear
line and exit status 2 in ``optiinfra.cli.main``), Prometheus durations, listen addresses and secrets read
from files.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path


class UsageError(Exception):
    """A mistake the user can fix; its message says how. ``optiinfra`` prints it as one line, exit 2."""


class ConfigError(UsageError, ValueError):
    """The config file (or an option standing for one of its keys) is unreadable or invalid."""


def report(problems: Sequence[str], failed: str, ok: str) -> int:
    """A check's outcome: each problem and then ``failed`` on stderr (exit status 1), or ``ok`` on stdout (0)."""
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(failed, file=sys.stderr)
        return 1
    print(ok)
    return 0


# ------------------------------------------------------------------------------------------------ durations

_DURATION_RE = re.compile(r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$")
_UNITS_MS = (("y", 365 * 86_400_000), ("w", 7 * 86_400_000), ("d", 86_400_000), ("h", 3_600_000),
             ("m", 60_000), ("s", 1000), ("ms", 1))
#: Prometheus keeps durations as int64 nanoseconds: nothing longer parses there.
MAX_DURATION_MS = (2**63 - 1) // 1_000_000
_MAX_DIGITS = 15


def parse_duration_ms(text: str) -> int:
    """A Prometheus duration (``5m``, ``1h30m``, ``0s``) in milliseconds; ValueError when malformed or longer
    than Prometheus can hold."""
    match = _DURATION_RE.match(text.strip()) if text else None
    if not match or not any(match.groups()):
        raise ValueError(f"{text!r} is not a Prometheus duration (e.g. 30s, 5m, 1h30m)")
    if any(g and len(g) > _MAX_DIGITS for g in match.groups()):
        raise ValueError(f"{text!r} is longer than any duration Prometheus can hold")
    ms = sum(int(g) * unit for g, (_, unit) in zip(match.groups(), _UNITS_MS, strict=True) if g)
    if ms > MAX_DURATION_MS:
        raise ValueError(f"{text!r} is longer than any duration Prometheus can hold (about 292 years)")
    return ms


def format_duration_ms(ms: int) -> str:
    """Milliseconds as the shortest Prometheus duration text (``90000`` -> ``1m30s``; 0 -> ``0s``)."""
    if ms == 0:
        return "0s"
    parts = []
    for suffix, unit in _UNITS_MS[2:]:  # d h m s ms: years/weeks only when written that way
        if ms >= unit:
            parts.append(f"{ms // unit}{suffix}")
            ms %= unit
    return "".join(parts)


def parse_seconds(text: str) -> float:
    """A command-line duration in seconds: a plain number (``90``, ``0.5``) or a Prometheus duration."""
    value = text.strip()
    if re.fullmatch(r"\d{1,15}(?:\.\d{1,9})?", value):
        return float(value)
    try:
        return parse_duration_ms(value.lower()) / 1000
    except ValueError:
        raise ValueError(f"{text!r} is not a duration (e.g. 90s, 30m, 1h)") from None


# ------------------------------------------------------------------------------- pairs, addresses, secrets

def key_value(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` of a command-line option (an argparse ``type``), both sides stripped."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"{text!r}: write it as key=value")
    return key.strip(), value.strip()


def parse_listen(flag: str, text: str, default_host: str | None = None) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9400`` for IPv6; ``:PORT`` when ``default_host`` is given)."""
    host, sep, port_text = text.strip().rpartition(":")
    host = host.strip("[]") or (default_host or "")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        example = f"{default_host or '0.0.0.0'}:9400"
        raise UsageError(f"{flag} {text!r}: write it as HOST:PORT with a port from 1 to 65535, e.g. {example}")
    return host, int(port_text)


def read_secret(flag: str, path: str | Path | None) -> str | None:
    """A secret from the file ``path`` (its content, stripped); None without a path. The flag's environment
    twin (``OPTIINFRA_TOKEN_FILE``) names the file, so secrets never sit in the environment or the argv.
    An unreadable or empty file is a UsageError that never shows the secret."""
    if not path:
        return None
    try:
        secret = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise UsageError(f"{flag} {path}: cannot read it ({exc.strerror or type(exc).__name__})") from None
    except UnicodeDecodeError:
        raise UsageError(f"{flag} {path}: the file is not UTF-8 text") from None
    if not secret:
        raise UsageError(f"{flag} {path}: the file is empty; put the token in it")
    return secret
