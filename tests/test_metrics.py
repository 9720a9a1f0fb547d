"""genies.metrics against values worked out by hand (in the comments)."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from genies import metrics as m
from genies.errors import ConfigError, ValidationError
from genies.records import EvaluationRecord

# One small example used throughout: a confident right answer, a tie, a wrong answer, a mild right one.
P = [0.9, 0.5, 0.2, 0.7]


def _global_flips(n: int) -> list[int]:
    """What upstream draws: random.seed(42) then random.choice([0, 1]) n times (global state restored)."""
    state = random.getstate()
    try:
        random.seed(42)
        return [random.choice([0, 1]) for _ in range(n)]
    finally:
        random.setstate(state)


# --- accuracy, ties, brier, average probability ----------------------------------------------------


def test_accuracy_tie_policies():
    # half: 1 + 0.5 + 0 + 1 = 2.5 → 2.5 / 4 = 0.625; upstream (p >= 0.5): 1 + 1 + 0 + 1 = 3 → 0.75
    assert m.accuracy(P) == pytest.approx(0.625)
    assert m.accuracy(P, tie_policy="half") == pytest.approx(0.625)
    assert m.accuracy(P, tie_policy="upstream") == pytest.approx(0.75)
    assert m.tie_count(P) == 1
    assert m.tie_rate(P) == pytest.approx(0.25)


def test_tie_is_exactly_one_half():
    # 0.5 + 1e-12 is a (narrow) win, 0.5 - 1e-12 a loss: neither is a tie.
    p = [0.5 + 1e-12, 0.5 - 1e-12]
    assert m.tie_count(p) == 0
    assert m.accuracy(p) == 0.5
    assert m.accuracy(p, "upstream") == 0.5


def test_all_ties():
    p = [0.5] * 8
    assert m.accuracy(p) == 0.5  # chance, as it should be
    assert m.accuracy(p, "upstream") == 1.0  # the upstream bias toward the correct response
    assert m.tie_count(p) == 8
    assert m.tie_rate(p) == 1.0
    # every pair has confidence 0.5 and counts half right → perfectly calibrated
    assert m.rms_calibration_error(p) == 0.0
    assert m.expected_calibration_error(p) == 0.0


def test_brier_and_average_probability():
    # (0.1² + 0.5² + 0.8² + 0.3²) / 4 = (0.01 + 0.25 + 0.64 + 0.09) / 4 = 0.2475
    assert m.brier_score(P) == pytest.approx(0.2475)
    # (0.9 + 0.5 + 0.2 + 0.7) / 4 = 0.575
    assert m.average_probability(P) == pytest.approx(0.575)
    assert m.brier_score([1.0, 1.0]) == 0.0
    assert m.brier_score([0.0]) == 1.0


def test_empty_input_gives_nan():
    for fn in (
        m.accuracy,
        m.tie_rate,
        m.brier_score,
        m.average_probability,
        m.rms_calibration_error,
        m.expected_calibration_error,
        m.rms_calibration_error_upstream,
    ):
        assert math.isnan(fn([])), fn.__name__
    assert m.tie_count([]) == 0
    assert all(math.isnan(v) for v in m.summarize([]).values())


@pytest.mark.parametrize("bad", [[0.5, float("nan")], [1.2], [-0.1], [[0.5, 0.5]]])
def test_bad_probabilities_raise(bad):
    with pytest.raises(ValidationError):
        m.accuracy(bad)


def test_unknown_tie_policy():
    with pytest.raises(ConfigError, match="tie_policy"):
        m.accuracy(P, tie_policy="optimistic")  # type: ignore[arg-type]


# --- calibration (top-label, default) -------------------------------------------------------------


def test_rms_and_ece_hand_computed():
    # Top-label: confidence max(p, 1 − p), correct when p > 0.5 (a tie half), 10 bins over [0.5, 1].
    # p = 0.9 → conf 0.9, correct 1   gap 0.1   (bin [.90, .95))
    # p = 0.5 → conf 0.5, correct 0.5 gap 0     (bin [.50, .55))
    # p = 0.2 → conf 0.8, correct 0   gap 0.8   (bin [.80, .85))
    # p = 0.7 → conf 0.7, correct 1   gap 0.3   (bin [.70, .75))
    # RMS² = (0.01 + 0 + 0.64 + 0.09) / 4 = 0.185;  ECE = (0.1 + 0 + 0.8 + 0.3) / 4 = 0.3
    assert m.rms_calibration_error(P) == pytest.approx(math.sqrt(0.185))
    assert m.expected_calibration_error(P) == pytest.approx(0.3)


def test_issue_example_a_barely_confident_but_mostly_right_classifier():
    # 72 pairs at p = 0.52 and 28 at 0.48: every pair has confidence 0.52, 72% of the picks are right.
    # One bin: |0.72 − 0.52| = 0.20. (The old symmetric-set metric said 0 here: p and 1 − p cancel.)
    p = [0.52] * 72 + [0.48] * 28
    assert m.accuracy(p) == pytest.approx(0.72)
    assert m.expected_calibration_error(p) == pytest.approx(0.20)
    assert m.rms_calibration_error(p) == pytest.approx(0.20)


@pytest.mark.parametrize(("value", "expected"), [(0.45, 0.55), (0.55, 0.45), (0.40, 0.60), (0.6, 0.4)])
def test_constant_probabilities_in_the_middle_band_are_miscalibrated(value, expected):
    # [0.45] * 100: always wrong at confidence 0.55 → 0.55; [0.55] * 100: always right at 0.55 → 0.45.
    assert m.expected_calibration_error([value] * 100) == pytest.approx(expected)
    assert m.rms_calibration_error([value] * 100) == pytest.approx(expected)


def test_perfectly_calibrated_synthetic_set_is_near_zero():
    # Confidence c ~ U(0.5, 1); the pick is right with probability c; p = c if right else 1 − c.
    rng = np.random.default_rng(11)
    c = rng.uniform(0.5, 1.0, 200_000)
    right = rng.random(c.size) < c
    p = np.where(right, c, 1.0 - c)
    assert m.expected_calibration_error(p) < 0.005
    assert m.rms_calibration_error(p) < 0.006
    # The same confidences with every pick wrong: ECE = mean confidence ≈ 0.75.
    assert m.expected_calibration_error(1.0 - c) == pytest.approx(float(np.mean(c)), abs=1e-12)


def test_overconfident_set_is_caught_bin_by_bin():
    # Confidence 0.9 but right only 60% of the time, and confidence 0.6 right 90% of the time:
    # each bin is off by 0.3 though the overall mean confidence (0.75) equals the accuracy (0.75).
    p = [0.9] * 60 + [0.1] * 40 + [0.6] * 90 + [0.4] * 10
    assert m.accuracy(p) == pytest.approx(0.75)
    assert m.expected_calibration_error(p) == pytest.approx(0.3)
    assert m.rms_calibration_error(p) == pytest.approx(0.3)


def test_calibration_extremes_and_ties():
    # Certain and always right: confidence 1 in the closed last bin, accuracy 1 → 0.
    assert m.rms_calibration_error([1.0, 1.0, 1.0]) == 0.0
    # Certain and always wrong: confidence 1, accuracy 0 → 1.
    assert m.rms_calibration_error([0.0, 0.0]) == 1.0
    assert m.expected_calibration_error([0.0, 0.0]) == 1.0
    # Ties: confidence 0.5, half right → perfectly calibrated.
    assert m.expected_calibration_error([0.5] * 9) == 0.0


def test_calibration_does_not_depend_on_order():
    rng = np.random.default_rng(3)
    p = rng.random(101)
    assert m.rms_calibration_error(p) == pytest.approx(m.rms_calibration_error(p[::-1]))
    assert m.expected_calibration_error(p) == pytest.approx(m.expected_calibration_error(rng.permutation(p)))


def test_number_of_bins_matters_and_is_checked():
    # Right at 0.52 and wrong at 0.58: one 0.1-wide bin [.5, .6) averages them (|0.5 − 0.55| = 0.05),
    # two 0.05-wide bins see both gaps (0.48 and 0.58).
    p = [0.52] * 50 + [0.42] * 50
    assert m.expected_calibration_error(p, n_bins=5) == pytest.approx(0.05)
    assert m.expected_calibration_error(p) == pytest.approx((0.48 + 0.58) / 2)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ConfigError, match="n_bins"):
            m.expected_calibration_error(p, n_bins=bad)  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="n_bins"):
            m.reliability_diagram(p, n_bins=bad)  # type: ignore[arg-type]


def test_reliability_diagram_shape_and_values():
    bins = m.reliability_diagram(P)
    assert len(bins) == m.CALIBRATION_BINS == 10
    assert all(isinstance(b, m.ReliabilityBin) for b in bins)
    assert bins[0].lo == 0.5 and bins[-1].hi == 1.0
    assert all(a.hi == pytest.approx(b.lo) for a, b in zip(bins, bins[1:], strict=False))
    assert all(b.hi - b.lo == pytest.approx(0.05) for b in bins)
    assert sum(b.count for b in bins) == len(P)
    full = {round(b.lo, 2): b for b in bins if b.count}
    assert set(full) == {0.5, 0.7, 0.8, 0.9}
    assert full[0.5].mean_confidence == 0.5 and full[0.5].accuracy == 0.5  # the tie
    assert full[0.8].mean_confidence == pytest.approx(0.8) and full[0.8].accuracy == 0.0
    assert full[0.9].accuracy == 1.0
    empty = [b for b in bins if not b.count]
    assert all(math.isnan(b.mean_confidence) and math.isnan(b.accuracy) for b in empty)
    # The ECE is the count-weighted mean gap of these bins.
    ece = sum(b.count * abs(b.accuracy - b.mean_confidence) for b in bins if b.count) / len(P)
    assert ece == pytest.approx(m.expected_calibration_error(P))
    assert m.reliability_diagram([0.3, 0.8], n_bins=2)[1]._asdict() == {
        "lo": 0.75,
        "hi": 1.0,
        "count": 1,
        "mean_confidence": pytest.approx(0.8),
        "accuracy": 1.0,
    }
    assert [b.count for b in m.reliability_diagram([])] == [0] * 10


def test_metrics_version_is_bumped_for_the_new_calibration_definition():
    # Records computed with version "1" hold the old symmetric-set figures; the store recomputes them.
    assert m.METRICS_VERSION == "2"


# --- calibration (upstream, bug-compatible) --------------------------------------------------------


def test_upstream_flips_equal_global_random_sequence_and_leave_it_alone():
    before = random.getstate()
    flips = m.upstream_flips(3000)
    assert random.getstate() == before  # the global RNG is never touched
    assert flips.tolist() == _global_flips(3000)
    # A shorter request after a longer one is the same prefix.
    assert m.upstream_flips(10).tolist() == flips[:10].tolist()


def test_rms_upstream_constant_probability():
    # p = 0.3 for 100 pairs: q = 0.3 where z = 1 (bin [.2,.4)), 0.7 where z = 0 (bin [.6,.8)).
    # With k ones among the 100 flips (both bins >= 20 members), each bin's square is
    # (mean z − bin value)²: rms = sqrt(((k/100 − 0.3)² + (k/100 − 0.7)²) / 2).
    z = _global_flips(100)
    k = sum(z)
    assert 20 <= k <= 80
    mz = k / 100
    expected = math.sqrt(((mz - 0.3) ** 2 + (mz - 0.7) ** 2) / 2)
    assert m.rms_calibration_error_upstream([0.3] * 100) == pytest.approx(expected, abs=1e-12)


def test_rms_upstream_uses_global_label_mean_for_ties():
    # All ties: q = 0.5 everywhere → one bin; the gap is mean(z) − 0.5 (the global-label-mean bug),
    # although a set of ties is perfectly calibrated (the correct metric says 0).
    z = _global_flips(100)
    assert m.rms_calibration_error_upstream([0.5] * 100) == pytest.approx(abs(sum(z) / 100 - 0.5))
    assert m.rms_calibration_error([0.5] * 100) == 0.0


def test_rms_upstream_drops_exact_one():
    # p = 1.0: where z = 1, q = 1.0 is beyond the last edge and dropped; where z = 0, q = 0.0 sits in
    # bin [0,.2) with value 0, so rms = |mean(z) − 0| = mean(z) over ALL 100 flips.
    z = _global_flips(100)
    assert 100 - sum(z) >= 20
    assert m.rms_calibration_error_upstream([1.0] * 100) == pytest.approx(sum(z) / 100)


def test_rms_upstream_nan_without_a_full_bin():
    # 19 pairs can never fill a bin of 20.
    assert math.isnan(m.rms_calibration_error_upstream([0.3] * 19))
    # p = 1.0 where z = 1 and p = 0.0 where z = 0: every q is exactly 1.0, beyond the last edge.
    z = np.asarray(_global_flips(100))
    p = np.where(z == 1, 1.0, 0.0)  # q = 1.0 for every pair → everything dropped
    assert math.isnan(m.rms_calibration_error_upstream(p))


def test_rms_upstream_matches_a_literal_transcription():
    # The §3.5 steps written out one by one with the global RNG (state restored afterwards).
    rng = np.random.default_rng(0)
    p = rng.random(750)
    p[:40] = 0.5
    p[40:50] = 1.0
    z = np.asarray(_global_flips(len(p)))
    q = np.array([pi if zi == 1 else 1 - pi for pi, zi in zip(p, z, strict=True)])
    idx = np.digitize(q, [0, 0.2, 0.4, 0.6, 0.8, 1.0])
    squares = [(np.mean(z) - np.mean(q[idx == b])) ** 2 for b in range(1, 6) if np.sum(idx == b) >= 20]
    assert m.rms_calibration_error_upstream(p) == math.sqrt(np.mean(squares))


# --- differential elicitation ------------------------------------------------------------------------


def test_differential_elicitation():
    # (0.6 − 0.5) / 0.8 = 0.125
    assert m.differential_elicitation(0.6, 0.5, 0.8) == pytest.approx(0.125)
    assert m.differential_elicitation(0.4, 0.5, 0.5) == pytest.approx(-0.2)
    assert math.isnan(m.differential_elicitation(None, 0.5, 0.8))
    assert math.isnan(m.differential_elicitation(0.6, float("nan"), 0.8))
    assert math.isnan(m.differential_elicitation(0.6, 0.5, None))
    assert math.isnan(m.differential_elicitation(0.6, 0.5, 0.0))


# --- bootstrap ---------------------------------------------------------------------------------------


def test_bootstrap_accuracy_ci_is_seeded_and_leaves_global_rngs_alone():
    p = np.random.default_rng(1).random(300)
    py_state, np_state = random.getstate(), np.random.get_state()
    a = m.bootstrap_accuracy_ci(p, seed=7)
    assert random.getstate() == py_state
    assert np.array_equal(np.random.get_state()[1], np_state[1])
    assert m.bootstrap_accuracy_ci(p, seed=7) == a
    assert m.bootstrap_accuracy_ci(p, seed=8) != a
    lo, hi = a
    assert lo < m.accuracy(p) < hi


def test_bootstrap_accuracy_ci_width():
    # 400 pairs at accuracy 0.5: the normal approximation gives ±1.96·sqrt(.25/400) ≈ ±0.049.
    p = np.array([0.9, 0.1] * 200)
    lo, hi = m.bootstrap_accuracy_ci(p, n_resamples=2000, seed=0)
    assert 0.08 < hi - lo < 0.12
    assert lo < 0.5 < hi


def test_bootstrap_degenerate_and_empty():
    assert m.bootstrap_accuracy_ci([1.0] * 30) == (1.0, 1.0)
    assert m.bootstrap_accuracy_ci([0.5] * 30) == (0.5, 0.5)  # ties count half
    assert m.bootstrap_accuracy_ci([0.5] * 30, tie_policy="upstream") == (1.0, 1.0)
    assert all(math.isnan(x) for x in m.bootstrap_accuracy_ci([]))
    # gen always right, baseline always wrong, ttc fixed at 0.5: every replicate is (1 − 0) / 0.5 = 2
    assert m.bootstrap_de_ci([1.0] * 20, [0.0] * 20, 0.5) == (2.0, 2.0)
    assert all(math.isnan(x) for x in m.bootstrap_de_ci([1.0], [], 0.5))
    assert all(math.isnan(x) for x in m.bootstrap_de_ci([1.0], [0.0], 0.0))


def test_bootstrap_de_ci_contains_point_estimate_and_grows_with_ttc_noise():
    rng = np.random.default_rng(2)
    gen = (rng.random(500) < 0.7).astype(float)
    base = (rng.random(500) < 0.5).astype(float)
    ttc_p = (rng.random(500) < 0.9).astype(float)
    point = m.differential_elicitation(m.accuracy(gen), m.accuracy(base), m.accuracy(ttc_p))
    fixed = m.bootstrap_de_ci(gen, base, m.accuracy(ttc_p), seed=3)
    resampled = m.bootstrap_de_ci(gen, base, ttc_p, seed=3)
    assert fixed[0] < point < fixed[1]
    assert resampled[0] < point < resampled[1]
    assert resampled[1] - resampled[0] > fixed[1] - fixed[0]
    # the dispatcher gives the same numbers
    assert m.bootstrap_ci(gen, base, ttc_p, seed=3) == resampled
    assert m.bootstrap_ci(gen, seed=3) == m.bootstrap_accuracy_ci(gen, seed=3)


def test_bootstrap_large_input_is_blocked_but_equal_in_distribution():
    # 20,000 pairs exceed one block of indices; the interval must still be sane.
    p = (np.random.default_rng(4).random(20_000) < 0.3).astype(float)
    lo, hi = m.bootstrap_accuracy_ci(p, n_resamples=1000, seed=0)
    assert lo < m.accuracy(p) < hi
    assert hi - lo == pytest.approx(2 * 1.96 * math.sqrt(0.3 * 0.7 / 20_000), rel=0.15)


def test_bootstrap_bad_args():
    with pytest.raises(ConfigError):
        m.bootstrap_accuracy_ci(P, n_resamples=0)
    with pytest.raises(ConfigError):
        m.bootstrap_accuracy_ci(P, confidence=1.5)
    with pytest.raises(ConfigError):
        m.bootstrap_ci(P, target_tuned_capability=0.9)
    with pytest.raises(ConfigError):
        m.bootstrap_ci(P, P)


# --- summarize ---------------------------------------------------------------------------------------


def test_summarize_keys_match_the_record_schema():
    doc = EvaluationRecord.__doc__ or ""
    s = m.summarize(P)
    assert tuple(s) == m.SUMMARY_KEYS
    for key in s:
        assert f"``{key}``" in doc, key
    assert all(isinstance(v, float) for v in s.values())
    assert s["accuracy"] == pytest.approx(0.625)
    assert s["accuracy_upstream"] == pytest.approx(0.75)
    assert s["tie_rate"] == pytest.approx(0.25)
    assert s["brier_score"] == pytest.approx(0.2475)
    assert s["ece"] == pytest.approx(0.3)
    assert s["rms_calibration_error"] == pytest.approx(math.sqrt(0.185))
    assert math.isnan(s["rms_calibration_error_upstream"])  # 4 pairs never fill a bin of 20
    assert m.summarize(P, tie_policy="upstream")["accuracy"] == pytest.approx(0.75)


def test_bootstrap_de_ci_is_paired_over_the_shared_target_pairs():
    """A generalization evaluation identical to its baseline (zero_shot's own row) has DE exactly 0,
    and so has every replicate: the interval is [0, 0], not two independent noises."""
    rng = np.random.default_rng(0)
    p = rng.uniform(size=60)
    assert m.bootstrap_de_ci(p, p, 0.8, seed=1) == (0.0, 0.0)
    shifted = np.where(p > 0.5, p, 1 - p)  # right on every pair the baseline gets wrong, or equal
    lo, hi = m.bootstrap_de_ci(shifted, p, 1.0, seed=1)
    assert 0.0 <= lo <= m.accuracy(shifted) - m.accuracy(p) <= hi
