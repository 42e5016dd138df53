"""The entry point's environment twins: one variable never sets two commands' flags."""

from __future__ import annotations

import argparse
from collections import defaultdict

import pytest

from optiinfra.cli import SCOPED_DESTS, build_parser, env_name


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    group = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(group.choices)


def test_scoped_twins_are_exactly_the_flags_commands_disagree_on() -> None:
    shapes: dict[str, set[tuple[object, ...]]] = defaultdict(set)
    for sub in _commands(build_parser()).values():
        for action in sub._actions:
            if action.option_strings and action.default is not argparse.SUPPRESS and action.dest != "help":
                shapes[action.dest].add((repr(action.default), tuple(action.choices or ()), repr(action.type)))
    assert {dest for dest, seen in shapes.items() if len(seen) > 1} == SCOPED_DESTS


def test_a_scoped_twin_sets_only_its_own_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPTIINFRA_RECEIVER_MAX_BODY_BYTES", "4096")
    monkeypatch.setenv("OPTIINFRA_MAX_BODY_BYTES", "1")  # the unscoped name of a scoped flag is no twin
    parser = build_parser()
    receiver = parser.parse_args(["receiver", "--orchestrator-url", "http://127.0.0.1:1"])
    exporter = parser.parse_args(["exporter"])
    assert receiver.max_body_bytes == 4096
    assert exporter.max_body_bytes == 20 * 1024 * 1024
    assert env_name("max_body_bytes", "receiver") == "OPTIINFRA_RECEIVER_MAX_BODY_BYTES"
    assert env_name("upstream", "exporter") == "OPTIINFRA_UPSTREAM"


def test_the_exporters_engine_variable_does_not_break_the_simulator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPTIINFRA_EXPORTER_ENGINE", "auto")  # a value the simulator does not accept
    parser = build_parser()
    assert parser.parse_args(["simulate"]).engine == "vllm"
    assert parser.parse_args(["exporter"]).engine == "auto"
