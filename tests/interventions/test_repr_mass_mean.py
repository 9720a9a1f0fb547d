"""mms, lat_stim_1, lat_stim_2, cra on planted synthetic activations (no model)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from repr_helpers import PLANT_HEAD, PLANT_LAYER, PlantedContext, accuracy, make_split

from genies.api.intervention import InterventionState
from genies.errors import ConfigError, StoreError
from genies.interventions.registry import get_intervention

MASS_MEAN = ["mms", "lat_stim_1", "lat_stim_2", "cra"]


def _fit(name, ctx=None, n=60, **cfg):
    iv = get_intervention(name)
    config = iv.make_config(cfg)
    ctx = ctx or PlantedContext()
    return iv, config, ctx, iv.fit(ctx, make_split(n), config)


@pytest.mark.parametrize("name", MASS_MEAN)
def test_planted_direction_is_recovered(name):
    # The plant lives in one unit; the mean cosine over k units dilutes it by sqrt(k), so keep few
    # (cra's yes − no feature carries twice the noise variance: keep one).
    count = "num_intervention_heads" if name in ("mms", "cra") else "num_intervention_hidden_states"
    iv, cfg, ctx, state = _fit(name, ctx=PlantedContext(strength=5.0), **{count: 1 if name == "cra" else 2})
    pairs = make_split(50, offset=1000, n_responses=3, name="test").to_pairs("all")
    scored = iv.score_pairs(ctx, state, pairs, cfg)
    assert accuracy(scored) >= 0.95
    best = state.meta["selected"][0]
    assert best["unit"] == ([PLANT_LAYER, PLANT_HEAD] if iv.site == "heads" else PLANT_LAYER)
    assert best["probe_accuracy"] >= 0.9
    assert np.all((scored.p_correct >= 0) & (scored.p_correct <= 1))
    assert "selected" in scored.info and "calibrator" in scored.info


@pytest.mark.parametrize("name", MASS_MEAN)
def test_batch_and_order_invariance(name):
    iv, cfg, ctx, state = _fit(name, ctx=PlantedContext(strength=0.7))  # weak plant: p away from 0/1
    pairs = make_split(30, offset=500, n_responses=3, name="test").to_pairs("all")
    whole = iv.score_pairs(ctx, state, pairs, cfg).p_correct
    assert 0.05 < np.median(whole) < 0.995
    order = np.random.default_rng(0).permutation(len(pairs))
    shuffled = iv.score_pairs(ctx, state, [pairs[i] for i in order], cfg).p_correct
    np.testing.assert_allclose(shuffled, whole[order], atol=1e-5)
    pieces = np.concatenate(
        [iv.score_pairs(ctx, state, pairs[i : i + 7], cfg).p_correct for i in range(0, len(pairs), 7)]
    )
    np.testing.assert_allclose(pieces, whole, atol=1e-5)
    swapped = [dataclasses.replace(p, correct=p.incorrect, incorrect=p.correct) for p in pairs]
    np.testing.assert_allclose(iv.score_pairs(ctx, state, swapped, cfg).p_correct, 1 - whole, atol=1e-5)


@pytest.mark.parametrize("name", MASS_MEAN)
def test_seeded_and_saved_as_safetensors(name, tmp_path):
    iv, cfg, _, a = _fit(name)
    _, _, _, b = _fit(name)
    _, _, _, c = _fit(name, ctx=PlantedContext(seed=7))
    assert a.meta == b.meta
    assert a.meta["n_train_pairs"] == c.meta["n_train_pairs"]
    a.save(tmp_path / "s")
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["state.json", "tensors.safetensors"]
    back = InterventionState.load(tmp_path / "s")
    assert back.meta == a.meta
    assert back.tensors["probe_accuracy"].numel() == (12 if iv.site == "heads" else 4)


def test_default_count_is_capped_and_explicit_excess_is_an_error():
    _, _, ctx, state = _fit("mms")  # 4 layers x 3 heads = 12 < 16
    assert len(state.meta["selected"]) == 12
    assert any("using all" in m for m in ctx.logs)
    _, _, _, state = _fit("mms", num_intervention_heads=3)
    assert len(state.meta["selected"]) == 3
    with pytest.raises(
        ConfigError, match="num_intervention_heads=13 is more than the model's 12 attention heads"
    ):
        _fit("mms", num_intervention_heads=13)
    with pytest.raises(
        ConfigError, match="num_intervention_hidden_states=5 is more than the model's 4 layers"
    ):
        _fit("lat_stim_1", num_intervention_hidden_states=5)


def test_corrupt_or_foreign_state_is_a_store_error(tmp_path):
    iv, cfg, ctx, state = _fit("mms")
    pairs = make_split(3, offset=9, name="test").to_pairs("all")
    bad = InterventionState(
        meta=dict(state.meta), tensors={k: v for k, v in state.tensors.items() if k != "directions"}
    )
    with pytest.raises(StoreError, match="missing directions"):
        iv.score_pairs(ctx, bad, pairs, cfg)
    _, _, _, lat_state = _fit("lat_stim_1")
    with pytest.raises(StoreError, match="not a mms state"):
        iv.score_pairs(ctx, lat_state, pairs, cfg)
    state.save(tmp_path / "s")
    (tmp_path / "s" / "tensors.safetensors").write_bytes(b"garbage")
    with pytest.raises(StoreError, match="corrupt intervention state"):
        InterventionState.load(tmp_path / "s")


def test_cra_alpha_changes_the_feature():
    _, _, _, one = _fit("cra")
    _, _, _, half = _fit("cra", alpha=0.5)
    assert one.meta["selected"][0]["unit"] == [PLANT_LAYER, PLANT_HEAD]
    assert not np.allclose(one.tensors["directions"].numpy(), half.tensors["directions"].numpy())
