"""The collector interface (node_exporter style): one collector per source, each failing alone."""

from __future__ import annotations

from typing import Protocol


class CollectorError(Exception):
    """A collector could not produce its metrics this scrape; it costs ``optiinfra_collector_success 0``.

    ``partial`` holds the families it could still produce (e.g. the healthy GPUs when one GPU errors):
    the server exports them and still reports ``optiinfra_collector_success 0`` (node_exporter keeps the
    metrics a failing collector sent, too).
    """

    def __init__(self, message: str, partial: str = "") -> None:
        super().__init__(message)
        self.partial = partial


class Collector(Protocol):
    """A source of metrics for the sidecar's ``/metrics``.

    ``collect`` is called once per scrape (concurrently with the other collectors, under a time limit) and
    returns complete metric families in Prometheus text format 0.0.4. It raises ``CollectorError`` when it
    cannot; anything it can still say (e.g. ``llm_upstream_up 0``) it returns instead of raising.
    """

    name: str

    async def start(self) -> None:
        """Open resources (sessions, file handles, background tasks)."""

    async def collect(self) -> str:
        """Metric families for this scrape."""

    async def close(self) -> None:
        """Release what ``start`` opened."""

    def health(self) -> dict[str, object]:
        """Details for ``/health/detailed``."""
