"""Failure signatures of LLM-serving logs, and the per-stream matcher that counts them. Pure: no I/O.

A signature is a Python regex plus the literal substrings at least one of which every match contains
(one literal per alternative of the regex). ``StreamMatcher`` runs a signature's regex on a line only when
one of its literals is in the line, so an ordinary line costs a few substring tests and no regex.
No pattern has nested quantifiers and every free-text gap is bounded (``.{0,N}?``), so the search time is
linear in the line length.

Counting rules (what is *one event*):

- ``nvidia_xid``: lines with the same device (PCI bus, without the function), Xid number and process
  (when the line names one) whose timestamps are at most ``xid_window`` seconds apart form one event
  (sliding). The timestamp comes from the line's kernel prefix (``[secs.usec]``, ``dmesg -T``,
  ``--time-format iso``, syslog) or, when it has none, from the time the line was read.
  "GPU has fallen off the bus" without an Xid (also the multi-line report) counts as Xid 79.
- ``oom_kill``: one kernel OOM report is one event, whichever of its lines are present (the
  ``invoked oom-killer`` header, the ``oom-kill:constraint=`` summary, the ``Killed process`` line).
- Signatures with ``window_lines``: a match within that many lines of the previous match of the same
  signature and key in the same stream belongs to the same event (a traceback's source line and its
  exception line; every rank printing the same failure).
- Everything else: one matching line is one event.

``startup_hang`` is not a line: ``StreamMatcher`` arms the engine's ``StartupTimer`` (one per engine, shared
by its log streams) when a start-up marker line (or ``arm_startup``) shows the engine starting, disarms it on
a ready line or on a start failure that has its own signature, and counts one ``startup_hang`` when
``startup_timeout`` passes without either.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

Source = Literal["engine", "kernel"]
SOURCES: tuple[Source, ...] = ("engine", "kernel")
Kind = Literal["event", "start", "heartbeat", "ready"]

#: Lines longer than this (in characters) are cut to it before matching.
MAX_LINE_CHARS = 65536

#: The signature counted by the start-up timer (no line pattern).
STARTUP_HANG = "startup_hang"

#: Xid numbers in NVIDIA's Xid catalogue: their series are exported at 0 from the start, so a
#: first Xid shows up as an increase. Other Xids are counted too; their series appear with the first event.
KNOWN_XIDS: tuple[int, ...] = (
    8, 13, 31, 32, 43, 45, 46, 48, 62, 63, 64, 74, 79, 92, 94, 95, 109, 119, 120, 136, 140,
    144, 145, 146, 147, 148, 149, 150, 154, 155, 158,
)

KeyFn = Callable[["re.Match[str]"], str]


@dataclass(frozen=True)
class Signature:
    name: str
    source: Source
    literals: tuple[str, ...]
    """At least one of these is in every line the pattern matches (the pre-filter)."""
    pattern: re.Pattern[str]
    description: str
    kind: Kind = "event"
    """``event`` is counted; ``start``, ``heartbeat`` and ``ready`` only drive the start-up timer."""
    window_lines: int = 0
    key: KeyFn | None = None
    ends_startup: bool = False
    """A start-up failure with its own signature: the start-up timer stops (counted once, not twice)."""


def _c(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


_PCI = r"[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}"

#: Xid lines (``NVRM: Xid (PCI:0000:41:00): 13, ...``, the old form without ``PCI:``, the MIG form); "fallen
#: off the bus" without an Xid (single-line forms, and the third line of the multi-line report, whose first
#: line ``NVRM: The NVIDIA GPU <pci>`` is matched as context: it names the device). Xid numbers have at most
#: three digits (the label's cardinality stays bounded).
XID_RE = _c(
    r"NVRM: Xid \((?:PCI:)?(?P<pci>" + _PCI + r")(?:\.[0-9a-fA-F])?(?: GPU-I:\d+)?\): (?P<xid>\d{1,3}),"
    r"(?: pid=(?P<pid>\d+|'<unknown>'),)?"
    r"|NVRM: (?:GPU (?P<bpci>" + _PCI + r")(?:\.[0-9a-fA-F])?: GPU has |The NVIDIA GPU (?P<bpci2>" + _PCI
    + r")[^\n]{0,200}?)?fallen off the bus"
    r"|NVRM: The NVIDIA GPU (?P<ctx>" + _PCI + r")"
)

#: The three lines of a kernel OOM report: the header, the constraint summary, the kill (and its old form).
_OOM = (r"invoked oom-killer: |oom-kill:constraint="
        r"|Killed process \d+ \(.{1,64}?\) total-vm:|Kill process \d+ \(.{1,64}?\) score \d+ or sacrifice child")


def _watchdog_key(m: re.Match[str]) -> str:
    return f"{m.group('rank') or ''}/{m.group('seq')}"


SIGNATURES: tuple[Signature, ...] = (
    # ---- engine start-up -------------------------------------------------------------------------------
    Signature("startup_waiting", "engine", ("Waiting for ",),
              _c(r"Waiting for \d+ local, \d+ remote core engine proc\(s\) to (?:start|connect)\."
                 r"|Waiting for shard to be ready\.\.\."),
              "Engine start-up heartbeat (vLLM DEBUG wait for core engines; TGI wait for shards): not a failure "
              "(every TGI start prints it); it arms the start-up timer unless this start already hung.",
              kind="heartbeat"),
    Signature("engine_init_failed", "engine", ("failed",),
              _c(r"Engine core initialization failed|EngineCore failed to start"),
              "vLLM V1 engine core failed to initialise (the APIServer's RuntimeError, the EngineCore's log line).",
              window_lines=200, ends_startup=True),
    Signature("engine_core_error", "engine", (" hit an exception", "encountered a fatal"),
              _c(r"EngineCore hit an exception|EngineCore encountered a fatal error"),
              "vLLM V1 engine core crashed (during start-up or serving).",
              window_lines=200, ends_startup=True),
    Signature("tgi_shard_failed", "engine", ("failed",),
              _c(r"text_generation_launcher: Shard (?P<rank>\d+) failed to start"),
              "TGI launcher: a model shard failed to start.", window_lines=50, ends_startup=True),
    # ---- memory ------------------------------------------------------------------------------------------
    Signature("cuda_oom", "engine", ("out of memory",),
              _c(r"CUDA out of memory\. Tried to allocate|CUDA error: out of memory"),
              "CUDA out of memory: PyTorch's caching allocator (both wordings) or the CUDA runtime.",
              window_lines=50, ends_startup=True),
    Signature("kv_cache_insufficient", "engine", ("max seq len",),
              _c(r"The model's max seq len \(\d+\) is larger than the maximum number of tokens that can be stored"
                 r"|To serve at least one request with the models?'s max seq len \(\d+\)"),
              "vLLM: max_model_len does not fit in the KV cache (V0 and V1 wordings).",
              window_lines=50, ends_startup=True),
    Signature("no_cache_blocks", "engine", ("blocks",),
              _c(r"No available memory for the cache blocks|# GPU blocks: 0,"),
              "vLLM: no GPU memory left for any KV-cache block (the error, its source line, or `# GPU blocks: 0`).",
              window_lines=200, ends_startup=True),
    Signature("kv_preemption", "engine", ("PreemptionMode.",),
              _c(r"is preempted by PreemptionMode\.(?:RECOMPUTE|SWAP) mode because there is not enough KV cache"),
              "vLLM V0: a sequence group was preempted for lack of KV-cache space. Informational."),
    Signature("ecc_uncorrectable", "engine", ("uncorrectable ECC",),
              _c(r"(?:CUDA error|CUDA_ERROR_ECC_UNCORRECTABLE|Cuda Error): uncorrectable ECC error encountered"),
              "CUDA reported an uncorrectable ECC error (runtime API, driver API, glog wrapper).",
              window_lines=50),
    # ---- NCCL / c10d -------------------------------------------------------------------------------------
    Signature("nccl_socket_error", "engine", ("NCCL WARN",),
              _c(r"NCCL WARN (?:NET/Socket : (?:peer \S{1,128} )?message truncated"
                 r"|Net : (?:Call to \w{1,16} (?:from|to) \S{1,128} failed|Connection closed by remote peer)"
                 r"|socketProgress(?:Opt)?: (?:Call to \w{1,16} (?:from|to) \S{1,128} failed"
                 r"|Connection closed by remote peer))"),
              "NCCL socket transport: truncated message, failed send/recv, connection closed by the peer."),
    Signature("nccl_ib_error", "engine", ("NCCL WARN",),
              _c(r"NCCL WARN NET/IB : Got completion from peer \S{1,128} with (?:error |status=)\d+"),
              "NCCL InfiniBand/RoCE work completion with an error status."),
    Signature("nccl_remote_error", "engine", ("ncclRemoteError",),
              _c(r"ncclRemoteError: A call failed possibly due to a network error or a remote process exiting"),
              "NCCL (through PyTorch c10d): remote process exited or network error."),
    Signature("nccl_watchdog_timeout", "engine", ("Watchdog ",),
              _c(r"(?:\[Rank (?P<rank>\d+)\] )?Watchdog caught collective operation timeout: "
                 r"WorkNCCL\(SeqNum=(?P<seq>\d+), OpType=\w+"),
              "PyTorch c10d watchdog: a NCCL collective timed out (one event per rank and sequence number).",
              window_lines=1000, key=_watchdog_key),
    # ---- SGLang ------------------------------------------------------------------------------------------
    Signature("sglang_scheduler_exception", "engine", (" hit an exception",),
              _c(r"\] Scheduler hit an exception"),
              "SGLang: a scheduler (TP worker) process crashed.", window_lines=50, ends_startup=True),
    Signature("sglang_watchdog_timeout", "engine", ("Watchdog ",),
              _c(r"Watchdog timeout \(self\.watchdog_timeout=\d+"),
              "SGLang: the scheduler watchdog found a forward pass stuck.", window_lines=50),
    # ---- start-up markers (not counted) --------------------------------------------------------------
    Signature("engine_starting", "engine",
              ("LLM engine", "Args {", "server_args=ServerArgs("),
              _c(r"Initializing a V1 LLM engine|Initializing an LLM engine"
                 r"|text_generation_launcher: Args \{|server_args=ServerArgs\("),
              "An engine process is starting (vLLM, TGI, SGLang).", kind="start"),
    Signature("engine_ready", "engine",
              ("startup complete", "ready to roll", ": Connected"),
              _c(r"Application startup complete|The server is fired up and ready to roll"
                 r"|text_generation_router[\w:]{0,40}: [^ ]{0,200}: Connected$"),
              "The engine serves requests (uvicorn for vLLM and SGLang, TGI's router).", kind="ready"),
    # ---- kernel ------------------------------------------------------------------------------------------
    Signature("nvidia_xid", "kernel", ("NVRM: Xid", "fallen off the bus", "NVRM: The NVIDIA GPU"),
              XID_RE,
              "NVIDIA driver Xid error (label xid); 'fallen off the bus' without an Xid counts as 79."),
    Signature("oom_kill", "kernel", ("oom-kill", "Kill"),
              _c(_OOM),
              "Kernel OOM killer (global and memory-cgroup): one report is one event."),
    Signature("soft_lockup", "kernel", ("BUG: soft lockup",),
              _c(r"BUG: soft lockup - CPU#\d+ stuck for \d+s!"),
              "Kernel watchdog: a CPU was stuck in kernel mode (soft lockup)."),
    Signature("hard_lockup", "kernel", ("Watchdog ",),
              _c(r"Watchdog detected hard LOCKUP on cpu \d+"),
              "Kernel NMI watchdog: hard lockup."),
    Signature("hung_task", "kernel", ("blocked for more than",),
              _c(r"INFO: task .{1,80}?:\d+ blocked for more than \d+ seconds\."),
              "Kernel hung-task detector: a task in D state for longer than hung_task_timeout_secs."),
)

#: Signature names that are counted (``llm_log_events_total{signature}``), per source.
COUNTED: dict[Source, tuple[str, ...]] = {
    "engine": (*(s.name for s in SIGNATURES if s.source == "engine" and s.kind == "event"), STARTUP_HANG),
    "kernel": tuple(s.name for s in SIGNATURES if s.source == "kernel" and s.kind == "event"),
}


# ---- timestamps of kernel lines (for the Xid burst window) ------------------------------------------------

_MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), start=1)}
_TS_MONO = re.compile(r"\[\s{0,12}(\d{1,12}\.\d{1,9})\]")
_TS_ISO = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:[,.](\d{1,9}))?")
_TS_CTIME = re.compile(r"\[\w{3} (\w{3}) {1,2}(\d{1,2}) (\d\d):(\d\d):(\d\d) (\d{4})\]")
_TS_SYSLOG = re.compile(r"\b(\w{3}) {1,2}(\d{1,2}) (\d\d):(\d\d):(\d\d)\b")


def line_time(prefix: str, now: float) -> tuple[str, float]:
    """(clock, seconds) of a kernel line from its prefix; ``("read", now)`` when it has no timestamp.

    Only differences within one clock are meaningful (``mono`` is seconds since boot, ``wall`` is a
    calendar time in seconds, ``syslog`` lacks the year).
    """
    m = _TS_MONO.search(prefix)
    if m:
        return "mono", float(m.group(1))
    m = _TS_ISO.search(prefix)
    if m:
        y, mo, d, hh, mm, ss = (int(g) for g in m.groups()[:6])
        frac = float("0." + m.group(7)) if m.group(7) else 0.0
        return "wall", time.mktime((y, mo, d, hh, mm, ss, 0, 0, 0)) + frac
    m = _TS_CTIME.search(prefix)
    if m and m.group(1) in _MONTHS:
        cmon, cd, chh, cmm, css, cy = m.groups()
        return "wall", time.mktime((int(cy), _MONTHS[cmon], int(cd), int(chh), int(cmm), int(css), 0, 0, 0))
    m = _TS_SYSLOG.search(prefix)
    if m and m.group(1) in _MONTHS:
        smon, sd, shh, smm, sss = m.groups()
        return "syslog", ((_MONTHS[smon] * 31 + int(sd)) * 24 + int(shh)) * 3600.0 + int(smm) * 60 + int(sss)
    return "read", now


# ---- the matcher --------------------------------------------------------------------------------------------

Counts = dict[tuple[str, str], int]
"""(signature, xid) -> events; xid is ``""`` except for ``nvidia_xid``."""


class StartupTimer:
    """The start-up timer of one engine (shared by all its log streams: a ready line in any of them counts).

    ``starting`` after a start-up marker (deadline = now + timeout); ``ready`` / ``failed`` end it;
    ``hung`` once the deadline passed (``expire`` says so exactly once per start).
    """

    def __init__(self, timeout: float = 600.0) -> None:
        self.timeout = timeout
        self.deadline: float | None = None
        self.state = "unknown"
        """unknown | starting | ready | failed | hung"""

    def arm(self, now: float) -> None:
        if self.state != "starting":
            self.deadline = now + self.timeout
            self.state = "starting"

    def end(self, state: str) -> None:
        """``ready`` always; ``failed`` only ends a start in progress."""
        if state == "ready" or self.state == "starting":
            self.deadline = None
            self.state = state

    def expire(self, now: float) -> bool:
        if self.deadline is not None and now >= self.deadline:
            self.deadline = None
            self.state = "hung"
            return True
        return False


class StreamMatcher:
    """Counts the signatures of one source in one stream of lines (one file, or /dev/kmsg).

    Not thread-safe; one stream is fed by one reader. ``feed`` adds to the caller's ``counts``.
    """

    def __init__(
        self,
        source: Source,
        *,
        prefilter: bool = True,
        startup_timeout: float = 600.0,
        startup: StartupTimer | None = None,
        xid_window: float = 1.0,
        signatures: Iterable[Signature] = SIGNATURES,
    ) -> None:
        if source not in SOURCES:
            raise ValueError(f"log source must be one of {', '.join(SOURCES)}, not {source!r}")
        self.source: Source = source
        self.prefilter = prefilter
        self.startup = startup if startup is not None else StartupTimer(startup_timeout)
        """This engine's start-up timer; pass one timer to every stream of the same engine."""
        self.xid_window = xid_window
        self._sigs = tuple(s for s in signatures if s.source == source)
        gate: dict[str, list[int]] = {}
        for k, sig in enumerate(self._sigs):
            for lit in sig.literals:
                gate.setdefault(lit, []).append(k)
        self._gate = tuple((lit, tuple(ids)) for lit, ids in gate.items())
        self.lines = 0
        self._last: dict[tuple[str, str], int] = {}
        """(signature, key) -> line number of its last match (the ``window_lines`` rule)."""
        self._xid_last: dict[tuple[str, str, str], tuple[str, float]] = {}
        self._bus_context: tuple[str, str, float] | None = None
        self._oom_open_until = -1
        """Line number up to which a counted OOM report is still open (its later lines are not new)."""
        self._oom_killed = False

    # -- start-up timer --
    def arm_startup(self, now: float) -> None:
        """The engine is starting now (a start-up marker, or its log file appeared)."""
        if self.source == "engine":
            self.startup.arm(now)

    def tick(self, now: float, counts: Counts) -> None:
        """Count ``startup_hang`` once when the start-up deadline has passed."""
        if self.source == "engine" and self.startup.expire(now):
            key = (STARTUP_HANG, "")
            counts[key] = counts.get(key, 0) + 1

    # -- lines --
    def feed(self, lines: Sequence[str], now: float, counts: Counts) -> None:
        """Match lines (in order; none may contain a newline) and add their events to ``counts``."""
        if lines:
            self.feed_text("\n".join(lines), now, counts)

    def feed_text(self, text: str, now: float, counts: Counts) -> None:
        """Match a block of complete lines joined by newlines (no trailing newline), as the tailer reads them.

        With the pre-filter, each literal is searched once in the whole block (``str.find``, a C loop), and
        only the lines holding a literal go through that literal's signatures' regexes, in line order.
        """
        base = self.lines
        if not self.prefilter:
            lines = text.split("\n")
            self.lines = base + len(lines)
            for i, line in enumerate(lines):
                self._match_line(self._sigs, line, base + i + 1, now, counts)
            return
        self.lines = base + text.count("\n") + 1
        hits: dict[int, set[int]] = {}
        """start of a line holding a literal -> indexes (in ``self._sigs``) of the signatures to try."""
        find, rfind = text.find, text.rfind
        for lit, sig_ids in self._gate:
            pos = find(lit)
            while pos >= 0:
                start = rfind("\n", 0, pos) + 1
                ids = hits.get(start)
                if ids is None:
                    hits[start] = set(sig_ids)
                else:
                    ids.update(sig_ids)
                end = find("\n", pos)
                if end < 0:
                    break
                pos = find(lit, end)
        if not hits:
            return
        number, last = base + 1, 0
        sigs = self._sigs
        for start in sorted(hits):
            number += text.count("\n", last, start)
            last = start
            end = find("\n", start)
            line = text[start:] if end < 0 else text[start:end]
            ids = hits[start]
            self._match_line([sigs[k] for k in sorted(ids)] if len(ids) > 1 else [sigs[next(iter(ids))]],
                             line, number, now, counts)

    def _match_line(self, sigs: Sequence[Signature], line: str, n: int, now: float, counts: Counts) -> None:
        if len(line) > MAX_LINE_CHARS:
            line = line[:MAX_LINE_CHARS]
        for sig in sigs:
            m = sig.pattern.search(line)
            if m is not None:
                self._on_match(sig, m, line, n, now, counts)

    def _on_match(  # noqa: PLR0917
        self, sig: Signature, m: re.Match[str], line: str, n: int, now: float, counts: Counts
    ) -> None:
        if sig.kind == "start":
            self.arm_startup(now)
            return
        if sig.kind == "heartbeat":
            if self.source == "engine" and self.startup.state != "hung":
                self.startup.arm(now)  # a start we did not see begin; the same hung start is not counted again
            return
        if sig.kind == "ready":
            self.startup.end("ready")
            return
        if sig.ends_startup:
            self.startup.end("failed")
        xid = ""
        if sig.name == "nvidia_xid":
            counted = self._xid(m, line, now)
            if counted is None:
                return
            xid = counted
        elif sig.name == "oom_kill":
            if not self._oom_new(m, n):
                return
        elif sig.window_lines:
            key = (sig.name, sig.key(m) if sig.key else "")
            last = self._last.get(key)
            self._last[key] = n
            if len(self._last) > 4096:
                self._last = {k: v for k, v in self._last.items() if n - v <= 1000}
            if last is not None and n - last <= sig.window_lines:
                return
        ck = (sig.name, xid)
        counts[ck] = counts.get(ck, 0) + 1

    def _xid(self, m: re.Match[str], line: str, now: float) -> str | None:
        """The Xid number to count for this line, or None when it continues a burst already counted."""
        clock, t = line_time(line[: m.start()], now)
        if m.group("ctx") is not None:
            self._bus_context = (m.group("ctx").lower(), clock, t)
            return None
        if m.group("xid") is not None:
            xid = str(int(m.group("xid")))
            pci = m.group("pci").lower()
            pid = m.group("pid") or ""
            if not pid.isdigit() or xid == "79":
                pid = ""
        else:
            xid, pid = "79", ""
            pci = (m.group("bpci") or m.group("bpci2") or "").lower()
            if not pci and self._bus_context is not None:
                # Third line of the multi-line report: device and time come from its first line.
                pci = self._bus_context[0]
                if clock == "read":
                    clock, t = self._bus_context[1], self._bus_context[2]
        key = (pci, xid, pid)
        prev = self._xid_last.get(key)
        if len(self._xid_last) >= 4096:
            self._xid_last.clear()
        self._xid_last[key] = (clock, t)
        if prev is not None and prev[0] == clock and 0 <= t - prev[1] <= self.xid_window:
            return None
        return xid

    def _oom_new(self, m: re.Match[str], n: int) -> bool:
        """True when this OOM line starts a new report (counted), False when it continues the open one: a
        report is open for 1000 lines after its first line until its ``Killed process`` line."""
        text = m.group(0)
        killed = text.startswith("Killed")
        if not text.startswith("invoked") and n <= self._oom_open_until and not self._oom_killed:
            self._oom_killed = killed
            return False
        self._oom_open_until = n + 1000
        self._oom_killed = killed
        return True


# ---- reference page ------------------------------------------------------------------------------------------

def render_markdown() -> str:
    """``docs/log-signatures.md``: the catalogue as operators read it (``make generate`` writes it)."""
    from optiinfra.taxonomy import BOTTLENECKS  # noqa: PLC0415

    raises = {name: b.id for b in BOTTLENECKS for name in b.log_signatures}
    out = [
        "# Log signatures",
        "",
        "<!-- generated by `optiinfra generate`; do not edit -->",
        "",
        "The sidecar's `logs` collector (`--log-file PATH:SOURCE`, `--kmsg`) counts these signatures as "
        "`llm_log_events_total{source, signature}`; Xid events also carry `xid`. Every series of a source in "
        "use is exported from the start at 0 (for `nvidia_xid`: the Xids of NVIDIA's catalogue), so the first "
        "event is an `increase()`. A signature whose bottleneck is `-` is informational.",
        "",
        "| signature | source | raises | what it is | one event | pre-filter literals |",
        "|---|---|---|---|---|---|",
    ]
    rules = {"nvidia_xid": "per burst (device, Xid, process; 1 s)", "oom_kill": "per OOM report"}
    for s in SIGNATURES:
        if s.kind != "event":
            continue
        lits = ", ".join(f"`{lit.strip()}`" for lit in s.literals)
        one = rules.get(s.name) or (f"per {s.window_lines} lines" + (" and key" if s.key else "")
                                    if s.window_lines else "per line")
        out.append(f"| `{s.name}` | {s.source} | {raises.get(s.name, '-')} | {s.description} | {one} | {lits} |")
    out.append(f"| `{STARTUP_HANG}` | engine | {raises.get(STARTUP_HANG, '-')} | The engine did not log a ready "
               "line within `startup_timeout` (600 s) of starting (see below). | per start | (timer) |")
    out += ["", "## What one event is", ""]
    doc = (__doc__ or "").split("Counting rules (what is *one event*):", 1)[1]
    out += [line.rstrip() for line in doc.strip().splitlines()]
    out += [
        "",
        "The timer is armed only by evidence of a start: a start-up marker below, or an engine log that is "
        "empty when the sidecar begins following it or appears later. A sidecar that joins a running engine "
        "at the end of its log arms nothing. An engine that never comes up after the sidecar started is also "
        "caught by the metric side of `engine_startup_hang` (upstream never up for 10m); both raise the same "
        "alert, so a hang seen both ways is one alert. The log timer adds the engine restarts the sidecar "
        "lives through (which the metric side sees only as `engine_down`), and names the hang as such.",
        "",
        "## Start-up markers (not counted; they drive the start-up timer)",
        "",
        "| marker | meaning | pre-filter literals |",
        "|---|---|---|",
    ]
    for s in SIGNATURES:
        if s.kind != "event":
            lits = ", ".join(f"`{lit.strip()}`" for lit in s.literals)
            out.append(f"| `{s.name}` ({s.kind}) | {s.description} | {lits} |")
    return "\n".join(out) + "\n"
