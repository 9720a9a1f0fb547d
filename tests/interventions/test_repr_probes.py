"""ccs (both modes), lat_pca, linear_probe on planted synthetic activations (no model)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from repr_helpers import PLANT_LAYER, PlantedContext, accuracy, make_split

from genies.api.intervention import InterventionState
from genies.errors import ConfigError, StoreError
from genies.interventions.registry import get_intervention

FAST_CCS = {"num_epochs": 300, "num_restarts": 2}
CASES = [("ccs", FAST_CCS), ("lat_pca", {}), ("linear_probe", {})]


def _fit(name, ctx=None, n=60, **cfg):
    iv = get_intervention(name)
    config = iv.make_config(cfg)
    ctx = ctx or PlantedContext()
    return iv, config, ctx, iv.fit(ctx, make_split(n), config)


@pytest.mark.parametrize(("name", "cfg"), CASES)
def test_planted_direction_is_recovered(name, cfg):
    iv, config, ctx, state = _fit(name, **cfg)
    pairs = make_split(50, offset=1000, n_responses=3, name="test").to_pairs("all")
    scored = iv.score_pairs(ctx, state, pairs, config)
    assert accuracy(scored) >= 0.95
    if name != "ccs":
        assert state.meta["layer"] == PLANT_LAYER
        assert len(state.meta["layer_accuracy"]) == 4
        assert scored.info["layer"] == PLANT_LAYER


@pytest.mark.parametrize(("name", "cfg"), CASES)
def test_batch_and_order_invariance(name, cfg):
    iv, config, ctx, state = _fit(name, ctx=PlantedContext(strength=0.8), **cfg)
    pairs = make_split(30, offset=500, n_responses=3, name="test").to_pairs("all")
    whole = iv.score_pairs(ctx, state, pairs, config).p_correct
    assert 0.02 < np.median(whole) < 0.998
    order = np.random.default_rng(0).permutation(len(pairs))
    shuffled = iv.score_pairs(ctx, state, [pairs[i] for i in order], config).p_correct
    np.testing.assert_allclose(shuffled, whole[order], atol=1e-5)
    pieces = [iv.score_pairs(ctx, state, pairs[i : i + 7], config).p_correct for i in range(0, len(pairs), 7)]
    np.testing.assert_allclose(np.concatenate(pieces), whole, atol=1e-5)
    swapped = [dataclasses.replace(p, correct=p.incorrect, incorrect=p.correct) for p in pairs]
    np.testing.assert_allclose(iv.score_pairs(ctx, state, swapped, config).p_correct, 1 - whole, atol=1e-5)


def test_ccs_pairwise_sign_is_chosen_on_training_labels():
    # The planted truth direction points the other way: CCS is sign-blind, the training labels fix it.
    iv, config, ctx, state = _fit("ccs", ctx=PlantedContext(ccs_sign=-1.0), **FAST_CCS)
    pairs = make_split(40, offset=2000, name="test").to_pairs("all")
    assert accuracy(iv.score_pairs(ctx, state, pairs, config)) >= 0.95
    assert state.meta["comparable"] is True and state.meta["train_row_accuracy"] >= 0.95


def test_ccs_upstream_mode_reproduces_the_quirks():
    cfg = {"mode": "upstream", **FAST_CCS}
    iv, config, ctx, state = _fit("ccs", n=150, **cfg)
    assert state.meta["comparable"] is False
    assert state.tensors["train_yes"].shape[0] == 200  # 100 examples (max_examples), rows with replacement
    rows = {tuple(r.tolist()) for r in state.tensors["train_yes"]}
    assert len(rows) < 200  # drawn with replacement: some rows repeat
    assert (
        iv.requirements(config)
        .score_activations[1]
        .template.endswith("###Does the responder successfully follow the instruction?\nNo")
    )
    pairs = make_split(40, offset=3000, name="test").to_pairs("all")
    scored = iv.score_pairs(ctx, state, pairs, config)
    assert scored.info["comparable"] is False
    assert set(np.unique(scored.p_correct)) <= {0.0, 0.5, 1.0}
    assert accuracy(scored) == pytest.approx(scored.info["row_accuracy"])
    assert accuracy(scored) >= 0.95  # the planted set is separable either way round
    # Pure noise: accuracy >= 0.5 by construction (the sign is chosen on the test labels).
    noise = PlantedContext(strength=0.0)
    for offset in (4000, 5000, 6000):
        s = iv.score_pairs(noise, state, make_split(20, offset=offset, name="test").to_pairs("all"), config)
        assert accuracy(s) >= 0.5


def test_ccs_state_of_the_other_mode_is_refused():
    iv, _, ctx, state = _fit("ccs", **FAST_CCS)
    with pytest.raises(StoreError, match="mode 'pairwise'"):
        iv.score_pairs(
            ctx, state, make_split(3, name="test").to_pairs("all"), iv.make_config({"mode": "upstream"})
        )


@pytest.mark.parametrize("name", ["lat_pca", "linear_probe"])
def test_layer_option_and_errors(name, tmp_path):
    iv, config, ctx, state = _fit(name, layer=1)
    assert state.meta["layer"] == 1
    with pytest.raises(ConfigError, match="layer=9 is not a layer of the model"):
        _fit(name, layer=9)
    state.save(tmp_path / "s")
    assert InterventionState.load(tmp_path / "s").meta == state.meta
    broken = InterventionState(meta={"intervention": name}, tensors={})
    with pytest.raises(StoreError, match="corrupt"):
        iv.score_pairs(ctx, broken, make_split(2, name="test").to_pairs("all"), config)


def test_seeded():
    a = _fit("lat_pca")[3]
    b = _fit("lat_pca")[3]
    assert a.meta == b.meta
    np.testing.assert_array_equal(a.tensors["vector"].numpy(), b.tensors["vector"].numpy())
