"""Deterministic generator of ordinary (healthy) engine and kernel log lines, for the log-signature tests and
the log benchmark. Formats follow the captured logs in tests/data/logs and the engines' normal output;
values vary with a seeded RNG. Lines with scary-but-benign words are included on purpose ("error_rate=0",
"no errors", "NCCL version", "oom_score_adj", "Xid" in unrelated text, "Waiting for application startup").
"""

from __future__ import annotations

import random
import shutil
import time
from pathlib import Path

MODELS = ("meta-llama/Llama-3.1-8B-Instruct", "Qwen/Qwen2.5-7B-Instruct", "mistralai/Mistral-7B-Instruct-v0.3",
          "openai/gpt-oss-20b", "deepseek-ai/DeepSeek-R1-Distill-Qwen-14B")
PATHS = ("/v1/chat/completions", "/v1/completions", "/health", "/metrics", "/v1/models", "/generate")


def _ip(rng: random.Random) -> str:
    return f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}:{rng.randint(1024, 65535)}"


def _vllm_ts(rng: random.Random, i: int) -> str:
    return (f"{(i // 600) % 12 + 1:02d}-{(i // 50) % 28 + 1:02d} "
            f"{(i // 3600) % 24:02d}:{(i // 60) % 60:02d}:{i % 60:02d}")


def vllm_lines(rng: random.Random, n: int) -> list[str]:
    """A vLLM V1 start-up (ends ready), then serving output: stats, access log, request lines."""
    model = rng.choice(MODELS)
    tp = rng.choice((1, 2, 4, 8))
    pid = rng.randint(100, 99999)
    api = f"(APIServer pid={pid}) "
    core = f"(EngineCore_DP0 pid={pid + 7}) "
    t = 0

    def ts() -> str:
        return _vllm_ts(rng, t)

    out = [
        f"{api}INFO {ts()} [api_server.py:1885] vLLM API server version 0.11.{rng.randint(0, 2)}",
        f"{api}INFO {ts()} [utils.py:328] non-default args: {{'model': '{model}', 'tensor_parallel_size': {tp}, "
        f"'gpu_memory_utilization': 0.9, 'max_model_len': {rng.choice((4096, 8192, 32768))}}}",
        f"{api}INFO {ts()} [model.py:547] Resolved architecture: LlamaForCausalLM",
        f"{api}INFO {ts()} [model.py:1510] Using max model len 8192",
        f"{api}INFO {ts()} [scheduler.py:205] Chunked prefill is enabled with max_num_batched_tokens=8192.",
        f"{core}INFO {ts()} [core.py:644] Waiting for init message from front-end.",
        f"{core}INFO {ts()} [core.py:77] Initializing a V1 LLM engine (v0.11.0) with config: model='{model}', "
        f"speculative_config=None, tokenizer='{model}', skip_tokenizer_init=False, tokenizer_mode=auto, "
        f"dtype=torch.bfloat16, max_seq_len=8192, tensor_parallel_size={tp}, enforce_eager=False, "
        "kv_cache_dtype=auto, seed=0, enable_prefix_caching=True",
        f"{core}INFO {ts()} [parallel_state.py:1208] rank 0 in world size {tp} is assigned as DP rank 0, PP rank 0, "
        "TP rank 0, EP rank 0",
        f"{core}INFO {ts()} [pynccl.py:70] vLLM is using nccl==2.27.3",
        f"{core}INFO {ts()} [gpu_model_runner.py:2602] Starting to load model {model}...",
        f"{core}INFO {ts()} [cuda.py:366] Using Flash Attention backend on V1 engine.",
        f"{core}INFO {ts()} [default_loader.py:267] Loading weights took {rng.uniform(2, 90):.2f} seconds",
        f"{core}INFO {ts()} [gpu_model_runner.py:2653] Model loading took {rng.uniform(4, 70):.4f} GiB and "
        f"{rng.uniform(3, 120):.6f} seconds",
        f"{core}INFO {ts()} [backends.py:548] Using cache directory: /root/.cache/vllm/torch_compile_cache/"
        f"{rng.getrandbits(40):010x}/rank_0_0/backbone for vLLM's torch.compile",
        f"{core}INFO {ts()} [monitor.py:34] torch.compile takes {rng.uniform(5, 40):.2f} s in total",
        f"{core}INFO {ts()} [gpu_worker.py:298] Available KV cache memory: {rng.uniform(5, 60):.2f} GiB",
        f"{core}INFO {ts()} [executor_base.py:113] # GPU blocks: {rng.randint(1, 60000)}, # CPU blocks: "
        f"{rng.randint(0, 4096)}",
        f"{core}INFO {ts()} [kv_cache_utils.py:1087] GPU KV cache size: {rng.randint(20000, 900000):,} tokens",
        f"{core}INFO {ts()} [kv_cache_utils.py:1091] Maximum concurrency for 8,192 tokens per request: "
        f"{rng.uniform(2, 100):.2f}x",
        f"{core}INFO {ts()} [gpu_model_runner.py:3480] Graph capturing finished in {rng.randint(5, 40)} secs, took "
        f"{rng.uniform(0.1, 2):.2f} GiB",
        f"{core}INFO {ts()} [core.py:210] init engine (profile, create kv cache, warmup model) "
        f"took {rng.uniform(20, 200):.2f} seconds",
        f"{api}INFO {ts()} [loggers.py:142] Engine 000: vllm cache_config_info with initialization after "
        "num_gpu_blocks "
        f"is: {rng.randint(2000, 60000)}",
        f"{api}INFO {ts()} [api_server.py:1680] Supported_tasks: ['generate']",
        f"{api}INFO {ts()} [api_server.py:1957] Starting vLLM API server 0 on http://0.0.0.0:8000",
        f"{api}INFO {ts()} [launcher.py:29] Available routes are:",
        f"{api}INFO {ts()} [launcher.py:37] Route: /health, Methods: GET",
        f"{api}INFO {ts()} [launcher.py:37] Route: /metrics, Methods: GET",
        f"{api}INFO:     Started server process [{pid}]",
        f"{api}INFO:     Waiting for application startup.",
        f"{api}INFO:     Application startup complete.",
    ]
    while len(out) < n:
        t += rng.randint(0, 3)
        r = rng.random()
        if r < 0.45:
            status = rng.choice(("200 OK", "200 OK", "200 OK", "400 Bad Request", "404 Not Found"))
            out.append(f'{api}INFO:     {_ip(rng)} - "{rng.choice(("POST", "GET"))} {rng.choice(PATHS)} '
                       f'HTTP/1.1" {status}')
        elif r < 0.7:
            out.append(
                f"{api}INFO {ts()} [loggers.py:123] Engine 000: Avg prompt throughput: {rng.uniform(0, 9000):.1f} "
                f"tokens/s, Avg generation throughput: {rng.uniform(0, 3000):.1f} tokens/s, Running: "
                f"{rng.randint(0, 64)} reqs, Waiting: {rng.randint(0, 5)} reqs, GPU KV cache usage: "
                f"{rng.uniform(0, 99):.1f}%, Prefix cache hit rate: {rng.uniform(0, 90):.1f}%")
        elif r < 0.85:
            rid = f"chatcmpl-{rng.getrandbits(64):016x}"
            out.append(f"{api}INFO {ts()} [logger.py:43] Received request {rid}: prompt: 'Summarise the "
                       f"incident: error_rate=0, no errors, Xid count {rng.randint(0, 3)} in the GPU report', "
                       f"params: SamplingParams(n=1, temperature={rng.choice((0.0, 0.7, 1.0))}, "
                       f"max_tokens={rng.randint(16, 4096)}), prompt_token_ids: None, lora_request: None.")
        elif r < 0.95:
            out.append(f"{api}INFO {ts()} [async_llm.py:349] Added request chatcmpl-{rng.getrandbits(64):016x}.")
        else:
            out.append(f"{api}WARNING {ts()} [protocol.py:81] The following fields were present in the request "
                       f"but ignored: {{'max_completion_tokens_{rng.randint(0, 9)}'}}")
    return out


def sglang_lines(rng: random.Random, n: int) -> list[str]:
    model = rng.choice(MODELS)
    tp = rng.choice((1, 2, 4))

    def ts(i: int) -> str:
        return f"2025-06-{i // 86400 % 28 + 1:02d} {i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}"

    i = rng.randint(0, 10**6)
    out = [f"[{ts(i)}] server_args=ServerArgs(model_path='{model}', tokenizer_path='{model}', tp_size={tp}, "
           f"mem_fraction_static=0.88, max_running_requests=None, chunked_prefill_size=8192, watchdog_timeout=300, "
           "schedule_policy='fcfs', disable_radix_cache=False)"]
    for r in range(tp):
        out += [
            f"[{ts(i)} TP{r}] Init torch distributed begin.",
            f"[{ts(i)} TP{r}] sglang is using nccl==2.21.5",
            f"[{ts(i)} TP{r}] NCCL version 2.21.5+cuda12.4",
            f"[{ts(i)} TP{r}] Load weight begin. avail mem={rng.uniform(20, 78):.2f} GB",
            f"[{ts(i)} TP{r}] Load weight end. type=LlamaForCausalLM, dtype=torch.bfloat16, avail mem="
            f"{rng.uniform(5, 60):.2f} GB, mem usage={rng.uniform(4, 40):.2f} GB.",
            f"[{ts(i)} TP{r}] KV Cache is allocated. #tokens: {rng.randint(10000, 900000)}, K size: "
            f"{rng.uniform(1, 30):.2f} GB, V size: {rng.uniform(1, 30):.2f} GB",
            f"[{ts(i)} TP{r}] Capture cuda graph begin. This can take up to several minutes. avail mem="
            f"{rng.uniform(1, 10):.2f} GB",
            f"[{ts(i)} TP{r}] Capture cuda graph end. Time elapsed: {rng.uniform(3, 60):.2f} s. mem usage="
            f"{rng.uniform(0.1, 2):.2f} GB. avail mem={rng.uniform(1, 10):.2f} GB.",
            f"[{ts(i)} TP{r}] max_total_num_tokens={rng.randint(10000, 900000)}, chunked_prefill_size=8192, "
            f"max_prefill_tokens=16384, max_running_requests={rng.randint(64, 4096)}, context_len=32768",
        ]
    out += [
        f"[{ts(i)}] INFO:     Started server process [{rng.randint(100, 99999)}]",
        f"[{ts(i)}] INFO:     Waiting for application startup.",
        f"[{ts(i)}] INFO:     Application startup complete.",
        f"[{ts(i)}] INFO:     Uvicorn running on http://0.0.0.0:30000 (Press CTRL+C to quit)",
        f"[{ts(i)}] INFO:     127.0.0.1:{rng.randint(30000, 60000)} - \"GET /get_model_info HTTP/1.1\" 200 OK",
        f"[{ts(i)}] The server is fired up and ready to roll!",
    ]
    while len(out) < n:
        i += rng.randint(0, 2)
        r = rng.random()
        if r < 0.35:
            out.append(f"[{ts(i)} TP0] Decode batch. #running-req: {rng.randint(1, 200)}, #token: "
                       f"{rng.randint(100, 500000)}, token usage: {rng.uniform(0, 0.99):.2f}, cuda graph: "
                       f"{rng.choice(('True', 'False'))}, gen throughput (token/s): {rng.uniform(10, 5000):.2f}, "
                       f"#queue-req: {rng.randint(0, 20)}")
        elif r < 0.6:
            out.append(f"[{ts(i)} TP0] Prefill batch. #new-seq: {rng.randint(1, 16)}, #new-token: "
                       f"{rng.randint(1, 16384)}, #cached-token: {rng.randint(0, 16384)}, token usage: "
                       f"{rng.uniform(0, 0.99):.2f}, #running-req: {rng.randint(0, 200)}, #queue-req: "
                       f"{rng.randint(0, 20)}")
        else:
            out.append(f'[{ts(i)}] INFO:     {_ip(rng)} - "POST {rng.choice(PATHS)} HTTP/1.1" 200 OK')
    return out


def tgi_lines(rng: random.Random, n: int) -> list[str]:
    model = rng.choice(MODELS)

    def ts(i: int) -> str:
        return f"2025-03-{i // 86400 % 28 + 1:02d}T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}." \
               f"{rng.randint(0, 999999):06d}Z"

    i = rng.randint(0, 10**6)
    out = [
        f"{ts(i)}  INFO text_generation_launcher: Args {{ model_id: \"{model}\", revision: None, sharded: None, "
        "num_shard: Some(1), quantize: None, max_concurrent_requests: 128, max_input_tokens: None, "
        "max_total_tokens: None, hostname: \"0.0.0.0\", port: 80 }",
        f"{ts(i)}  INFO hf_hub: Token file not found \"/data/token\"",
        f"{ts(i)}  INFO text_generation_launcher: Using attention flashinfer - Prefix caching true",
        f"{ts(i)}  INFO text_generation_launcher: Default `max_batch_prefill_tokens` to 4096",
        f"{ts(i)}  INFO download: text_generation_launcher: Starting check and download process for {model}",
        f"{ts(i)}  INFO download: text_generation_launcher: Successfully downloaded weights for {model}",
        f"{ts(i)}  INFO shard-manager: text_generation_launcher: Starting shard rank=0",
        f"{ts(i)}  INFO text_generation_launcher: Using prefix caching = True",
        f"{ts(i)}  INFO text_generation_launcher: Server started at unix:///tmp/text-generation-server-0",
        f"{ts(i)}  INFO shard-manager: text_generation_launcher: Shard ready in {rng.uniform(5, 90):.3f}s rank=0",
        f"{ts(i)}  INFO text_generation_launcher: Starting Webserver",
        f"{ts(i)}  INFO text_generation_router_v3: backends/v3/src/lib.rs:125: Warming up model",
        f"{ts(i)}  INFO text_generation_launcher: Cuda Graphs are enabled for sizes [32, 16, 8, 4, 2, 1]",
        f"{ts(i)}  INFO text_generation_router_v3: backends/v3/src/lib.rs:137: Setting max batch total tokens to "
        f"{rng.randint(10000, 500000)}",
        f"{ts(i)}  INFO text_generation_router_v3: backends/v3/src/lib.rs:166: Using backend V3",
        f"{ts(i)}  INFO text_generation_router::server: router/src/server.rs:2463: Serving revision "
        f"{rng.getrandbits(160):040x} of model {model}",
        f"{ts(i)}  INFO text_generation_router::server: router/src/server.rs:1903: Using config Some(Llama)",
        f"{ts(i)}  INFO text_generation_router::server: router/src/server.rs:2081: Connected",
    ]
    while len(out) < n:
        i += rng.randint(0, 3)
        inp = rng.randint(1, 8000)
        gen = rng.randint(1, 2000)
        out.append(
            f"{ts(i)}  INFO chat_completions{{total_time=\"{rng.uniform(0.1, 30):.6f}s\" validation_time="
            f"\"{rng.uniform(0, 2):.6f}ms\" queue_time=\"{rng.uniform(0, 50):.6f}ms\" inference_time="
            f"\"{rng.uniform(0.1, 30):.6f}s\" time_per_token=\"{rng.uniform(5, 60):.6f}ms\" seed=\"None\"}}: "
            f"text_generation_router::server: router/src/server.rs:{rng.choice((622, 402))}: Success "
            f"input_length={inp} generated_tokens={gen}")
    return out


def kernel_lines(rng: random.Random, n: int) -> list[str]:
    """Ordinary dmesg output of a GPU node, in the prefixes the kernel log reaches us with."""
    t = rng.uniform(0, 5)
    pci = [f"0000:{b:02x}:00" for b in rng.sample(range(0x10, 0xf0), 8)]

    def bodies() -> str:
        r = rng.random()
        p = rng.choice(pci)
        choices = (
            f"NVRM: loading NVIDIA UNIX x86_64 Kernel Module  550.{rng.randint(10, 150)}.{rng.randint(1, 9):02d}  "
            "Release Build  (dvs-builder@U16-I3-D04-1-3)",
            f"nvidia {p}.0: enabling device (0000 -> 0002)",
            f"NVRM: GPU at PCI:{p}: GPU-{rng.getrandbits(32):08x}-{rng.getrandbits(16):04x}-"
            f"{rng.getrandbits(16):04x}-{rng.getrandbits(16):04x}-{rng.getrandbits(48):012x}",
            f"NVRM: GPU Board Serial Number: {rng.randint(10**12, 10**13)}",
            "nvidia-nvlink: Nvlink Core is being initialized, major device number 508",
            f"nvidia-modeset: Loading NVIDIA Kernel Mode Setting Driver for UNIX platforms  550.{rng.randint(10, 99)}",
            f"nvidia-uvm: Loaded the UVM driver, major device number {rng.randint(500, 510)}.",
            f"EXT4-fs (nvme0n1p{rng.randint(1, 4)}): mounted filesystem with ordered data mode. Quota mode: none.",
            f"IPv6: ADDRCONF(NETDEV_CHANGE): veth{rng.getrandbits(28):07x}: link becomes ready",
            f"cni0: port {rng.randint(1, 40)}(veth{rng.getrandbits(28):07x}) entered forwarding state",
            f"audit: type=1400 audit({rng.randint(10**9, 2 * 10**9)}.{rng.randint(100, 999)}:{rng.randint(1, 999)}): "
            "apparmor=\"STATUS\" operation=\"profile_load\" profile=\"unconfined\" name=\"cri-containerd.apparmor.d\"",
            "NMI watchdog: Enabled. Permanently consumes one hw-PMU counter.",
            "watchdog: initialized, soft lockup threshold 20s",
            f"mlx5_core 0000:{rng.randint(0x10, 0xf0):02x}:00.{rng.randint(0, 1)}: Port module event: module 0, "
            "Cable plugged",
            f"systemd[1]: Started cri-containerd-{rng.getrandbits(128):032x}.scope - libcontainer container.",
            f"kubelet[{rng.randint(1000, 9999)}]: Setting oom_score_adj=-997 for container (OOM score adj)",
            "xfs filesystem being mounted at /var/lib/kubelet supports timestamps until 2038",
            f"TCP: request_sock_TCP: Possible SYN flooding on port {rng.randint(1024, 65535)}. Sending cookies.",
            "ACPI: no errors found in DMAR table (Xid reporting not affected)",
            f"pcieport 0000:{rng.randint(0x10, 0xf0):02x}:01.0: AER: Corrected error received: 0000:00:00.0 "
            "(error_rate=0)",
            "nvidia-persistenced: Persistence mode is enabled for all devices; no errors.",
            f"infiniband mlx5_{rng.randint(0, 7)}: mlx5_ib_add: mlx5_ib: NCCL version checks skipped",
            "Memory cgroup stats for /kubepods.slice: accounting enabled",
        )
        return choices[int(r * len(choices))]

    out = []
    wall = rng.randint(0, 10**6)
    while len(out) < n:
        t += rng.uniform(0, 30)
        wall += rng.randint(0, 30)
        body = bodies()
        style = rng.random()
        if style < 0.4:
            out.append(f"[{t:12.6f}] {body}")
        elif style < 0.6:
            out.append(f"May {wall // 86400 % 28 + 1:2d} {wall // 3600 % 24:02d}:{wall // 60 % 60:02d}:"
                       f"{wall % 60:02d} gpu-node-{rng.randint(1, 9)} kernel: [{t:12.6f}] {body}")
        elif style < 0.8:
            out.append(f"kern  :info  : 2025-01-{wall // 86400 % 28 + 1:02d}T{wall // 3600 % 24:02d}:"
                       f"{wall // 60 % 60:02d}:{wall % 60:02d},{rng.randint(0, 999999):06d}+00:00 {body}")
        else:
            out.append(f"[Sun Mar {wall // 86400 % 28 + 1:2d} {wall // 3600 % 24:02d}:{wall // 60 % 60:02d}:"
                       f"{wall % 60:02d} 2025] {body}")
    return out


def engine_corpus(seed: int = 7, n: int = 6000) -> list[str]:
    """Normal vLLM, SGLang and TGI logs (several start-ups each, each ending ready)."""
    rng = random.Random(seed)
    out: list[str] = []
    makers = (vllm_lines, sglang_lines, tgi_lines)
    k = 0
    while len(out) < n:
        out += makers[k % 3](rng, rng.randint(300, 900))
        k += 1
    return out


def kernel_corpus(seed: int = 11, n: int = 5000) -> list[str]:
    return kernel_lines(random.Random(seed), n)


def rotation_storm(path: Path, mode: str, rotations: int, lines_per_file: int, gap: float) -> int:
    """Write ``rotations`` files of ``lines_per_file`` lines, spread over ``gap`` s each, rotating after each
    (``rename``: logrotate's create, ``copytruncate``); returns the lines written."""
    written = 0
    for r in range(rotations):
        for i in range(lines_per_file):
            with path.open("a") as f:
                f.write(f"storm line {r}.{i}\n")
            written += 1
            time.sleep(gap / lines_per_file)
        if mode == "rename":
            path.rename(path.with_suffix(".1"))
            path.write_text("")
        else:
            shutil.copyfile(path, path.with_suffix(".1"))
            with path.open("r+") as f:
                f.truncate(0)
    return written
