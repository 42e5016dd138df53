"""A tiny stand-in engine process for the orchestrator tests: takes flags, serves /health and /metrics.

``python fake_engine.py --port N [--kv-cache-memory-bytes B] [--fail-start]``: with ``--fail-start`` it exits
with status 3 before serving (a start that fails); ``/metrics`` shows the flags it was started with and its pid.
"""

from __future__ import annotations

import argparse
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--kv-cache-memory-bytes", type=int, default=1 << 20)
    parser.add_argument("--max-num-seqs", type=int, default=16)
    parser.add_argument("--fail-start", action="store_true")
    args = parser.parse_args()
    if args.fail_start:
        sys.stderr.write("fake engine: told to fail at start\n")
        return 3
    body = (f'fake_engine_info{{kv_cache_memory_bytes="{args.kv_cache_memory_bytes}",'
            f'max_num_seqs="{args.max_num_seqs}",pid="{os.getpid()}",env="{os.environ.get("FAKE_ENV", "")}"}} 1\n')

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/health":
                payload = b"ok"
            elif self.path == "/metrics":
                payload = body.encode()
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
