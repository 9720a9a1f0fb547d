"""The report's plots and paired comparisons for the results pages (no HTTP in here).

The same functions draw them as in ``genies report`` (``genies.report.plots``, ``genies.report.compare``);
this module only decides which plots a result has, and caches the PNG bytes per (plot, results file
version), since a matplotlib figure takes 0.2–1 s to draw and a page shows several.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

from genies.records import SuiteResult

#: Plots a results file page can show.
PLOT_KINDS = ("de", "generalization", "reliability", "transfer")
CACHE_ENTRIES = 64


class PlotCache:
    """A small LRU of PNG bytes keyed by whatever identifies the inputs (file stamps included)."""

    def __init__(self, entries: int = CACHE_ENTRIES) -> None:
        self._items: OrderedDict[tuple, bytes | None] = OrderedDict()
        self._lock = threading.Lock()
        self.entries = entries

    def get(self, key: tuple, make) -> bytes | None:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        png = make()  # drawn outside the lock: another page may draw meanwhile
        with self._lock:
            self._items[key] = png
            while len(self._items) > self.entries:
                self._items.popitem(last=False)
        return png


def plots_of(result: SuiteResult, store: Path | None) -> list[str]:
    """The plot kinds a result has: bars always, reliability with records, a heatmap for many shifts."""
    from genies.report.html import HEATMAP_MIN_SHIFTS, generalization_p

    kinds = ["de", "generalization"]
    if store is not None and generalization_p(result, store):
        kinds.append("reliability")
    if len({(r.source, r.target) for r in result.rows}) >= HEATMAP_MIN_SHIFTS:
        kinds.append("transfer")
    return kinds


def draw(kind: str, label: str, result: SuiteResult, store: Path | None) -> bytes | None:
    """PNG bytes of one plot of ``result`` (None when it has no such plot)."""
    from genies.report import plots
    from genies.report.html import generalization_p

    if kind == "de":
        return plots.de_bars([plots.Series(label, result.rows)])
    if kind == "generalization":
        return plots.de_bars([plots.Series(label, result.rows)], metric="generalization_accuracy")
    if kind == "reliability":
        p = generalization_p(result, store) if store is not None else []
        return plots.reliability_plot({label: p}) if p else None
    if kind == "transfer":
        return plots.transfer_heatmap(result.rows, title=label)
    return None
