"""The representation methods end to end through ``run_suite`` on the tiny model, sharing one store:
the activation cache is filled once per (text, template), so a method reading texts already embedded
by an earlier method computes no forward pass and loads no model."""

from __future__ import annotations

import json

import pytest

from genies.data.synthetic import generate
from genies.pipeline.suite import RunOptions, run_suite

SHIFT = {"source": "synth_facts", "target": "synth_facts_fiction", "category": "context"}

# (intervention, config sets, must this run compute forward passes?) in run order.
ORDER = [
    ("mms", (), True),  # first: zero-shot baselines + the raw template's activations
    ("lat_stim_1", (), False),  # same texts, same (raw) template: every site is already cached
    ("lat_pca", (), False),
    ("linear_probe", (), False),
    ("cra", (), True),  # new templates (… Yes / … No)
    ("ccs", ("intervention.num_epochs=50", "ttc.num_epochs=50"), False),  # cra's Yes/No texts
    ("lat_stim_2", (), True),  # the "Consider the extent…" template
]


@pytest.fixture(scope="module")
def env(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("repr-run")
    generate(root / "data", seed=0, train_size=12, test_size=8)
    suite = root / "suite.json"
    suite.write_text(json.dumps([SHIFT]), encoding="utf-8")
    return {"root": root, "suite": suite, "model": tiny_model_dir}


def _run(env, name, sets=()):
    return run_suite(
        RunOptions(
            intervention=name,
            suite=str(env["suite"]),
            model=str(env["model"]),
            limit=8,
            store=str(env["root"] / "store"),
            data_dir=str(env["root"] / "data"),
            out=str(env["root"] / "out" / name),
            device="cpu",
            progress=False,
            sets=sets,
        )
    )


def test_every_method_runs_and_later_methods_reuse_the_cache(env):
    seen = {}
    for name, sets, computes in ORDER:
        outcome = _run(env, name, sets)
        c = outcome.counters
        seen[name] = c.as_dict()
        row = outcome.result.rows[0]
        assert 0.0 <= row.generalization_accuracy <= 1.0 and 0.0 <= row.source_ID_accuracy <= 1.0
        if computes:
            assert c.forward_passes > 0, name
        else:
            assert c.forward_passes == 0 and c.model_loads == 0, (name, c.as_dict())
            assert c.activations_computed == 0 and c.activations_reused > 0, (name, c.as_dict())
        assert c.states_computed >= 1
    # A rerun of the first method computes nothing at all.
    again = _run(env, "mms").counters
    assert again.evaluations_computed == 0 and again.forward_passes == 0 and again.model_loads == 0


def test_explicit_head_count_above_the_model_is_one_clear_error(env):
    from genies.errors import GeniesError

    with pytest.raises(
        GeniesError, match=r"num_intervention_heads=99 is more than the model's 8 attention heads"
    ):
        _run(env, "mms", ("intervention.num_intervention_heads=99",))
