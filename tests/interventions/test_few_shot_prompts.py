"""Few-shot prompt construction and demonstration sampling (no model needed)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from genies.data.schema import Example, Split
from genies.errors import ConfigError
from genies.interventions import get_intervention, list_interventions
from genies.interventions.few_shot import build_prompt, sample_shots

POOL = [(f"Question {i}?", f" Answer {i}.") for i in range(40)]


def _ctx(seed: int = 0):
    from genies.api.context import InterventionContext

    return InterventionContext(seed=seed)  # no model: fit must not need one


def test_both_registered_and_not_training():
    assert {"zero_shot", "few_shot"} <= set(list_interventions())
    for name in ("zero_shot", "few_shot"):
        iv = get_intervention(name)
        assert iv.name == name
        reqs = iv.requirements(iv.make_config({}))
        assert reqs.fit_model is False and not reqs.fit_activations and not reqs.score_activations
        assert "batch_size" in reqs.result_neutral
        assert [r.kind for r in reqs.lengths] == ["scoring"]
    assert (
        get_intervention("zero_shot").requirements(get_intervention("zero_shot").make_config({})).train_data
        is False
    )
    assert (
        get_intervention("few_shot").requirements(get_intervention("few_shot").make_config({})).train_data
        is True
    )


def test_prefix_format_exact():
    shots = [("Q: 1+1?\nA:", " 2"), ("Translate 'hola'.", " hello")]
    got = build_prompt(shots, "Q: 2+2?\nA:")
    assert got == "\n\nQ: 1+1?\nA: 2\n\nTranslate 'hola'. hello\n\nQ: 2+2?\nA:"
    assert build_prompt([], "P") == "\n\nP"


def test_sampling_deterministic_per_seed_and_distinct():
    a = sample_shots(POOL, "Some prompt", 4, seed=3)
    assert a == sample_shots(POOL, "Some prompt", 4, seed=3)
    assert len(a) == 4 and len(set(a)) == 4 and all(s in POOL for s in a)
    # different seeds (and different prompts) give different draws; 40 choose 4 makes a clash negligible
    draws = {tuple(sample_shots(POOL, "Some prompt", 4, seed=s)) for s in range(6)}
    assert len(draws) == 6
    assert sample_shots(POOL, "Other prompt", 4, seed=3) != a


def test_sampling_ignores_and_keeps_global_rng():
    random.seed(1)
    np.random.seed(1)
    a = sample_shots(POOL, "x", 4, seed=0)
    state_py, state_np = random.getstate(), np.random.get_state()
    random.seed(999)
    np.random.seed(999)
    assert sample_shots(POOL, "x", 4, seed=0) == a
    random.setstate(state_py)
    np.random.set_state(state_np)
    sample_shots(POOL, "x", 4, seed=0)
    assert random.getstate() == state_py
    assert np.array_equal(np.random.get_state()[1], state_np[1])


def test_same_prompt_exclusion():
    pool = [("dup", " a"), ("dup", " b"), ("other1", " c"), ("other2", " d")]
    for seed in range(20):
        shots = sample_shots(pool, "dup", 2, seed=seed)
        assert sorted(shots) == [("other1", " c"), ("other2", " d")]
    # asking for more than the eligible entries uses all eligible ones
    assert sorted(sample_shots(pool, "dup", 4, seed=0)) == [("other1", " c"), ("other2", " d")]
    # without exclusion the duplicates can be drawn
    seen = {
        s for seed in range(20) for s in sample_shots(pool, "dup", 2, seed=seed, exclude_same_prompt=False)
    }
    assert ("dup", " a") in seen or ("dup", " b") in seen
    assert sample_shots(pool, "dup", 0, seed=0) == []


def test_fit_stores_pool_and_round_trips(tmp_path):
    from genies.api.intervention import InterventionState

    exs = [
        Example("p0", ((" bad", 0.0), (" good", 1.0)), index=0),
        Example("p1", ((" yes", 1.0), (" no", 0.0), (" maybe", 0.0)), index=1),
    ]
    split = Split("train", exs, "toy")
    iv = get_intervention("few_shot")
    state = iv.fit(_ctx(), split, iv.make_config({}))
    assert state.meta["pool"] == [["p0", " good"], ["p1", " yes"]]
    assert state.meta["train_distribution"] == "toy"
    assert state.meta["train_fingerprint"] == split.fingerprint
    state.save(tmp_path / "s")
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["state.json"]  # JSON only, no tensors
    assert InterventionState.load(tmp_path / "s").meta == state.meta

    zs = get_intervention("zero_shot")
    zstate = zs.fit(_ctx(), split, zs.make_config({}))
    assert zstate.meta == {
        "intervention": "zero_shot",
        "train_distribution": "toy",
        "train_fingerprint": split.fingerprint,
    }
    zstate.save(tmp_path / "z")
    assert InterventionState.load(tmp_path / "z").meta == zstate.meta


@pytest.mark.parametrize(
    "name,values",
    [
        ("zero_shot", {"num_shots": 2}),
        ("zero_shot", {"scoring": "median"}),
        ("few_shot", {"num_shots": -1}),
        ("few_shot", {"shots": 4}),
        ("few_shot", {"batch_size": 0}),
    ],
)
def test_bad_config_is_config_error(name, values):
    with pytest.raises(ConfigError) as exc:
        get_intervention(name).make_config(values)
    assert "\n" not in str(exc.value)


def test_config_defaults_and_fields():
    iv = get_intervention("few_shot")
    cfg = iv.make_config({"num_shots": 2, "batch_size": 8, "scoring": "mean"})
    assert cfg.num_shots == 2 and cfg.exclude_same_prompt is True and cfg.batch_size == 8
    assert iv.make_config({}).model_dump() == {
        "scoring": "upstream",
        "batch_size": None,
        "num_shots": 4,
        "exclude_same_prompt": True,
    }
    assert get_intervention("zero_shot").make_config({}).model_dump() == {
        "scoring": "upstream",
        "batch_size": None,
    }
    assert iv.requirements(cfg).result_neutral <= set(type(cfg).model_fields)
    with pytest.raises(ConfigError):  # another intervention's config is refused
        iv.fit(_ctx(), Split("train", [], "x"), get_intervention("zero_shot").make_config({}))
