"""Child processes for the demo and the end-to-end tests: real Prometheus, Alertmanager and our own commands.

Every process runs in one temporary directory on ports chosen free, logs to a file there, and is stopped
(SIGTERM, then SIGKILL) when the ``Stack`` closes — on success, on failure and on Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

INSTALL_HINT = (
    "install the Debian packages: apt-get install prometheus prometheus-alertmanager "
    "(or put the official release binaries on PATH)"
)


class StackError(Exception):
    """A component could not be started or did not become ready; the message says which and why."""


def find_binary(*names: str) -> str:
    """The first of ``names`` on PATH, or a StackError saying how to install it."""
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    raise StackError(f"{names[0]} not found on PATH: {INSTALL_HINT}")


def free_port() -> int:
    """A free loopback port. Parallel test workers set ``OPTIINFRA_PORT_SLOT=k/n`` and take only ports with
    ``port // 2 % n == k``, so no two workers are handed the same one (bind(0) may prefer odd ports: ``// 2``)."""
    slot, _, count = os.environ.get("OPTIINFRA_PORT_SLOT", "0/1").partition("/")
    for _ in range(1000):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port // 2 % int(count) == int(slot):
            break
    return port


def optiinfra_command(*args: str) -> list[str]:
    """Run one of our own sub-commands with the same interpreter (works without the console script)."""
    return [sys.executable, "-m", "optiinfra.cli", "--log-format", "text", *args]


@dataclass
class Child:
    name: str
    process: asyncio.subprocess.Process
    log_path: Path

    def check_alive(self) -> None:
        """Raise a StackError with the end of its log once the process has exited."""
        if self.process.returncode is not None:
            raise StackError(f"{self.name} exited with status {self.process.returncode}:\n{self.tail()}")

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Stack:
    """A set of child processes sharing one working directory."""

    workdir: Path
    children: list[Child] = field(default_factory=list)

    async def spawn(self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None) -> Child:
        log_path = self.workdir / f"{name}.log"
        with log_path.open("wb") as log_file:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=asyncio.subprocess.STDOUT,
                cwd=self.workdir,
                env={**os.environ, **(env or {})},
                start_new_session=True,
            )
        child = Child(name, process, log_path)
        self.children.append(child)
        return child

    async def wait_ready(self, child: Child, url: str, timeout: float = 30.0) -> None:
        """Poll ``url`` until it answers 2xx; fail early with the child's log if it exits."""
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            while time.monotonic() < deadline:
                child.check_alive()
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(url) as response:
                        if response.status < 300:
                            return
                await asyncio.sleep(0.2)
        raise StackError(f"{child.name} not ready at {url} after {timeout:.0f}s:\n{child.tail()}")

    def check_alive(self) -> None:
        for child in self.children:
            child.check_alive()

    async def close(self) -> None:
        """Stop every child: SIGTERM to its process group, SIGKILL after a grace period."""
        for child in reversed(self.children):
            if child.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.process.pid, signal.SIGTERM)
        for child in reversed(self.children):
            try:
                await asyncio.wait_for(child.process.wait(), timeout=5)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.process.pid, signal.SIGKILL)
                await child.process.wait()
        self.children.clear()


def prometheus_config(targets: Sequence[tuple[str, Mapping[str, str]]], rule_files: Sequence[Path],
                      alertmanager: str | None, interval: str = "1s") -> dict[str, Any]:
    """A Prometheus config scraping each ``(host:port, target labels)`` as job ``optiinfra``."""
    config: dict[str, Any] = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval, "scrape_timeout": interval},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [{"job_name": "optiinfra", "static_configs": [
            {"targets": [address], "labels": dict(labels)} for address, labels in targets]}],
    }
    if alertmanager:
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    return config


async def start_prometheus(stack: Stack, config: Mapping[str, Any], port: int, name: str = "prometheus") -> Child:
    """Start Prometheus; its rule files are loaded only once every target has been scraped.

    Prometheus applies new scrape targets on a 5 s tick, so right after start ``up`` is absent for a few
    seconds; with the demo profile's 5 s ``for`` an ``absent(up)`` alert would fire on every start.
    """
    rule_files = list(config.get("rule_files", []))
    config_path = stack.workdir / f"{name}.yml"
    child = await _start_server(stack, name, port, yaml.safe_dump({**config, "rule_files": []}, sort_keys=False),
                                binary=find_binary("prometheus"), storage_flag="--storage.tsdb.path",
                                flags=["--web.enable-lifecycle"])
    base = f"http://127.0.0.1:{port}"
    if rule_files:
        targets = sum(len(sc["targets"]) for job in config.get("scrape_configs", [])
                      for sc in job.get("static_configs", []))
        await _wait_scraped(stack, child, base, targets)
        config_path.write_text(yaml.safe_dump(dict(config), sort_keys=False), encoding="utf-8")
        async with (aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
                    session.post(f"{base}/-/reload") as response):
            if response.status != 200:
                raise StackError(f"Prometheus refused the rule files: {await response.text()}")
    return child


async def _wait_scraped(stack: Stack, child: Child, base: str, targets: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while time.monotonic() < deadline:
            stack.check_alive()
            if len(await prometheus_query(session, base, "up == 1")) >= targets:
                return
            await asyncio.sleep(0.25)
    raise StackError(f"Prometheus did not scrape its {targets} target(s) within {timeout:.0f}s:\n{child.tail()}")


async def start_alertmanager(stack: Stack, config_text: str, port: int, name: str = "alertmanager") -> Child:
    return await _start_server(stack, name, port, config_text,
                               binary=find_binary("prometheus-alertmanager", "alertmanager"),
                               storage_flag="--storage.path", flags=["--cluster.listen-address="])


async def _start_server(stack: Stack, name: str, port: int, config_text: str, *, binary: str, storage_flag: str,
                        flags: Sequence[str]) -> Child:
    """Start a Prometheus-style server (config file, data directory, ``/-/ready``) on ``port``."""
    config_path = stack.workdir / f"{name}.yml"
    config_path.write_text(config_text, encoding="utf-8")
    data = stack.workdir / f"{name}-data"
    data.mkdir(exist_ok=True)
    child = await stack.spawn(name, [binary, f"--config.file={config_path}", f"{storage_flag}={data}",
                                     f"--web.listen-address=127.0.0.1:{port}", *flags, "--log.level=warn"])
    await stack.wait_ready(child, f"http://127.0.0.1:{port}/-/ready", timeout=60)
    return child


async def get_json(session: aiohttp.ClientSession, url: str, **params: str) -> dict[str, Any]:
    """The JSON object a GET answers with 200; empty on any error, which the callers poll past."""
    try:
        async with session.get(url, params=params) as response:
            if response.status != 200:
                return {}
            body = await response.json()
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


async def prometheus_query(session: aiohttp.ClientSession, base: str, expr: str) -> list[dict[str, Any]]:
    """Instant query; returns the result vector (empty on any error)."""
    body = await get_json(session, f"{base}/api/v1/query", query=expr)
    if body.get("status") != "success":
        return []
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


async def firing_alerts(session: aiohttp.ClientSession, base: str) -> list[dict[str, Any]]:
    """Alerts Prometheus currently holds as firing."""
    body = await get_json(session, f"{base}/api/v1/alerts")
    alerts: list[dict[str, Any]] = body.get("data", {}).get("alerts", [])
    return [a for a in alerts if a.get("state") == "firing"]
