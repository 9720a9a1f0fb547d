"""Every store damage a careful user tried, end to end: detected, named by path, recomputed, never
fatal; the CSV equals a clean run's; and the repaired store is complete (the next run computes
nothing and loads no model)."""

from __future__ import annotations

import json

import pytest

from genies.hashing import sha256_file
from genies.pipeline.store import SENTINEL, ResultStore


def _gen_record_path(outcome):
    store = ResultStore(outcome.prepared.store.root)
    return store.evaluation_path(outcome.prepared.plan.rows[0].generalization)


def _edit_record(edit):
    def damage(outcome):
        path = _gen_record_path(outcome)
        doc = json.loads(path.read_text())
        edit(doc)
        path.write_text(json.dumps(doc, allow_nan=True))
        return path

    return damage


def _cut(doc):
    doc["n"], doc["pair_ids"], doc["p_correct"] = 2, doc["pair_ids"][:2], doc["p_correct"][:2]


def _bytes(transform):
    def damage(outcome):
        path = _gen_record_path(outcome)
        path.write_bytes(transform(path.read_bytes()))
        return path

    return damage


def _state_of_row(outcome, row=2):
    plan = outcome.prepared.plan
    store = outcome.prepared.store
    eval_key = plan.rows[row].generalization  # trained on toy_e, evaluated on toy_b
    # the state is only needed (and so checked) when one of its evaluations must be computed
    store.evaluation_path(eval_key).unlink()
    return store.state_path(plan.state_key(eval_key))


def _state_names_other_intervention(outcome):
    d = _state_of_row(outcome)
    doc = json.loads((d / "state.json").read_text())
    doc["meta"]["intervention"] = "test_length"
    (d / "state.json").write_text(json.dumps(doc))
    sentinel = json.loads((d / SENTINEL).read_text())  # hashes made to match: only the meta check is left
    sentinel["files"]["state.json"] = {
        "size": (d / "state.json").stat().st_size,
        "sha256": sha256_file(d / "state.json"),
    }
    (d / SENTINEL).write_text(json.dumps(sentinel))
    return d


def _state_tensors_deleted(outcome):
    d = _state_of_row(outcome)
    (d / "tensors.safetensors").unlink()
    return d


DAMAGES = {
    "accuracy-edited-to-0.1": _edit_record(lambda d: d["metrics"].update(accuracy=0.1)),
    "n-pair_ids-p_correct-cut-to-2": _edit_record(_cut),
    "eval_distribution-changed": _edit_record(lambda d: d.update(eval_distribution="toy_c")),
    "limit-changed": _edit_record(lambda d: d.update(limit=2)),
    "model-changed": _edit_record(lambda d: d.update(model={"name": "other", "weights_sha256": "1" * 8})),
    "intervention-changed": _edit_record(lambda d: d.update(intervention="test_length")),
    "p_correct-above-1": _edit_record(lambda d: d["p_correct"].__setitem__(0, 1.5)),
    "p_correct-nan": _edit_record(lambda d: d["p_correct"].__setitem__(0, float("nan"))),
    "valid-json-wrong-schema": _edit_record(lambda d: (d.clear(), d.update(kind="suite_result", rows=[]))),
    "not-utf8": _bytes(lambda b: b"\xff\xfe" + b),
    "truncated": _bytes(lambda b: b[: len(b) // 3]),
    "state-names-another-intervention": _state_names_other_intervention,
    "state-tensor-file-deleted": _state_tensors_deleted,
}


@pytest.mark.parametrize("damage", list(DAMAGES.values()), ids=list(DAMAGES))
def test_damage_is_detected_named_recomputed_and_the_store_repaired(toy, counter, tmp_path, damage):
    first = toy.run(intervention="test_bias", limit=5)
    damaged = damage(first)
    warnings: list[str] = []
    repaired = toy.run(warnings=warnings, intervention="test_bias", limit=5)  # never fatal
    assert repaired.counters.corrupt_entries == 1
    assert any(str(damaged) in w and "corrupt store entry" in w for w in warnings), warnings
    assert repaired.counters.evaluations_computed >= 1
    clean = toy.run(intervention="test_bias", limit=5, store=tmp_path / "clean", out=tmp_path / "clean-out")
    assert repaired.csv_path.read_bytes() == clean.csv_path.read_bytes()
    assert (
        json.loads(repaired.json_path.read_text())["rows"] == json.loads(clean.json_path.read_text())["rows"]
    )
    # the repaired store is complete: nothing to compute, nothing stale, no model loaded
    loads = len(toy.loads)
    again = toy.run(intervention="test_bias", limit=5)
    c = again.counters
    assert (c.evaluations_computed, c.states_computed, c.corrupt_entries, c.stale_entries, c.model_loads) == (
        0,
        0,
        0,
        0,
        0,
    )
    assert len(toy.loads) == loads and not again.model_loaded


def test_a_record_edited_consistently_with_its_inputs_is_still_refused(toy, counter):
    """Changing a record's inputs changes what they hash to: the record no longer matches its key."""
    first = toy.run(intervention="test_bias", limit=5)
    path = _gen_record_path(first)
    doc = json.loads(path.read_text())
    doc["inputs"]["eval"]["limit"] = doc["limit"] = 2
    path.write_text(json.dumps(doc))
    warnings: list[str] = []
    toy.run(warnings=warnings, intervention="test_bias", limit=5)
    assert any("its inputs do not hash to its key" in w for w in warnings)


def test_over_length_pairs_are_dropped_once_per_distribution(use_data_dir, tiny_model_dir, tmp_path):
    """few_shot's evaluations and the zero-shot baseline of a row score the same pairs (rows agree)."""
    from genies.pipeline.suite import RunOptions, run_suite

    suite = tmp_path / "suite.json"
    suite.write_text(json.dumps([{"source": "alpaca_easy", "target": "alpaca_hard"}]))
    out = run_suite(
        RunOptions(
            intervention="few_shot",
            suite=str(suite),
            model=str(tiny_model_dir),
            device="cpu",
            limit=12,
            store=tmp_path / "store",
            out=tmp_path / "out",
            progress=False,
            sets=["intervention.num_shots=2"],
        )
    )
    store, row = out.prepared.store, out.prepared.plan.rows[0]
    gen, base, ttc = (
        store.load_evaluation(k) for k in (row.generalization, row.baseline, row.ttc["few_shot"])
    )
    assert gen.pair_ids == base.pair_ids == ttc.pair_ids  # one drop decision for alpaca_hard
    assert gen.dropped == base.dropped > 0 and gen.n + gen.dropped == 12  # the tiny model's 512 tokens
    assert gen.info["examples_with_shots_cut"] > 0  # demonstrations were fitted into the room left
    lengths = out.prepared.plan.graph.of_kind("lengths")
    assert {n.inputs["data"]["distribution"] for n in lengths} == {"alpaca_hard", "alpaca_easy"}


def test_rows_refuse_to_compare_evaluations_of_different_pairs(toy, counter):
    from genies.errors import StoreError
    from genies.pipeline.suite import build_suite_result

    outcome = toy.run(intervention="test_bias", limit=5)
    plan, store = outcome.prepared.plan, outcome.prepared.store
    records = {n.key: store.load_evaluation(n.key) for n in plan.evaluations}
    base = records[plan.rows[0].baseline]
    records[plan.rows[0].baseline] = base.model_copy(update={"pair_ids": base.pair_ids[:-1] + ["99/9"]})
    with pytest.raises(StoreError, match="scored different pairs"):
        build_suite_result(
            plan,
            records,
            suite="s",
            intervention="test_bias",
            intervention_config={},
            baseline_intervention="test_length",
            ttc=outcome.prepared.ttc,
            model={},
            seed=0,
            limit=5,
            versions={},
        )


def test_damaged_weights_never_reuse_the_good_weights_results(toy, counter, tiny_model_dir, tmp_path):
    """A run on weights with one flipped mantissa bit computes afresh; the good weights' results come
    back afterwards (the identity is the hash of the weights loaded, not of where they came from)."""
    import shutil

    from genies.pipeline.suite import run_suite

    copy = tmp_path / "models" / "tiny"
    shutil.copytree(tiny_model_dir, copy)
    opts = {"model": str(copy), "device": "cpu"}
    good = run_suite(toy.options(**opts))
    n = good.counters.evaluations_computed
    weights = copy / "model.safetensors"
    original = weights.read_bytes()
    data = bytearray(original)
    data[-2] ^= 0x01
    weights.write_bytes(bytes(data))
    flipped = run_suite(toy.options(**opts))
    assert flipped.counters.evaluations_computed == n and flipped.counters.evaluations_reused == 0
    assert flipped.result.model["weights_sha256"] != good.result.model["weights_sha256"]
    weights.write_bytes(original)
    again = run_suite(toy.options(**opts))
    assert again.counters.evaluations_computed == 0 and again.counters.evaluations_reused == n
    assert not again.model_loaded
