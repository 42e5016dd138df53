"""Log-signature matcher throughput: lines/s over a realistic mix, with and without the literal pre-filter.

The mix is 1 million lines: ordinary vLLM/SGLang/TGI and kernel lines (tests/logcorpus.py) with 0.5 % real
failure lines from tests/data/logs spliced in. The matcher gets the text the way the tailer hands it over:
blocks of about 4 MiB of newline-joined lines. Variants:

- every signature (engine and kernel, 22) on every line, pre-filter on and off;
- per source as in production (engine signatures on engine lines, kernel signatures on kernel lines);
- the engine part read from a file by the tailer, as the collector does (read, decode, match);
- baselines in the same run: a plain Python loop over the lines, and one ``str.count`` pass over the blocks
  (the cost of one pre-filter literal).

Both matcher variants must count the same events (the pre-filter never hides a match).

Rotation storms (also alone: ``run.py --storms``): the real ``LogCollector`` with its default poll intervals
follows a file that a writer rotates 60 times (10 lines per file, spread over the gap between rotations), by
rename (logrotate's ``create``) and by ``copytruncate``; printed: lines lost of those written, per gap.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))

from logcorpus import engine_corpus, kernel_corpus, rotation_storm  # noqa: E402

from optiinfra.exporter.collectors.logs import LogCollector  # noqa: E402
from optiinfra.exporter.logsig import SIGNATURES, StreamMatcher  # noqa: E402
from optiinfra.exporter.tailer import FileTailer  # noqa: E402

N_LINES = 1_000_000
FAILURE_SHARE = 0.005
BLOCK_CHARS = 4 << 20


def build_mix(benign: list[str], failures: list[str], n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [rng.choice(failures) if failures and rng.random() < FAILURE_SHARE else benign[rng.randrange(len(benign))]
            for _ in range(n)]


def blocks_of(lines: list[str]) -> list[str]:
    blocks, cur, size = [], [], 0
    for line in lines:
        cur.append(line)
        size += len(line) + 1
        if size >= BLOCK_CHARS:
            blocks.append("\n".join(cur))
            cur, size = [], 0
    if cur:
        blocks.append("\n".join(cur))
    return blocks


def timed(label: str, n: int, fn: Callable[[], object], repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    rate = n / best
    print(f"  {label:<52} {rate:>12,.0f} lines/s  ({best * 1e3:8.1f} ms)")
    return rate


def run_matcher(blocks: list[str], source: str, prefilter: bool, sigs: list | None = None) -> dict:
    counts: dict[tuple[str, str], int] = {}
    m = StreamMatcher(source, prefilter=prefilter, **({"signatures": sigs} if sigs is not None else {}))
    for block in blocks:
        m.feed_text(block, 0.0, counts)
    return counts


def main() -> None:
    captured = REPO / "tests" / "data" / "logs"
    kernel_files = [f for f in sorted(captured.glob("*.log")) if f.name.startswith(("linux_", "nvidia_"))]
    engine_files = [f for f in sorted(captured.glob("*.log")) if f not in kernel_files]
    if not kernel_files or not engine_files:
        raise SystemExit(f"no captured failure logs in {captured}")

    def read(files: list[Path]) -> list[str]:
        return [ln for f in files for ln in f.read_text(errors="replace").splitlines()]

    engine_lines = build_mix(engine_corpus(seed=1, n=30_000), read(engine_files), N_LINES * 6 // 10, seed=3)
    kernel_lines = build_mix(kernel_corpus(seed=2, n=20_000), read(kernel_files), N_LINES * 4 // 10, seed=4)
    mixed = engine_lines + kernel_lines
    random.Random(5).shuffle(mixed)
    blocks = blocks_of(mixed)
    avg = sum(map(len, mixed)) / len(mixed)
    print(f"{len(mixed):,} lines (60 % engine, 40 % kernel, {FAILURE_SHARE:.1%} failure lines), mean {avg:.0f} "
          f"chars, {len(blocks)} blocks of ~{BLOCK_CHARS >> 20} MiB")

    def plain_loop() -> None:
        n = 0
        for line in mixed:
            n += len(line)

    def one_count() -> None:
        for block in blocks:
            block.count("NVRM: Xid")

    print("baselines:")
    timed("plain loop over the lines (len of each)", len(mixed), plain_loop)
    timed("one literal counted over the blocks (str.count)", len(mixed), one_count)

    every = [dataclasses.replace(s, source="engine") for s in SIGNATURES]
    results: dict[str, dict] = {}
    print(f"every signature ({len(every)}) on every line:")
    with_pf = timed("pre-filter ON", len(mixed),
                    lambda: results.__setitem__("on", run_matcher(blocks, "engine", True, every)))
    without = timed("pre-filter OFF (every regex on every line)", len(mixed),
                    lambda: results.__setitem__("off", run_matcher(blocks, "engine", False, every)), repeat=1)
    same = results["on"] == results["off"]
    events = sum(results["on"].values())
    print(f"  events: {events:,}; identical with and without pre-filter: {same}; speed-up {with_pf / without:.1f}x")

    print("per source, as the collector runs (pre-filter ON):")
    eb, kb = blocks_of(engine_lines), blocks_of(kernel_lines)
    timed(f"engine lines, {sum(s.source == 'engine' for s in SIGNATURES)} engine signatures", len(engine_lines),
          lambda: run_matcher(eb, "engine", True))
    timed(f"kernel lines, {sum(s.source == 'kernel' for s in SIGNATURES)} kernel signatures", len(kernel_lines),
          lambda: run_matcher(kb, "kernel", True))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "engine.log"
        path.write_text("\n".join(engine_lines) + "\n", encoding="utf-8")

        def tail_and_match() -> None:
            tailer = FileTailer(path, from_start=True)
            m = StreamMatcher("engine")
            counts: dict[tuple[str, str], int] = {}
            more = True
            while more:
                blocks, more = tailer.poll(4 << 20)
                for block in blocks:
                    m.feed_text(block, 0.0, counts)
            tailer.close()

        size = path.stat().st_size
        rate = timed(f"engine file end to end (read, decode, match; {size >> 20} MiB)", len(engine_lines),
                     tail_and_match)
        print(f"  = {rate * size / len(engine_lines) / 2**20:,.1f} MiB/s")
    print(f"target >= 250,000 lines/s with every signature on: {'met' if with_pf >= 250_000 else 'NOT met'}")
    if not same:
        sys.exit(1)


async def _storm_loss(mode: str, gap: float) -> tuple[int, int]:
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "engine.log"
        log.write_text("")
        collector = LogCollector([(log, "engine")])
        await collector.start()
        try:
            while collector.rounds < 1:
                await asyncio.sleep(0.01)
            written = await asyncio.to_thread(rotation_storm, log, mode, 60, 10, gap)
            await asyncio.sleep(1.0)
            read = collector.health()["streams"][0]["lines"]  # type: ignore[index]
        finally:
            await collector.close()
    return written, int(read)


def storms() -> None:
    print("rotation storms (60 rotations, 10 lines per file, default poll intervals): lines lost")
    for mode in ("rename", "copytruncate"):
        for gap in (0.2, 0.05, 0.02):
            written, read = asyncio.run(_storm_loss(mode, gap))
            print(f"  {mode:<13} one rotation every {gap * 1000:4.0f} ms: {written - read:4d} of {written} lost "
                  f"({(written - read) / written:6.1%})")


if __name__ == "__main__":
    if sys.argv[1:] != ["--storms"]:
        main()
    storms()
