"""Paired comparison of two ``genies run`` results, shift by shift, from the stored per-pair p(correct).

Two results (two interventions, or two models) that evaluated the same pairs of a shift's target can
be compared pair by pair, which is far more sensitive than comparing two accuracies with their own
intervals: most of the noise of a 40- or 750-pair accuracy is which pairs were drawn, and it is the
same draw for both. For each shift present in both results:

* **Accuracy difference** ``acc_B − acc_A`` of the generalization evaluations (a pair scores 1, ½ on
  an exact tie, 0), with a **paired bootstrap** 95% percentile interval (the target's pairs are
  resampled with replacement, the same indices for A and B) and a two-sided **paired permutation
  test** (sign flip: under H0 the two scores of a pair are exchangeable, so each pair's difference
  flips sign at random; exact over every sign pattern when at most ``EXACT_MAX`` pairs differ, else
  ``n_perm`` random patterns with the +1 correction, so p is never 0).
* **Differential-elicitation difference** ``DE_B − DE_A`` with ``DE = (gen − base) / ttc``: the
  target's pairs are resampled once per replicate for the generalization and baseline evaluations of
  both results, the target_reference's pairs once for both target-tuned evaluations. When A and B
  share their baseline and target-tuned evaluations (the usual case: the same zero-shot baseline),
  ``DE_B − DE_A = (acc_B − acc_A) / ttc`` and its p-value is the permutation test's; otherwise it is
  the two-sided bootstrap p-value ``min(1, 2·min(P*(d ≤ 0), P*(d ≥ 0)))``. ``de_test`` says which.
* **Holm–Bonferroni** adjusted p-values across the compared shifts (per metric), beside the raw ones.
* **Suite means** of the differences with a bootstrap interval: every replicate resamples each
  distribution once (a distribution read by several shifts uses the same indices in all of them) and
  averages the shifts' replicate differences.

Resampling draws from ``numpy.random.default_rng([seed, crc32(distribution)])``, so a shift's interval
does not depend on which other shifts are compared. Pairs of one example are resampled as separate
units (as the rows' CIs are); they are correlated, so intervals are slightly optimistic when examples
have several wrong responses.

Results whose evaluations of a distribution scored different pairs cannot be paired: that is an error
naming the shift, never a silent mismatch.
"""

from __future__ import annotations

import itertools
import math
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from genies.errors import DataError, StoreError
from genies.records import EvaluationRecord, ShiftResult, SuiteResult

if TYPE_CHECKING:
    from rich.console import RenderableType

EXACT_MAX = 16  # exact permutation test when at most this many pairs differ (2**16 sign patterns)
DEFAULT_PERMUTATIONS = 10_000
ACC_TEST = "paired permutation (sign-flip) test on per-pair scores"
DE_TEST_SHARED = "paired permutation test (baseline and target-tuned evaluations shared)"
DE_TEST_BOOT = "paired bootstrap two-sided p-value"


@dataclass
class ResultInfo:
    """Which result a side of the comparison is."""

    path: str
    suite: str
    intervention: str
    model: str | None
    limit: int | None
    seed: int

    @property
    def label(self) -> str:
        return f"{self.intervention} ({self.model})" if self.model else self.intervention


@dataclass
class ShiftComparison:
    """One shift: A's and B's figures, the differences B − A, intervals and p-values."""

    source: str
    target: str
    target_reference: str
    category: str | None
    n_pairs: int
    acc_a: float
    acc_b: float
    acc_diff: float
    acc_ci: tuple[float, float]
    acc_p: float
    de_a: float | None = None
    de_b: float | None = None
    de_diff: float | None = None
    de_ci: tuple[float, float] | None = None
    de_p: float | None = None
    de_test: str | None = None
    acc_p_holm: float = math.nan
    de_p_holm: float | None = None
    pairs_differing: int = 0

    @property
    def shift(self) -> str:
        return f"{self.source} → {self.target}"


@dataclass
class Comparison:
    """The paired comparison of result B against result A (differences are B − A)."""

    a: ResultInfo
    b: ResultInfo
    seed: int
    n_boot: int
    n_perm: int
    shifts: list[ShiftComparison]
    mean_acc_diff: float
    mean_acc_ci: tuple[float, float]
    mean_de_diff: float | None
    mean_de_ci: tuple[float, float] | None
    mean_de_shifts: int
    only_a: list[str] = field(default_factory=list)  # shifts in A only ("source → target")
    only_b: list[str] = field(default_factory=list)
    methods: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["kind"] = "comparison"
        return _finite(doc)


def _finite(x: Any) -> Any:
    """NaN → None everywhere (strict JSON)."""
    if isinstance(x, float):
        return None if math.isnan(x) else x
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_finite(v) for v in x]
    return x


# --------------------------------------------------------------------------------------- loading


def load_one(path: Path, suite: str | None) -> tuple[Path, SuiteResult]:
    """The one suite result that ``path`` (a JSON file or a folder) names; a clear error otherwise."""
    from genies.report.table import find_result_files, read_json_result

    path = Path(path)
    if not path.exists():
        raise DataError(f"no such results file or folder: {path}")
    files = find_result_files([path], suite)
    if path.is_dir():
        if not files:
            raise DataError(f"no genies run result{f' for suite {suite!r}' if suite else ''} under {path}")
        if len(files) > 1:
            names = ", ".join(str(f.relative_to(path)) for f in files[:4])
            raise DataError(f"{path} holds {len(files)} results ({names}…); pass one file or --suite")
    f = files[0]
    if f.suffix.lower() != ".json":
        why = "a CSV has no per-pair records" if f.suffix.lower() == ".csv" else "not a .json file"
        raise DataError(f"{f}: compare needs a genies run <suite>.json ({why})")
    res = read_json_result(f)
    if suite is not None and res.suite != suite and f.stem != suite:
        raise DataError(f"{f} holds suite {res.suite!r}, not {suite!r}")
    return f, res


def _info(path: Path, res: SuiteResult) -> ResultInfo:
    model = res.model.get("name") if res.model else None
    return ResultInfo(str(path), res.suite, res.intervention, model, res.limit, res.seed)


class _Records:
    """Evaluation records of a store, read once each by key through the browser's one reader."""

    def __init__(self, store: Path) -> None:
        self.store = store
        self._cache: dict[str, EvaluationRecord] = {}

    def get(self, key: str, what: str) -> EvaluationRecord:
        from genies.web.evaluations import read_evaluation

        if key not in self._cache:
            path = self.store / "evaluations" / key[:2] / f"{key}.json"
            rec = read_evaluation(path) if path.is_file() else None
            if rec is None:
                raise StoreError(
                    f"{what}: evaluation {key[:12]} is not a valid record in {self.store} "
                    "(pass the --store the run used, or rerun it)"
                )
            self._cache[key] = rec
        return self._cache[key]


def pair_scores(p: Sequence[float]) -> np.ndarray:
    """Per-pair score: 1 when p(correct) > ½, ½ on an exact tie, 0 otherwise (accuracy's definition)."""
    arr = np.asarray(p, dtype=np.float64)
    return np.where(arr > 0.5, 1.0, np.where(arr == 0.5, 0.5, 0.0))


# --------------------------------------------------------------------------------------- statistics


def permutation_p(d: np.ndarray, *, n_perm: int = DEFAULT_PERMUTATIONS, seed: int = 0) -> float:
    """Two-sided paired sign-flip permutation p-value of mean(d) = 0 (exact for few nonzero d)."""
    nz = d[d != 0]
    if nz.size == 0:
        return 1.0
    observed = abs(nz.sum()) - 1e-12
    if nz.size <= EXACT_MAX:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=nz.size)))
        return float(np.mean(np.abs(signs @ nz) >= observed))
    rng = np.random.default_rng([seed, 0x5EED])
    hits = 0
    for start in range(0, n_perm, 1000):  # blocks keep memory at 1000 × n
        m = min(1000, n_perm - start)
        signs = rng.choice((1.0, -1.0), size=(m, nz.size))
        hits += int(np.sum(np.abs(signs @ nz) >= observed))
    return (hits + 1) / (n_perm + 1)


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm–Bonferroni adjusted p-values (step-down, monotone, capped at 1); None stays None."""
    idx = [i for i, p in enumerate(pvalues) if p is not None and not math.isnan(p)]
    order = sorted(idx, key=lambda i: pvalues[i])  # type: ignore[arg-type, return-value]
    m = len(order)
    out: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * float(pvalues[i])))  # type: ignore[arg-type]
        out[i] = running
    return out


def _interval(x: np.ndarray) -> tuple[float, float]:
    x = x[~np.isnan(x)]
    if x.size == 0:
        return (math.nan, math.nan)
    lo, hi = np.percentile(x, [2.5, 97.5])
    return (float(lo), float(hi))


def _boot_p(x: np.ndarray) -> float:
    x = x[~np.isnan(x)]
    if x.size == 0:
        return math.nan
    return float(min(1.0, 2 * min(np.mean(x <= 0), np.mean(x >= 0))))


class _Resampler:
    """Bootstrap replicate accuracies: per distribution one [n_boot, n] index draw, shared by every
    evaluation of it (so shifts reading one distribution, and A and B, are resampled together)."""

    def __init__(self, seed: int, n_boot: int) -> None:
        self.seed, self.n_boot = seed, n_boot
        self._idx: dict[str, np.ndarray] = {}

    def means(self, dist: str, scores: np.ndarray) -> np.ndarray:
        idx = self._idx.get(dist)
        if idx is None or idx.shape[1] != scores.size:
            rng = np.random.default_rng([self.seed, zlib.crc32(dist.encode())])
            idx = self._idx[dist] = rng.integers(0, scores.size, size=(self.n_boot, scores.size))
        return scores[idx].mean(axis=1)


# --------------------------------------------------------------------------------------- comparing


def _same_pairs(what: str, a: EvaluationRecord, b: EvaluationRecord) -> None:
    if a.pair_ids != b.pair_ids:
        raise DataError(
            f"{what}: the two results scored different pairs of {a.eval_distribution} "
            f"({len(a.pair_ids)} vs {len(b.pair_ids)} pairs); they cannot be paired "
            "(rerun both with the same --limit, model tokenizer and data)"
        )


def _role(row: ShiftResult, role: str, records: _Records, side: str) -> EvaluationRecord | None:
    key = row.evaluation_keys.get(role)
    if not key:
        return None
    return records.get(key, f"{side} {row.source} → {row.target} ({role})")


def _de(gen: float, base: float, ttc: float) -> float:
    return (gen - base) / ttc if ttc else math.nan


def _compare_shift(
    ra: ShiftResult,
    rb: ShiftResult,
    recs_a: _Records,
    recs_b: _Records,
    boot: _Resampler,
    n_perm: int,
    seed: int,
) -> tuple[ShiftComparison, np.ndarray, np.ndarray | None]:
    shift = f"{ra.source} → {ra.target}"
    ga, gb = _role(ra, "generalization", recs_a, "A"), _role(rb, "generalization", recs_b, "B")
    if ga is None or gb is None:
        raise DataError(f"{shift}: a result has no generalization evaluation key (not a genies run JSON?)")
    _same_pairs(shift, ga, gb)
    sa, sb = pair_scores(ga.p_correct), pair_scores(gb.p_correct)
    d = sb - sa
    acc_boot = boot.means(ra.target, sb) - boot.means(ra.target, sa)
    out = ShiftComparison(
        source=ra.source,
        target=ra.target,
        target_reference=ra.target_reference,
        category=ra.category,
        n_pairs=int(d.size),
        acc_a=float(sa.mean()),
        acc_b=float(sb.mean()),
        acc_diff=float(d.mean()),
        acc_ci=_interval(acc_boot),
        acc_p=permutation_p(d, n_perm=n_perm, seed=seed),
        pairs_differing=int(np.count_nonzero(d)),
    )
    ba, bb = _role(ra, "baseline", recs_a, "A"), _role(rb, "baseline", recs_b, "B")
    ta, tb = _role(ra, "ttc", recs_a, "A"), _role(rb, "ttc", recs_b, "B")
    if None in (ba, bb, ta, tb) or ra.target_reference != rb.target_reference:
        return out, acc_boot, None
    assert ba is not None and bb is not None and ta is not None and tb is not None
    _same_pairs(f"{shift} (baseline)", ba, ga)
    _same_pairs(f"{shift} (baseline)", bb, gb)
    _same_pairs(f"{shift} (target-tuned)", ta, tb)
    reps, point = [], []
    for s, base, ttc in ((sa, ba, ta), (sb, bb, tb)):
        bs, ts = pair_scores(base.p_correct), pair_scores(ttc.p_correct)
        point.append(_de(float(s.mean()), float(bs.mean()), float(ts.mean())))
        ttc_boot = boot.means(ra.target_reference, ts)
        with np.errstate(divide="ignore", invalid="ignore"):
            reps.append(
                np.where(
                    ttc_boot != 0,
                    (boot.means(ra.target, s) - boot.means(ra.target, bs))
                    / np.where(ttc_boot != 0, ttc_boot, 1),
                    np.nan,
                )
            )
    de_boot = reps[1] - reps[0]
    shared = ba.key == bb.key and ta.key == tb.key
    out.de_a, out.de_b = _nan_none(point[0]), _nan_none(point[1])
    out.de_diff = None if out.de_a is None or out.de_b is None else out.de_b - out.de_a
    out.de_ci = _interval(de_boot)
    out.de_p = out.acc_p if shared else _boot_p(de_boot)
    out.de_test = DE_TEST_SHARED if shared else DE_TEST_BOOT
    return out, acc_boot, de_boot


def _nan_none(x: float) -> float | None:
    return None if math.isnan(x) else x


def compare_results(
    a: Path,
    b: Path,
    *,
    suite: str | None = None,
    seed: int = 0,
    n_boot: int = 2000,
    n_perm: int = DEFAULT_PERMUTATIONS,
    store: Path | None = None,
    store_b: Path | None = None,
) -> Comparison:
    """Compare result ``b`` against result ``a`` (differences are B − A) on their common shifts.

    ``a``/``b``: ``genies run`` output JSONs or folders holding one (``suite`` picks among several).
    ``store``: the result store holding their evaluation records (default: $GENIES_STORE_DIR or
    ~/.cache/genies/store); ``store_b`` when B's run used another store. Pure given the files.
    """
    from genies.paths import store_dir

    if n_boot < 1 or n_perm < 1:
        raise DataError("n_boot and n_perm must be at least 1")
    pa, res_a = load_one(Path(a), suite)
    pb, res_b = load_one(Path(b), suite)
    recs_a = _Records(store_dir(store))
    recs_b = recs_a if store_b is None else _Records(Path(store_b))
    rows_a = {(r.source, r.target): r for r in reversed(res_a.rows)}  # first occurrence wins
    rows_b = {(r.source, r.target): r for r in reversed(res_b.rows)}
    common = [k for k in dict.fromkeys((r.source, r.target) for r in res_a.rows) if k in rows_b]
    if not common:
        raise DataError(f"{pa} and {pb} have no shift in common")
    boot = _Resampler(seed, n_boot)
    shifts, acc_reps, de_reps = [], [], []
    for k in common:
        sc, acc_boot, de_boot = _compare_shift(rows_a[k], rows_b[k], recs_a, recs_b, boot, n_perm, seed)
        shifts.append(sc)
        acc_reps.append(acc_boot)
        if de_boot is not None and sc.de_diff is not None:
            de_reps.append(de_boot)
    for sc, h in zip(shifts, holm([s.acc_p for s in shifts]), strict=True):
        sc.acc_p_holm = h if h is not None else math.nan
    for sc, h in zip(shifts, holm([s.de_p for s in shifts]), strict=True):
        sc.de_p_holm = h
    de_diffs = [s.de_diff for s in shifts if s.de_diff is not None]
    return Comparison(
        a=_info(pa, res_a),
        b=_info(pb, res_b),
        seed=seed,
        n_boot=n_boot,
        n_perm=n_perm,
        shifts=shifts,
        mean_acc_diff=float(np.mean([s.acc_diff for s in shifts])),
        mean_acc_ci=_interval(np.mean(acc_reps, axis=0)),
        mean_de_diff=float(np.mean(de_diffs)) if de_diffs else None,
        mean_de_ci=_interval(np.mean(de_reps, axis=0)) if de_reps else None,
        mean_de_shifts=len(de_diffs),
        only_a=[f"{s} → {t}" for s, t in rows_a if (s, t) not in rows_b],
        only_b=[f"{s} → {t}" for s, t in rows_b if (s, t) not in rows_a],
        methods={
            "difference": "B − A",
            "ci": f"paired percentile bootstrap 95%, {n_boot} resamples of pairs, seed {seed}",
            "accuracy_p": ACC_TEST
            + f" (exact up to {EXACT_MAX} differing pairs, else {n_perm} permutations)",
            "de_p": f"{DE_TEST_SHARED}; otherwise {DE_TEST_BOOT}",
            "multiple_testing": "Holm–Bonferroni across the compared shifts, per metric",
        },
    )


# --------------------------------------------------------------------------------------- rendering


def _f(x: float | None, signed: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:+.3f}" if signed else f"{x:.3f}"


def _ci(ci: tuple[float, float] | None) -> str:
    if ci is None or any(math.isnan(v) for v in ci):
        return "–"
    return f"[{ci[0]:+.3f}, {ci[1]:+.3f}]"


def _p(p: float | None) -> str:
    if p is None or math.isnan(p):
        return "–"
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def render(c: Comparison) -> RenderableType:
    """A rich table: one row per shift (A, B, B − A with CI, p, Holm p for accuracy and DE), the means."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    t = Table(
        title=f"B − A: B = {c.b.label}, A = {c.a.label}",
        title_justify="left",
        caption=(
            f"A: {c.a.path}\nB: {c.b.path}\nCI: {c.methods['ci']}\n"
            f"p (acc): {c.methods['accuracy_p']}\np (DE): {c.methods['de_p']}\n"
            "Holm: Holm–Bonferroni-adjusted p across the shifts; * = Holm p < 0.05"
        ),
        caption_justify="left",
    )
    for col in ("shift", "pairs", "acc A", "acc B", "Δ acc", "95% CI", "p", "Holm"):
        t.add_column(col, justify="left" if col == "shift" else "right", no_wrap=col != "shift")
    for col in ("DE A", "DE B", "Δ DE", "95% CI ", "p ", "Holm "):
        t.add_column(col, justify="right", no_wrap=True)
    for s in c.shifts:
        star = "*" if s.acc_p_holm < 0.05 else ""
        t.add_row(
            s.shift,
            str(s.n_pairs),
            _f(s.acc_a),
            _f(s.acc_b),
            _f(s.acc_diff, True),
            _ci(s.acc_ci),
            _p(s.acc_p),
            _p(s.acc_p_holm) + star,
            _f(s.de_a),
            _f(s.de_b),
            _f(s.de_diff, True),
            _ci(s.de_ci),
            _p(s.de_p),
            _p(s.de_p_holm) + ("*" if s.de_p_holm is not None and s.de_p_holm < 0.05 else ""),
        )
    t.add_section()
    n = len(c.shifts)
    t.add_row(
        f"mean over {n} shift{'s' * (n != 1)}",
        "",
        "",
        "",
        _f(c.mean_acc_diff, True),
        _ci(c.mean_acc_ci),
        "",
        "",
        "",
        "",
        _f(c.mean_de_diff, True),
        _ci(c.mean_de_ci),
        "",
        "",
        style="bold cyan",
    )
    parts: list[Any] = [t]
    for side, only in (("A", c.only_a), ("B", c.only_b)):
        if only:
            parts.append(Text(f"only in {side} (not compared): {', '.join(only)}", style="yellow"))
    return Group(*parts)
