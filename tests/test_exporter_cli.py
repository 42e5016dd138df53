"""``optiinfra exporter``: flag validation (one clear line, exit 2), env twins, and the real sidecar process."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import DATA, REPO, free_port, parse_samples

from optiinfra.cli import UsageError, build_parser, main
from optiinfra.exporter.cli import build_config
from optiinfra.exporter.server import COLLECTORS, build_collectors

OPTIINFRA = Path(sys.executable).parent / "optiinfra"


def config_for(*argv: str) -> object:
    args = build_parser().parse_args(["exporter", *argv])
    return build_config(args)


@pytest.mark.parametrize(("argv", "message"), [
    (["--upstream", "ftp://host/metrics"], "http:// or https://"),
    (["--upstream", "localhost:8000"], "http:// or https://"),
    (["--listen", "9400"], "HOST:PORT"),
    (["--listen", "0.0.0.0:99999"], "HOST:PORT"),
    (["--label", "1bad=x"], "not a valid label name"),
    (["--label", "model=x"], "set by the exporter"),
    (["--engine-config", "colour=blue"], "unknown key"),
    (["--scrape-timeout", "0"], "must be > 0"),
    (["--engine-pid", "-4"], "process id"),
    (["--gpu-uuids", "GPU-abc,nvidia0"], "neither a GPU index"),
])
def test_usage_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(UsageError, match=message):
        config_for(*argv)
    assert main(["exporter", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("optiinfra exporter: error:") and message in err[0]


@pytest.mark.parametrize("argv", [["--log-file", "/var/log/x.log"], ["--log-file", "/x:nginx"], ["--label", "novalue"],
                                  ["--engine", "llamacpp"]])
def test_argparse_errors(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["exporter", *argv])
    assert exc.value.code == 2


def test_config_and_env_twins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPTIINFRA_UPSTREAM", "http://127.0.0.1:8000/metrics")
    monkeypatch.setenv("OPTIINFRA_LABEL", "cluster=eu-1,team=ml")
    monkeypatch.setenv("OPTIINFRA_NO_GPU", "true")
    config = config_for("--engine", "tgi", "--engine-config", "max_num_seqs=64", "--listen", "[::1]:9500",
                        "--log-file", "/var/log/engine.log:engine")
    assert config.upstream == "http://127.0.0.1:8000/metrics"  # type: ignore[attr-defined]
    assert config.labels == {"cluster": "eu-1", "team": "ml"}  # type: ignore[attr-defined]
    assert config.gpu is False and config.host is True  # type: ignore[attr-defined]
    assert (config.listen_host, config.listen_port) == ("::1", 9500)  # type: ignore[attr-defined]
    assert config.engine_config == {"max_num_seqs": "64"}  # type: ignore[attr-defined]
    assert config.log_files == (("/var/log/engine.log", "engine"),)  # type: ignore[attr-defined]
    assert config.collector_timeout == 6.0  # type: ignore[attr-defined]


def test_gpu_attribution_settings_and_env_twins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPTIINFRA_GPU_UUIDS", "GPU-6fa3e2d1-0000-1111-2222-333333333333,1")
    monkeypatch.setenv("OPTIINFRA_NODE_NAME", "gpu-node-7")
    monkeypatch.setenv("OPTIINFRA_ENGINE_PROCESS", "vllm")
    config = config_for()
    assert config.gpu_uuids == "GPU-6fa3e2d1-0000-1111-2222-333333333333,1"  # type: ignore[attr-defined]
    assert config.node_name == "gpu-node-7"  # type: ignore[attr-defined]
    assert config.engine_process == "vllm"  # type: ignore[attr-defined]
    assert config_for("--gpu-uuids", " ").gpu_uuids is None  # type: ignore[attr-defined]  # empty: not set
    gpu, host = build_collectors(config_for("--engine-process", "vllm"))  # type: ignore[arg-type]
    assert gpu.name == "gpu" and host.name == "host"
    assert gpu._engine is host.engine  # type: ignore[attr-defined]  # one engine process for both


def test_registry_switches() -> None:
    assert COLLECTORS == ("engine", "gpu", "host", "logs")
    assert [c.name for c in build_collectors(config_for())] == ["gpu", "host"]  # type: ignore[arg-type]  # on by default
    no_upstream = config_for("--no-gpu")
    assert [c.name for c in build_collectors(no_upstream)] == ["host"]  # type: ignore[arg-type]
    with_upstream = config_for("--upstream", "http://127.0.0.1:1", "--no-gpu", "--no-host")
    assert [c.name for c in build_collectors(with_upstream)] == ["engine"]  # type: ignore[arg-type]
    with_logs = config_for("--no-gpu", "--log-file", "/var/log/engine.log:engine", "--kmsg")
    assert [c.name for c in build_collectors(with_logs)] == ["host", "logs"]  # type: ignore[arg-type]


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _wait_up(port: int, sidecar: subprocess.Popen[str]) -> str:
    """The sidecar's /health body once it answers 200."""
    deadline = time.monotonic() + 20
    while True:
        try:
            status, body = _get(f"http://127.0.0.1:{port}/health")
            if status == 200:
                return body
        except OSError:
            pass
        assert sidecar.poll() is None, sidecar.communicate()[1]
        assert time.monotonic() < deadline, "sidecar did not come up"
        time.sleep(0.1)


def test_sidecar_process(tmp_path: Path) -> None:
    """The real command, as the demo and users run it, against a real HTTP server serving a vLLM scrape."""
    payload = (DATA / "engines" / "vllm-0.26.0-llm-d-router-testdata-vllm-none.prom").read_bytes()
    (tmp_path / "metrics").write_bytes(payload)
    up_port, port = free_port(), free_port()
    upstream = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(up_port), "--bind", "127.0.0.1", "--directory", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    env = {**os.environ, "OPTIINFRA_NO_GPU": "1"}
    sidecar = subprocess.Popen(
        [str(OPTIINFRA), "exporter", "--upstream", f"http://127.0.0.1:{up_port}/metrics",
         "--listen", f"127.0.0.1:{port}", "--no-host"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO,
    )
    try:
        assert _wait_up(port, sidecar) == '{"status": "ok"}'
        for _ in range(50):  # the upstream http.server may need a moment too
            status, text = _get(f"http://127.0.0.1:{port}/metrics")
            if 'llm_upstream_up{engine="vllm"} 1' in text:
                break
            time.sleep(0.1)
        assert status == 200
        samples = parse_samples(text)
        assert samples[("llm_kv_cache_capacity_tokens", frozenset(
            {("engine", "vllm"), ("model", "Qwen/Qwen3-0.6B"), ("dp_rank", "0")}))] == (74272 - 1) * 16
        assert samples[("optiinfra_collector_success", frozenset({("collector", "engine")}))] == 1
    finally:
        sidecar.send_signal(signal.SIGTERM)
        try:
            _, err = sidecar.communicate(timeout=10)
        finally:
            upstream.terminate()
            upstream.wait(timeout=10)
    assert sidecar.returncode == 0, err
    assert '"message":"exporter listening"' in err  # structured JSON logs on stderr


def test_bad_listen_address_is_a_usage_error(tmp_path: Path) -> None:
    proc = subprocess.run(
        [str(OPTIINFRA), "exporter", "--listen", "203.0.113.7:9400", "--no-gpu", "--no-host"],
        capture_output=True, text=True, timeout=30, check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert "cannot listen on 203.0.113.7:9400" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_args_namespace_defaults() -> None:
    args = build_parser().parse_args(["exporter"])
    assert isinstance(args, argparse.Namespace)
    assert (args.upstream, args.engine, args.listen, args.passthrough) == (None, "auto", "0.0.0.0:9400", False)


def test_sigterm_exits_promptly_with_a_stalled_client_a_stalled_upstream_and_a_fifo_log(tmp_path: Path) -> None:
    """SIGTERM with a /metrics request in flight (the upstream never answers), a client stalled in the middle of
    its request and a FIFO as a log file: the sidecar exits cleanly well inside Kubernetes' 30 s grace period
    (main waited 60 s for the request and forever for the FIFO)."""
    fifo = tmp_path / "engine.log"
    os.mkfifo(fifo)
    stalled_upstream = socket.create_server(("127.0.0.1", 0))  # accepts, never answers
    up_port, port = stalled_upstream.getsockname()[1], free_port()
    sidecar = subprocess.Popen(
        [str(OPTIINFRA), "exporter", "--upstream", f"http://127.0.0.1:{up_port}/metrics", "--engine", "vllm",
         "--listen", f"127.0.0.1:{port}", "--no-gpu", "--no-host", "--log-file", f"{fifo}:engine",
         "--scrape-timeout", "60", "--collector-timeout", "60"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=REPO,
    )
    clients: list[socket.socket] = []
    try:
        _wait_up(port, sidecar)
        in_flight = socket.create_connection(("127.0.0.1", port))
        in_flight.sendall(b"GET /metrics HTTP/1.1\r\nHost: sidecar\r\n\r\n")
        stalled = socket.create_connection(("127.0.0.1", port))
        stalled.sendall(b"POST /metrics HTTP/1.1\r\nHost: sidecar\r\nContent-Length: 1000\r\n\r\npart of a bo")
        clients += [in_flight, stalled]
        time.sleep(0.5)  # both requests reach the sidecar
        started = time.monotonic()
        sidecar.send_signal(signal.SIGTERM)
        _, err = sidecar.communicate(timeout=10)
        took = time.monotonic() - started
    finally:
        if sidecar.poll() is None:
            sidecar.kill()
            sidecar.communicate()
        for client in clients:
            client.close()
        stalled_upstream.close()
    assert sidecar.returncode == 0, err
    assert "Traceback" not in err
    print(f"SIGTERM to exit: {took:.2f}s")
