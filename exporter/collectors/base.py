"""The collector interface (node_exporter style): one collector per source, each failing alone."""

from __future__ import annotations

from collections.abc import Sequence
from contextvars import ContextVar
from typing import Protocol

from optiinfra.exporter.exposition import Part

#: The event-loop time by which the scrape being served must answer (the scraper's own time-out less a
#: margin, set by the server per request), or None when the scraper did not say.
SCRAPE_DEADLINE: ContextVar[float | None] = ContextVar("SCRAPE_DEADLINE", default=None)


class CollectorError(Exception):
    """A collector could not produce its metrics this scrape; it costs ``optiinfra_collector_success 0``.

    ``partial`` holds the families it could still produce (e.g. the healthy GPUs when one GPU errors):
    the server exports them and still reports ``optiinfra_collector_success 0`` (node_exporter keeps the
    metrics a failing collector sent, too).
    """

    def __init__(self, message: str, partial: Sequence[Part] = ()) -> None:
        super().__init__(message)
        self.partial = partial


class Collector(Protocol):
    """A source of metrics for the sidecar's ``/metrics``.

    ``collect`` is called once per scrape (concurrently with the other collectors, under a time limit) and
    returns typed metric families (``exposition.Family``; the engine transform's own families may come as
    ``Rendered`` text); the server's encoder writes them and adds the static labels. It raises
    ``CollectorError`` when it cannot; anything it can still say (e.g. ``llm_upstream_up 0``) goes into the
    error's ``partial``.
    """

    name: str
    disabled: bool
    """True once the collector found it cannot work here and switched itself off (e.g. gpu without NVML):
    ``optiinfra_collector_enabled 0`` and ``optiinfra_collector_success 0``."""

    async def start(self) -> None:
        """Open resources (sessions, file handles, background tasks)."""

    async def collect(self) -> Sequence[Part]:
        """Metric families for this scrape."""

    async def close(self) -> None:
        """Release what ``start`` opened."""

    def health(self) -> dict[str, object]:
        """Details for ``/health/detailed``."""
