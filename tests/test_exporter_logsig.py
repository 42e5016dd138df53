"""Log signatures: every reference log counted as expected, ordinary logs never, the pre-filter hides nothing,
the patterns cannot backtrack catastrophically, and the counting rules (bursts, reports, start-up timer)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import DATA
from hypothesis import given, settings
from hypothesis import strategies as st
from logcorpus import engine_corpus, kernel_corpus

from optiinfra import taxonomy
from optiinfra.exporter.logsig import (
    COUNTED,
    MAX_LINE_CHARS,
    SIGNATURES,
    STARTUP_HANG,
    StreamMatcher,
    line_time,
)

LOGS = DATA / "logs"
X = "nvidia_xid"

# Expected events per reference file, derived by reading each file (see the comments); the Xid entries are
# {xid: events}. A start-up timer left armed at the end of a file runs out (startup_hang) in these tests.
EXPECTED: dict[str, tuple[str, dict[str, int] | dict[str, dict[str, int]]]] = {
    "cuda_ecc_uncorrectable__accelerate-1192.log": ("engine", {"ecc_uncorrectable": 1}),
    "cuda_ecc_uncorrectable__jade-hpc-194.log": ("engine", {"ecc_uncorrectable": 1}),
    "cuda_ecc_uncorrectable_glog__paddle-10239.log": ("engine", {"ecc_uncorrectable": 1}),
    "cuda_ecc_uncorrectable_tf__deepfacelab-89.log": ("engine", {"ecc_uncorrectable": 1}),
    "cuda_oom_vllm_backend__dots-ocr-196.log": ("engine", {"cuda_oom": 1}),
    # five INFO: task lines (each followed by Tainted / echo 0 lines)
    "linux_hung_task__sonic-buildimage-4822.log": ("kernel", {"hung_task": 5}),
    "linux_hung_task_newfmt__thesofproject-linux-3387.log": ("kernel", {"hung_task": 1}),
    "linux_hung_task_nvidia_uvm__k8s-device-plugin-77.log": ("kernel", {"hung_task": 1}),
    # the report header alone
    "linux_oom_invoked__btcrecover-503.log": ("kernel", {"oom_kill": 1}),
    "linux_oom_kill_global__bigbang-494.log": ("kernel", {"oom_kill": 1}),
    # four Killed process lines (the oom_reaper lines are not kills)
    "linux_oom_kill_global__docker-for-linux-1001.log": ("kernel", {"oom_kill": 1 + 1 + 1 + 1}),
    # constraint line + kill line of one report
    "linux_oom_kill_global_ctime__py-autovod-7.log": ("kernel", {"oom_kill": 1}),
    "linux_oom_kill_global_pastewrapped__tranx-41.log": ("kernel", {"oom_kill": 1}),
    # seven memcg kills of seven processes
    "linux_oom_kill_memcg__aws-efs-csi-driver-1218.log": ("kernel", {"oom_kill": 7}),
    "linux_oom_kill_memcg_k8s__openeo-geopyspark-496.log": ("kernel", {"oom_kill": 1}),
    "linux_oom_memcg_constraint__gpud-testdata.log": ("kernel", {"oom_kill": 1}),
    # CPUs 0, 9, 1, 23, 20, 21 soft; cpus 3, 10, 8 hard
    "linux_soft_and_hard_lockup_wall__ironfish-701.log": ("kernel", {"soft_lockup": 6, "hard_lockup": 3}),
    "linux_soft_lockup__deepspeed-925.log": ("kernel", {"soft_lockup": 1}),
    "linux_soft_lockup_syslog__frigate-6360.log": ("kernel", {"soft_lockup": 1}),
    "linux_soft_lockup_wall__chia-plotter-535.log": ("kernel", {"soft_lockup": 1}),
    "nccl_ib_completion_error12__ml-engineering-pytorch-md.log": ("engine", {"nccl_ib_error": 1}),
    # H100-2 and H100-1 each report one completion error
    "nccl_ib_completion_error4__nccl-928.log": ("engine", {"nccl_ib_error": 2}),
    "nccl_ib_completion_status12__nccl-1405.log": ("engine", {"nccl_ib_error": 2}),
    # status=12, then the status=5 flush error
    "nccl_ib_completion_status12__nccl-1814.log": ("engine", {"nccl_ib_error": 2}),
    # one line holding ncclRemoteError ... Last error: NET/IB (no NCCL WARN of its own)
    "nccl_remote_error_ib12__stanford-alpaca-207.log": ("engine", {"nccl_remote_error": 1}),
    "nccl_remote_error_ofi__nccl-1928.log": ("engine", {"nccl_remote_error": 1}),
    # the socketProgressOpt line is the repeated Last error text, not an NCCL WARN line
    "nccl_remote_error_socket__nccl-2076.log": ("engine", {"nccl_remote_error": 1}),
    "nccl_socket_closed_broken_pipe__nccl-795.log": ("engine", {"nccl_socket_error": 1}),
    "nccl_socket_peer_truncated__nccl-626.log": ("engine", {"nccl_socket_error": 1}),
    "nccl_socket_truncated__nccl-268.log": ("engine", {"nccl_socket_error": 1}),
    # ranks 1, 0, 2 time out (the "Exception ... detected by watchdog" lines are follow-ups)
    "nccl_watchdog_timeout__basicsr-737.log": ("engine", {"nccl_watchdog_timeout": 3}),
    "nccl_watchdog_timeout__llamafactory-6269.log": ("engine", {"nccl_watchdog_timeout": 3}),
    "nccl_watchdog_timeout__llamafactory-7396.log": ("engine", {"nccl_watchdog_timeout": 2}),
    "nccl_watchdog_timeout_oldfmt__ofa-271.log": ("engine", {"nccl_watchdog_timeout": 5}),
    # the three-line report without an Xid number counts as Xid 79
    "nvidia_fallen_off_bus_noxid__nvsentinel-155.log": ("kernel", {X: {"79": 1}}),
    # 16:24:18, :24, :30 (6 s apart), 16:27:12 and 16:30:13: five separate RPC timeouts
    "nvidia_xid119__gpud-testdata.log": ("kernel", {X: {"119": 5}}),
    # a burst of three Xid 13 lines in one second, then Xid 109 five seconds later
    "nvidia_xid13_109_ctime__gpud-pr46.log": ("kernel", {X: {"13": 1, "109": 1}}),
    # sixteen Xid 13 lines within 4 ms, then one Xid 43
    "nvidia_xid13_43__gpud-testdata.log": ("kernel", {X: {"13": 1, "43": 1}}),
    "nvidia_xid13_a800_vllm__vllm-5901.log": ("kernel", {X: {"13": 1}}),
    "nvidia_xid13_syslog__relion-436.log": ("kernel", {X: {"13": 1}}),
    # four devices, no timestamps
    "nvidia_xid144_149_nvlink5__gpud-pr1160-1174.log": ("kernel", {X: {"144": 1, "149": 2, "145": 1}}),
    # 149 on 0009 (three lines within 0.5 s) and 0008 (two within 0.8 s); 154 on 0009, 0019, 0018, 0008
    "nvidia_xid149_154__gpud-kmsg-test.log": ("kernel", {X: {"149": 2, "154": 4}}),
    "nvidia_xid31_13_32__dxvk-1027.log": ("kernel", {X: {"31": 1, "13": 1, "32": 1}}),
    "nvidia_xid31__open-gpu-kernel-modules-1030.log": ("kernel", {X: {"31": 1}}),
    # two processes (pid 169800 and 174421) faulting
    "nvidia_xid31__open-gpu-kernel-modules-363.log": ("kernel", {X: {"31": 2}}),
    # seven lines from four (device, pid) pairs
    "nvidia_xid45_after_149_145__open-gpu-kernel-modules-1150.log": ("kernel", {X: {"45": 4}}),
    # RmInitAdapter lines are not Xids
    "nvidia_xid48_64_rminit__gpu-operator-1146.log": ("kernel", {X: {"48": 1, "64": 1}}),
    "nvidia_xid63__ml-engineering-debug-md.log": ("kernel", {X: {"63": 1}}),
    # the Xid 79 line and the "GPU 0000:2b:00.0: GPU has fallen off the bus" line are one event
    "nvidia_xid79__open-gpu-kernel-modules-1151.log": ("kernel", {X: {"79": 1}}),
    # Xid 94 from pids 7194 and 7062, Xid 95
    "nvidia_xid94_95_format__open-gpu-kernel-modules-src.log": ("kernel", {X: {"94": 2, "95": 1}}),
    "sglang_cuda_oom__sglang-4547.log": ("engine", {"cuda_oom": 1}),
    "sglang_scheduler_exception__sglang-6590.log": ("engine", {"sglang_scheduler_exception": 1}),
    "sglang_scheduler_exception__verl-630.log": ("engine", {"sglang_scheduler_exception": 1}),
    "sglang_watchdog_timeout__sglang-7783.log": ("engine", {"sglang_watchdog_timeout": 1}),
    "sglang_watchdog_timeout__soft-thinking-10.log": ("engine", {"sglang_watchdog_timeout": 1}),
    "tgi_shard_failed__tgi-1354.log": ("engine", {"tgi_shard_failed": 1}),
    "tgi_shard_failed_cuda_oom__tgi-866.log": ("engine", {"cuda_oom": 1, "tgi_shard_failed": 1}),
    # eleven heartbeats and never Connected: the start-up timer runs out once
    "tgi_shard_waiting__tgi-3105.log": ("engine", {STARTUP_HANG: 1}),
    # the exception line, then "Got fatal signal" (not counted on its own)
    "vllm_cuda_oom__vllm-12529.log": ("engine", {"cuda_oom": 1}),
    "vllm_cuda_oom__vllm-2140.log": ("engine", {"cuda_oom": 1}),
    # the traceback's `raise RuntimeError("Engine core initialization failed. "` and the error itself
    "vllm_engine_core_init_failed__vllm-26565.log": ("engine", {"engine_init_failed": 1}),
    "vllm_kv_preemption_warning__vllm-docs-optimization.log": ("engine", {"kv_preemption": 1}),
    "vllm_max_model_len_kv_v0__basalam-catalog-10.log": ("engine", {"kv_cache_insufficient": 1}),
    "vllm_max_model_len_kv_v0__vllm-10517.log": ("engine", {"kv_cache_insufficient": 1}),
    "vllm_max_model_len_kv_v1__tpu-inference-pr223.log": ("engine", {"kv_cache_insufficient": 1}),
    "vllm_max_model_len_kv_v1__vllm-34076.log": ("engine", {"kv_cache_insufficient": 1}),
    # "# GPU blocks: 0" after "Initializing an LLM engine": a start failure, so no start-up hang either
    "vllm_no_cache_blocks__qanything-302.log": ("engine", {"no_cache_blocks": 1}),
    # the raise source line and the ValueError line of one failure
    "vllm_no_cache_blocks__vllm-10439.log": ("engine", {"no_cache_blocks": 1}),
    # the excerpt stops before the ValueError; what it shows is the V1 engine core crashing
    "vllm_no_cache_blocks_v1__vllm-14574.log": ("engine", {"engine_core_error": 1}),
    # only the traceback's raise line is in the excerpt
    "vllm_no_cache_blocks_v1__vllm-27508.log": ("engine", {"no_cache_blocks": 1}),
    # DEBUG heartbeats, never ready: one start-up hang
    "vllm_startup_hang__hami-core-261.log": ("engine", {STARTUP_HANG: 1}),
    "vllm_startup_hang__vllm-24133.log": ("engine", {STARTUP_HANG: 1}),
}


def _flatten(expected: dict) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = {}
    for sig, value in expected.items():
        if isinstance(value, dict):
            out.update({(sig, xid): n for xid, n in value.items()})
        else:
            out[(sig, "")] = value
    return out


def _count(source: str, lines: list[str], prefilter: bool = True) -> tuple[dict[tuple[str, str], int], str]:
    matcher = StreamMatcher(source, prefilter=prefilter)  # type: ignore[arg-type]
    counts: dict[tuple[str, str], int] = {}
    matcher.feed(lines, 1000.0, counts)
    matcher.tick(1000.0 + matcher.startup.timeout, counts)
    return counts, matcher.startup.state


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8", errors="replace").splitlines()


def test_every_reference_file_has_an_expectation() -> None:
    files = {p.name for p in LOGS.glob("*.log")}
    assert files == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_reference_file_counts(name: str) -> None:
    source, expected = EXPECTED[name]
    lines = _lines(LOGS / name)
    counts, _ = _count(source, lines)
    assert counts == _flatten(expected)
    assert _count(source, lines, prefilter=False)[0] == counts


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_reference_file_counts_in_one_block_per_line(name: str) -> None:
    """Fed line by line (as a slow writer would produce them), the counts are the same."""
    source, expected = EXPECTED[name]
    matcher = StreamMatcher(source)  # type: ignore[arg-type]
    counts: dict[tuple[str, str], int] = {}
    for line in _lines(LOGS / name):
        matcher.feed_text(line, 1000.0, counts)
    matcher.tick(1000.0 + matcher.startup.timeout, counts)
    assert counts == _flatten(expected)


def test_prefilter_passes_every_matching_reference_line() -> None:
    """For every signature and every reference line its pattern matches, one of its literals is in the line."""
    checked = 0
    for path in sorted(LOGS.glob("*.log")):
        for line in _lines(path):
            for sig in SIGNATURES:
                if sig.pattern.search(line):
                    checked += 1
                    assert any(lit in line for lit in sig.literals), (sig.name, path.name, line)
    assert checked > 150


def test_every_signature_is_exercised_by_the_reference_logs() -> None:
    seen = set()
    for path in LOGS.glob("*.log"):
        for line in _lines(path):
            seen.update(s.name for s in SIGNATURES if s.pattern.search(line))
    missing = {s.name for s in SIGNATURES if s.kind == "event"} - seen
    assert missing == set()


def test_ordinary_logs_yield_no_events() -> None:
    engine, kernel = engine_corpus(), kernel_corpus()
    assert len(engine) >= 5000 and len(kernel) >= 5000
    for source, lines in (("engine", engine), ("kernel", kernel)):
        for prefilter in (True, False):
            counts, _state = _count(source, lines, prefilter)
            assert counts == {}, (source, prefilter)
    assert _count("engine", engine)[1] == "ready"
    # the corpus really contains the scary-but-benign words
    text = "\n".join(engine + kernel)
    for word in ("error_rate=0", "no errors", "NCCL version", "oom_score_adj", "Xid", "Waiting for ", "NVRM: ",
                 "soft lockup", "watchdog", "GPU blocks"):
        assert word in text, word


def test_taxonomy_names_only_real_signatures() -> None:
    counted = {name for names in COUNTED.values() for name in names}
    listed = {name for b in taxonomy.BOTTLENECKS for name in b.log_signatures}
    assert listed <= counted, listed - counted
    by_id = {b.id: set(b.log_signatures) for b in taxonomy.BOTTLENECKS}
    assert by_id["engine_startup_hang"] == {STARTUP_HANG, "engine_init_failed", "tgi_shard_failed"}
    assert by_id["gpu_xid_error"] == {"nvidia_xid"}
    assert by_id["host_soft_lockup"] == {"soft_lockup", "hard_lockup", "hung_task"}


# ---- regex safety ----------------------------------------------------------------------------------------

def _repeats(tree: object, inside_unbounded: bool, name: str) -> None:
    """Walk a parsed pattern: no repeat inside a repeat that can repeat more than once, and unbounded repeats
    only of a single character (class)."""
    from re import _constants as C
    from re import _parser as P

    items = tree.data if isinstance(tree, P.SubPattern) else tree
    for op, av in items:  # type: ignore[union-attr]
        if op in (C.MAX_REPEAT, C.MIN_REPEAT, C.POSSESSIVE_REPEAT):
            _lo, hi, sub = av
            assert not inside_unbounded, f"{name}: nested repeat"
            unbounded = hi == C.MAXREPEAT
            if unbounded:
                ops = [o for o, _ in sub.data]
                assert ops in ([C.LITERAL], [C.IN], [C.ANY], [C.NOT_LITERAL]), f"{name}: unbounded group"
            _repeats(sub, hi > 1, name)
        elif op == C.SUBPATTERN:
            _repeats(av[-1], inside_unbounded, name)
        elif op == C.BRANCH:
            for branch in av[1]:
                _repeats(branch, inside_unbounded, name)


@pytest.mark.parametrize("sig", SIGNATURES, ids=lambda s: s.name)
def test_patterns_have_no_nested_quantifiers(sig) -> None:  # type: ignore[no-untyped-def]
    from re import _parser as P

    _repeats(P.parse(sig.pattern.pattern), False, sig.name)


PIECES = sorted({lit for s in SIGNATURES for lit in s.literals}
                | {"(", ")", "[", "]", ":", " ", "0000:01:00", "1", "NVRM: Xid (PCI:", "): ", ", pid=", "\t",
                   "Killed process 1 (", ") total-vm:", "INFO: task a:", " blocked for more than ", "peer ",
                   "WorkNCCL(SeqNum=", "[Rank ", "text_generation_launcher: ", ": Connected", "é"})


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=400), st.sampled_from(["engine", "kernel"]))
def test_fuzzed_lines_are_matched_identically_with_and_without_prefilter(pieces: list[str], source: str) -> None:
    line = "".join(pieces)
    assert _count(source, [line])[0] == _count(source, [line], prefilter=False)[0]


@pytest.mark.parametrize("unit", ["Killed process 1 (", "INFO: task x:1 ", "NCCL WARN NET/Socket : peer ",
                                  "NVRM: The NVIDIA GPU 0000:01:00 ", "NVRM: Xid (PCI:0000:01:00): ",
                                  "text_generation_router: a: ", "[Rank 1] ", " " * 7, ":" * 7])
def test_pathological_long_lines_return(unit: str) -> None:
    line = (unit * (MAX_LINE_CHARS // len(unit) + 2))[: MAX_LINE_CHARS * 2]
    for source in ("engine", "kernel"):
        counts, _ = _count(source, [line])
        assert counts == _count(source, [line], prefilter=False)[0]


# ---- counting rules ------------------------------------------------------------------------------------------

def test_xid_burst_window_slides_and_keys_by_device_and_process() -> None:
    def xid(ts: float, pci: str = "0000:41:00", n: int = 13, pid: str = "'<unknown>'") -> str:
        return f"[{ts:12.6f}] NVRM: Xid (PCI:{pci}): {n}, pid={pid}, name=x, Graphics Exception"

    lines = [xid(10.0), xid(10.6), xid(11.5), xid(12.4),  # one burst: each within 1 s of the previous
             xid(14.0),  # 1.6 s later: new event
             xid(14.1, pci="0000:42:00"),  # another device
             xid(14.2, n=31), xid(14.3, n=31, pid="77"), xid(14.4, n=31, pid="78")]
    counts, _ = _count("kernel", lines)
    assert counts == {(X, "13"): 3, (X, "31"): 3}


def test_line_time_prefixes() -> None:
    assert line_time("[ 1843.308145] ", 5.0) == ("mono", 1843.308145)
    assert line_time("May 15 23:09:30 host kernel: [  518.050606] ", 5.0) == ("mono", 518.050606)
    clock, t = line_time("kern  :warn  : 2025-01-21T04:41:44,283302+00:00 ", 5.0)
    assert clock == "wall" and line_time("kern  :warn  : 2025-01-21T04:41:45,283302+00:00 ", 5.0)[1] - t == 1.0
    clock, t = line_time("[Sun Feb 23 16:24:18 2025] ", 5.0)
    assert clock == "wall" and line_time("[Sun Feb 23 16:24:24 2025] ", 5.0)[1] - t == 6
    clock, t = line_time("Feb 15 17:37:45 Gipfeli kernel: ", 5.0)
    assert clock == "syslog" and line_time("Feb 15 17:37:46 Gipfeli kernel: ", 5.0)[1] - t == 1
    assert line_time("kernel: ", 5.0) == ("read", 5.0)


def test_oom_report_lines_count_once_and_next_report_counts_again() -> None:
    report = [
        "[1.0] python3 invoked oom-killer: gfp_mask=0x140dca(GFP_HIGHUSER_MOVABLE), order=0, oom_score_adj=0",
        "[1.0] Tasks state (memory values in pages):",
        "[1.0] oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,task=python3,pid=7,uid=0",
        "[1.0] Memory cgroup out of memory: Killed process 7 (python3) total-vm:10kB, anon-rss:5kB, file-rss:0kB",
        "[1.0] oom_reaper: reaped process 7 (python3), now anon-rss:0kB, file-rss:0kB, shmem-rss:0kB",
    ]
    counts, _ = _count("kernel", report + report + report[3:4])
    assert counts == {("oom_kill", ""): 3}


def test_start_up_timer() -> None:
    m = StreamMatcher("engine", startup_timeout=600)
    c: dict[tuple[str, str], int] = {}
    m.feed(["(APIServer pid=1) INFO 01-01 00:00:00 [core.py:77] Initializing a V1 LLM engine (v0.11.0) with"], 0.0, c)
    assert m.startup.state == "starting"
    m.tick(599.0, c)
    assert c == {}
    m.tick(600.0, c)
    m.tick(5000.0, c)
    assert c == {(STARTUP_HANG, ""): 1} and m.startup.state == "hung"
    # the engine restarts and comes up in time: nothing more
    m.feed(["INFO 01-01 00:00:00 [core.py:77] Initializing an LLM engine (v0.6.0) with config"], 6000.0, c)
    m.feed(["(APIServer pid=1) INFO:     Application startup complete."], 6100.0, c)
    m.tick(9000.0, c)
    assert c == {(STARTUP_HANG, ""): 1} and m.startup.state == "ready"
    # a start that fails with its own signature is counted once, as that signature
    m.feed(["2025-06-01T00:00:00Z  INFO text_generation_launcher: Args { model_id: \"m\" }",
            "2025-06-01T00:00:10Z ERROR text_generation_launcher: Shard 0 failed to start"], 9100.0, c)
    m.tick(20000.0, c)
    assert c == {(STARTUP_HANG, ""): 1, ("tgi_shard_failed", ""): 1} and m.startup.state == "failed"
    # ready lines of the three engines
    for ready in ("[2025-06-01 00:00:00] The server is fired up and ready to roll!",
                  "2025-06-01T00:00:00Z  INFO text_generation_router::server: router/src/server.rs:2081: Connected"):
        m.arm_startup(30000.0)
        m.feed([ready], 30001.0, c)
        assert m.startup.state == "ready"


def test_heartbeats_arm_the_timer_but_a_hung_start_counts_once() -> None:
    wait = ("(APIServer pid=1) DEBUG 08-09 20:55:10 [utils.py:1262] Waiting for 1 local, 0 remote core engine "
            "proc(s) to start.")
    m = StreamMatcher("engine", startup_timeout=600)
    c: dict[tuple[str, str], int] = {}
    for t in range(0, 3600, 10):  # a heartbeat every 10 s for an hour
        m.feed([wait], float(t), c)
        m.tick(float(t), c)
    assert c == {(STARTUP_HANG, ""): 1}
    m.feed(["(EngineCore_DP0 pid=2) INFO 01-01 00:00:00 [core.py:77] Initializing a V1 LLM engine"], 4000.0, c)
    m.tick(4600.0, c)
    assert c == {(STARTUP_HANG, ""): 2}  # a new start that hangs again


def test_kernel_matcher_has_no_start_up_timer() -> None:
    m = StreamMatcher("kernel")
    m.arm_startup(0.0)
    c: dict[tuple[str, str], int] = {}
    m.tick(1e9, c)
    assert c == {}


def test_unknown_source_is_refused() -> None:
    with pytest.raises(ValueError, match="engine, kernel"):
        StreamMatcher("syslog")  # type: ignore[arg-type]


def test_lines_with_newlines_are_split() -> None:
    counts, _ = _count("kernel", ["[1.0] watchdog: BUG: soft lockup - CPU#1 stuck for 22s! [a:1]\n"
                                  "[2.0] watchdog: BUG: soft lockup - CPU#2 stuck for 22s! [a:1]"])
    assert counts == {("soft_lockup", ""): 2}


def test_signature_names_are_unique_and_prometheus_safe() -> None:
    names = [s.name for s in SIGNATURES]
    assert len(names) == len(set(names))
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", n) for n in names)


def test_reference_page_is_up_to_date() -> None:
    from conftest import REPO

    from optiinfra.exporter.logsig import render_markdown

    page = (REPO / "docs" / "log-signatures.md").read_text(encoding="utf-8")
    assert page == render_markdown(), "docs/log-signatures.md is stale: run make generate"


def _alternatives(items: object, states: list[tuple[list[str], str]] | None = None) -> list[tuple[list[str], str]]:
    """Every way through a parsed pattern (branches fork), each as (finished literal runs, current run): the
    literal text every match along that way contains. Anything but a literal or a group ends the run."""
    from re import _constants as C
    from re import _parser as P

    states = [([], "")] if states is None else states
    for op, av in list(items.data if isinstance(items, P.SubPattern) else items):  # type: ignore[attr-defined]
        if op == C.LITERAL:
            states = [(runs, cur + chr(av)) for runs, cur in states]
        elif op == C.SUBPATTERN:
            states = _alternatives(av[-1], states)
        elif op == C.BRANCH:
            states = [s for branch in av[1] for s in _alternatives(branch, states)]
        else:
            states = [([*runs, cur], "") for runs, cur in states]
    return states


@pytest.mark.parametrize("sig", SIGNATURES, ids=lambda s: s.name)
def test_every_alternative_of_a_pattern_requires_one_of_its_literals(sig) -> None:  # type: ignore[no-untyped-def]
    """Structural proof that the pre-filter covers the pattern: each alternative's required text holds a literal."""
    from re import _parser as P

    ways = _alternatives(P.parse(sig.pattern.pattern))
    assert ways
    for runs, cur in ways:
        assert any(lit in run for lit in sig.literals for run in [*runs, cur]), (sig.name, runs, cur)
