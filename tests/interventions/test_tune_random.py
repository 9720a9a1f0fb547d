"""The `random` chance baseline: accuracy 0.5 in expectation (upstream's scored 0), seeded per pair."""

from __future__ import annotations

import numpy as np
import pytest

from genies.api.context import InterventionContext
from genies.data.schema import Pair
from genies.interventions.registry import get_intervention
from genies.metrics import summarize


def _pairs(n: int) -> list[Pair]:
    return [Pair(f"{i}/1", f"prompt {i}", "good", "bad", i) for i in range(n)]


@pytest.mark.parametrize("mode", ["uniform", "coin", "constant"])
def test_random_is_chance_and_seeded(mode):
    it = get_intervention("random")
    cfg = it.make_config({"mode": mode})
    pairs = _pairs(4000)
    ctx = InterventionContext(seed=7)
    state = it.fit(ctx, None, cfg)
    p = it.score_pairs(ctx, state, pairs, cfg).p_correct
    acc = summarize(p)["accuracy"]
    assert abs(acc - 0.5) < 0.03
    again = it.score_pairs(InterventionContext(seed=7), state, pairs[::-1], cfg).p_correct[::-1]
    np.testing.assert_array_equal(p, again)  # seeded, independent of order
    other = it.score_pairs(InterventionContext(seed=8), state, pairs, cfg).p_correct
    assert (mode == "constant") == np.array_equal(p, other)
    if mode == "constant":
        assert acc == 0.5 and summarize(p)["rms_calibration_error"] == pytest.approx(0.0)
    if mode == "coin":
        assert set(np.round(p, 6)) == {0.25, 0.75}
