"""The report's plots as PNG bytes (matplotlib, Agg backend): shared by ``genies report`` and browse.

Every function takes plain data (rows, probabilities) and returns PNG bytes, so the HTML report
embeds them as base64, the Markdown report writes them beside itself, and the browser serves them
from a route, from one implementation. Labels come from data (dataset ids, intervention names);
matplotlib draws them as text (``usetex`` off, mathtext disabled per label), never as markup.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from genies.records import ShiftResult

#: Series colours (colour-blind safe, Okabe–Ito); the paper's series: its result's colour, pale, hatched.
COLORS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
DPI = 110


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    _pyplot().close(fig)
    return buf.getvalue()


def _text(s: str) -> str:
    """A data string as literal matplotlib text (``$`` would start mathtext)."""
    return s.replace("$", r"\$")


@dataclass
class Series:
    """One bar series: a label and its rows (one result, or the paper's numbers for a model)."""

    label: str
    rows: Sequence[ShiftResult]
    paper: bool = False


def _shift_order(series: Sequence[Series]) -> list[tuple[str, str, str]]:
    """(category, source, target) of every shift in any series, grouped by category (registry order)."""
    from genies.shifts import CATEGORIES

    seen: dict[tuple[str, str], str] = {}
    for s in series:
        for r in s.rows:
            seen.setdefault((r.source, r.target), r.category or "uncategorized")
    rank = {c: i for i, c in enumerate(CATEGORIES)}
    items = [(cat, src, tgt) for (src, tgt), cat in seen.items()]
    order = {k: i for i, k in enumerate(seen)}
    return sorted(items, key=lambda x: (rank.get(x[0], len(rank)), x[0], order[(x[1], x[2])]))


def de_bars(series: Sequence[Series], *, metric: str = "differential_elicitation") -> bytes:
    """Horizontal grouped bars of ``metric`` per shift, grouped by category, one bar per series.

    Genies series show their 95% bootstrap CI as error bars; paper series are hatched grey-toned.
    Missing values leave a gap (and an "n/a" mark), never a zero bar.
    """
    plt = _pyplot()
    shifts = _shift_order(series)
    n, k = len(shifts), max(1, len(series))
    height = 0.8 / k
    fig, ax = plt.subplots(figsize=(9, max(2.5, 0.32 * n * max(1, k * 0.6) + 1.2)))
    lookup = [{(r.source, r.target): r for r in s.rows} for s in series]
    for j, s in enumerate(series):
        ys, xs, err_lo, err_hi, missing = [], [], [], [], []
        for i, (_, src, tgt) in enumerate(shifts):
            y = i + (j - (k - 1) / 2) * height
            r = lookup[j].get((src, tgt))
            v = getattr(r, metric, None) if r is not None else None
            if v is None or math.isnan(v):
                missing.append(y)
                continue
            ci = getattr(r, f"{metric}_ci", None) if metric != "RMS_calibration_error" else None
            ys.append(y)
            xs.append(v)
            err_lo.append(v - ci[0] if ci else 0.0)
            err_hi.append(ci[1] - v if ci else 0.0)
        # a paper series follows its result: the same colour, pale and hatched
        own = (
            sum(not x.paper for x in series[: j + 1]) - 1 if s.paper else sum(not x.paper for x in series[:j])
        )
        color = COLORS[max(own, 0) % len(COLORS)]
        ax.barh(
            ys,
            xs,
            height=height * 0.92,
            color=color,
            alpha=0.4 if s.paper else 1.0,
            hatch="///" if s.paper else None,
            edgecolor=color,
            label=_text(s.label),
            xerr=np.array([err_lo, err_hi]) if not s.paper and any(err_lo + err_hi) else None,
            error_kw={"elinewidth": 0.8, "capsize": 1.5, "ecolor": "#333333"},
        )
        for y in missing:
            ax.text(0, y, " n/a", va="center", ha="left", fontsize=6, color=color)
    ax.set_yticks(range(n))
    ax.set_yticklabels([_text(f"{src} → {tgt}") for _, src, tgt in shifts], fontsize=7)
    ax.invert_yaxis()
    ax.axvline(0, color="#444444", linewidth=0.8)
    prev = None
    for i, (cat, _, _) in enumerate(shifts):  # category bands and names
        if cat != prev:
            if i:
                ax.axhline(i - 0.5, color="#bbbbbb", linewidth=0.6, linestyle="--")
            ax.text(
                1.01,
                i - 0.4,
                _text(cat),
                transform=ax.get_yaxis_transform(),
                fontsize=7,
                va="top",
                color="#555555",
            )
            prev = cat
    label = {
        "differential_elicitation": "differential elicitation",
        "generalization_accuracy": "generalization accuracy",
    }.get(metric, metric)
    ax.set_xlabel(f"{label} (bars: 95% bootstrap CI)")
    ax.legend(
        fontsize=7,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.09 - 2.2 / fig.get_figheight() * 0.1),
        ncol=2,
        frameon=False,
    )
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def reliability_plot(panels: Mapping[str, Sequence[float]], *, n_bins: int | None = None) -> bytes:
    """Top-label reliability diagrams, one panel per label (e.g. intervention): per bin of confidence
    ``max(p, 1 − p)`` over [0.5, 1], the accuracy of the picked response vs the mean confidence, the
    diagonal of perfect calibration and the bin counts (bar width ∝ nothing; the count is printed)."""
    from genies import metrics

    plt = _pyplot()
    bins = n_bins or metrics.CALIBRATION_BINS
    k = max(1, len(panels))
    fig, axes = plt.subplots(1, k, figsize=(3.6 * k, 3.6), squeeze=False)
    for ax, (label, p) in zip(axes[0], panels.items(), strict=False):
        diagram = metrics.reliability_diagram(p, bins)
        ax.plot([0.5, 1], [0.5, 1], color="#888888", linestyle="--", linewidth=0.8, label="calibrated")
        ax.plot([0.5, 1], [0, 0], alpha=0)
        mids = [(b.lo + b.hi) / 2 for b in diagram]
        acc = [b.accuracy for b in diagram]
        width = (diagram[0].hi - diagram[0].lo) * 0.9
        ax.bar(
            mids,
            [0 if math.isnan(a) else a for a in acc],
            width=width,
            color=COLORS[0],
            alpha=0.75,
            label="accuracy",
        )
        conf = [(b.mean_confidence, b.accuracy) for b in diagram if b.count]
        ax.plot(
            [c for c, _ in conf],
            [a for _, a in conf],
            "o",
            color=COLORS[5],
            markersize=3,
            label="(mean confidence, accuracy)",
        )
        for m, b in zip(mids, diagram, strict=True):
            if b.count:
                ax.text(
                    m,
                    0.02,
                    str(b.count),
                    ha="center",
                    fontsize=6,
                    color="white" if b.accuracy > 0.1 else "#333333",
                    rotation=90,
                )
        rms = metrics.rms_calibration_error(p, bins)
        mean_conf = (
            float(np.mean(np.maximum(np.asarray(p, float), 1 - np.asarray(p, float)))) if len(p) else math.nan
        )
        ax.set_title(
            _text(f"{label}\n{len(p)} pairs · RMS {rms:.3f} · mean conf {mean_conf:.2f}"), fontsize=8
        )
        ax.set_xlim(0.5, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence max(p, 1−p)", fontsize=7)
        ax.set_ylabel("accuracy of the picked response", fontsize=7)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6, loc="upper left")
    return _png(fig)


def transfer_heatmap(
    rows: Sequence[ShiftResult], *, metric: str = "differential_elicitation", title: str = ""
) -> bytes:
    """Source × target matrix of ``metric`` (rows: source, columns: target); blank where no shift."""
    plt = _pyplot()
    sources = sorted({r.source for r in rows})
    targets = sorted({r.target for r in rows})
    grid = np.full((len(sources), len(targets)), np.nan)
    si, ti = {s: i for i, s in enumerate(sources)}, {t: i for i, t in enumerate(targets)}
    for r in rows:
        v = getattr(r, metric, None)
        if v is not None and not math.isnan(v) and math.isnan(grid[si[r.source], ti[r.target]]):
            grid[si[r.source], ti[r.target]] = v
    fig, ax = plt.subplots(figsize=(max(4, 0.28 * len(targets) + 2.5), max(3, 0.28 * len(sources) + 1.5)))
    finite = grid[~np.isnan(grid)]
    lim = float(np.max(np.abs(finite))) if finite.size else 1.0
    diverging = metric == "differential_elicitation"
    cmap = plt.get_cmap("RdBu" if diverging else "viridis").with_extremes(bad="#f2f2f2")
    im = ax.imshow(
        np.ma.masked_invalid(grid),
        cmap=cmap,
        aspect="auto",
        vmin=-lim if diverging else None,
        vmax=lim if diverging else None,
    )
    ax.set_xticks(range(len(targets)))
    ax.set_xticklabels([_text(t) for t in targets], rotation=90, fontsize=6)
    ax.set_yticks(range(len(sources)))
    ax.set_yticklabels([_text(s) for s in sources], fontsize=6)
    ax.set_xlabel("target (evaluated)")
    ax.set_ylabel("source (trained on)")
    if title:
        ax.set_title(_text(title), fontsize=8)
    fig.colorbar(im, ax=ax, shrink=0.8, label=metric.replace("_", " "))
    return _png(fig)


def comparison_plot(shifts: Sequence[object], label: str) -> bytes:
    """Forest plot of per-shift accuracy differences (B − A) with their paired 95% CIs."""
    plt = _pyplot()
    n = len(shifts)
    fig, ax = plt.subplots(figsize=(7, max(2.2, 0.3 * n + 1)))
    for i, s in enumerate(shifts):
        lo, hi = s.acc_ci  # type: ignore[attr-defined]
        sig = s.acc_p_holm < 0.05  # type: ignore[attr-defined]
        color = COLORS[5] if sig else COLORS[0]
        ax.plot([lo, hi], [i, i], color=color, linewidth=1.5)
        ax.plot([s.acc_diff], [i], "o", color=color, markersize=4)  # type: ignore[attr-defined]
    ax.set_yticks(range(n))
    ax.set_yticklabels([_text(s.shift) for s in shifts], fontsize=7)  # type: ignore[attr-defined]
    ax.invert_yaxis()
    ax.axvline(0, color="#444444", linewidth=0.8)
    ax.set_xlabel("Δ generalization accuracy (B − A), paired 95% CI; orange: Holm p < 0.05", fontsize=7)
    ax.set_title(_text(label), fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)
