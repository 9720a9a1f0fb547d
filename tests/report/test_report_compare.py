"""genies.report.compare on constructed results: known differences, identical runs, refusals."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from report_helpers import probs, write_result

from genies.errors import GeniesError
from genies.report.compare import compare_results, holm, permutation_p, render

SHIFTS = [("s1", "t1", "skill"), ("s2", "t2", "skill"), ("s3", "t3", "context")]


@pytest.fixture
def setup(tmp_path):
    rng = np.random.default_rng(1)
    store = tmp_path / "store"
    n = 300
    base = {t: probs(rng, n, 0.6) for _, t, _ in SHIFTS}
    ttc = {t: probs(rng, n, 0.9) for _, t, _ in SHIFTS}
    gen_a = {t: probs(rng, n, 0.6) for _, t, _ in SHIFTS}
    return tmp_path, store, base, ttc, gen_a, rng


def _better(gen: dict[str, list[float]], shift: str, flip: int) -> dict[str, list[float]]:
    """B = A with ``flip`` of the wrong pairs of ``shift`` made right (a known +flip/n difference)."""
    out = {k: list(v) for k, v in gen.items()}
    wrong = [i for i, p in enumerate(out[shift]) if p < 0.5][:flip]
    for i in wrong:
        out[shift][i] = 1 - out[shift][i]
    return out


def test_known_difference_is_found(setup):
    tmp, store, base, ttc, gen_a, _ = setup
    gen_b = _better(gen_a, "t2", 45)  # +0.15 on t2, nothing elsewhere
    a = write_result(tmp / "r", store, "iv_a", SHIFTS, gen_a, base, ttc)
    b = write_result(tmp / "r", store, "iv_b", SHIFTS, gen_b, base, ttc)
    c = compare_results(a, b, store=store, n_boot=500)
    by = {s.target: s for s in c.shifts}
    assert by["t2"].acc_diff == pytest.approx(45 / 300)
    lo, hi = by["t2"].acc_ci
    assert 0 < lo < 45 / 300 < hi
    assert by["t2"].acc_p < 1e-3 and by["t2"].acc_p_holm < 0.01
    assert by["t2"].pairs_differing == 45
    ttc2 = np.mean(np.asarray(ttc["t2"]) > 0.5)
    assert by["t2"].de_diff == pytest.approx((45 / 300) / ttc2)
    assert by["t2"].de_ci[0] > 0 and by["t2"].de_p == by["t2"].acc_p  # shared baseline and TTC
    for t in ("t1", "t3"):
        assert by[t].acc_diff == 0 and by[t].acc_p == 1.0 and by[t].acc_ci == (0.0, 0.0)
    assert c.mean_acc_diff == pytest.approx(0.05)
    assert c.mean_acc_ci[0] > 0
    # JSON round trip and the rich rendering
    doc = json.loads(json.dumps(c.to_dict(), allow_nan=False))
    assert doc["methods"]["accuracy_p"].startswith("paired permutation")
    from rich.console import Console

    console = Console(record=True, width=250)
    console.print(render(c))
    text = console.export_text()
    assert "s2 → t2" in text and "+0.150" in text and "Holm" in text


def test_identical_runs_give_zero_difference_and_p_one(setup):
    tmp, store, base, ttc, gen_a, _ = setup
    a = write_result(tmp / "r", store, "iv_a", SHIFTS, gen_a, base, ttc)
    b = write_result(tmp / "r2", store, "iv_a", SHIFTS, gen_a, base, ttc)
    c = compare_results(a, b, store=store, n_boot=200)
    for s in c.shifts:
        assert s.acc_ci[0] <= 0 <= s.acc_ci[1]
        assert s.acc_p == pytest.approx(1.0) and s.acc_p_holm == pytest.approx(1.0)
        assert s.de_diff == 0 and s.de_ci[0] <= 0 <= s.de_ci[1]
    assert c.mean_acc_ci[0] <= 0 <= c.mean_acc_ci[1]


def test_noise_only_difference_is_not_significant(setup):
    tmp, store, base, ttc, gen_a, rng = setup
    gen_b = {t: probs(rng, 300, 0.6) for t in gen_a}  # same accuracy, independent draws
    a = write_result(tmp / "r", store, "iv_a", SHIFTS, gen_a, base, ttc)
    b = write_result(tmp / "r", store, "iv_b", SHIFTS, gen_b, base, ttc)
    c = compare_results(a, b, store=store, n_boot=300)
    assert all(s.acc_ci[0] < 0.12 and s.acc_ci[1] > -0.12 for s in c.shifts)
    assert all(s.acc_p_holm >= s.acc_p for s in c.shifts)


def test_seeded_and_deterministic(setup):
    tmp, store, base, ttc, gen_a, _ = setup
    gen_b = _better(gen_a, "t1", 10)
    a = write_result(tmp / "r", store, "iv_a", SHIFTS, gen_a, base, ttc)
    b = write_result(tmp / "r", store, "iv_b", SHIFTS, gen_b, base, ttc)
    one = compare_results(a, b, store=store, n_boot=300, seed=3).to_dict()
    two = compare_results(a, b, store=store, n_boot=300, seed=3).to_dict()
    assert one == two
    other = compare_results(a, b, store=store, n_boot=300, seed=4).to_dict()
    assert other["shifts"][0]["acc_ci"] != one["shifts"][0]["acc_ci"]


def test_mismatched_pair_ids_refused(setup):
    tmp, store, base, ttc, gen_a, _ = setup
    a = write_result(tmp / "r", store, "iv_a", SHIFTS, gen_a, base, ttc)
    other_ids = {"t3": [f"{i}/2" for i in range(300)]}
    b = write_result(tmp / "r", store, "iv_b", SHIFTS, gen_a, base, ttc, pair_ids=other_ids)
    with pytest.raises(GeniesError, match=r"s3 → t3: the two results scored different pairs of t3"):
        compare_results(a, b, store=store, n_boot=50)


def test_missing_records_and_no_common_shift(setup, tmp_path):
    tmp, store, base, ttc, gen_a, _ = setup
    a = write_result(tmp / "r", store, "iv_a", SHIFTS, gen_a, base, ttc)
    with pytest.raises(GeniesError, match="not a valid record"):
        compare_results(a, a, store=tmp_path / "elsewhere")
    b = write_result(tmp / "r", store, "iv_b", [("s9", "t1", "skill")], gen_a, base, ttc)
    with pytest.raises(GeniesError, match="no shift in common"):
        compare_results(a, b, store=store)


def test_partial_overlap_lists_the_rest(setup):
    tmp, store, base, ttc, gen_a, _ = setup
    a = write_result(tmp / "r", store, "iv_a", SHIFTS, gen_a, base, ttc)
    b = write_result(tmp / "r", store, "iv_b", SHIFTS[:2], gen_a, base, ttc)
    c = compare_results(a.parent, b.parent, store=store, n_boot=50)  # folders work too
    assert [s.target for s in c.shifts] == ["t1", "t2"] and c.only_a == ["s3 → t3"] and not c.only_b


def test_permutation_p_exact_and_monte_carlo():
    d = np.zeros(40)
    d[:3] = 1.0  # 3 differing pairs, all one way: exact p = 2 / 8
    assert permutation_p(d) == pytest.approx(0.25)
    big = np.concatenate([np.ones(60), -np.ones(20), np.zeros(20)])
    p = permutation_p(big, n_perm=4000)
    assert 0 < p < 1e-3  # P(|Binomial(80, ½) − 40| ≥ 20) ≈ 1e-5; the +1 correction floors it
    assert permutation_p(np.zeros(5)) == 1.0


def test_holm():
    assert holm([0.01, 0.04, 0.03, None]) == pytest.approx([0.03, 0.06, 0.06, None])
    assert holm([0.5, 0.9]) == [1.0, 1.0]
    assert holm([]) == [] and math.isnan(float("nan"))
