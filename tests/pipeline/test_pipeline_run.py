"""The pipeline end to end on toy data with test-only interventions (no real model, fast)."""

from __future__ import annotations

import errno
import json
import math
import threading

import pandas as pd
import pytest
from pipeline_helpers import TOY_SUITE, sigmoid

from genies import metrics
from genies.data import load_distribution
from genies.errors import InterruptedRun, StoreError
from genies.pipeline import store as store_mod
from genies.pipeline.store import ResultStore
from genies.records import UPSTREAM_CSV_COLUMNS, SuiteResult


def _length_accuracy(data_dir, dist_id: str, scale: float = 1.0, limit: int | None = None) -> float:
    """test_length's accuracy computed independently from the data files."""
    pairs = load_distribution(dist_id, data_dir).test.to_pairs("all")[:limit]
    p = [sigmoid(scale * (len(q.correct) - len(q.incorrect)) / 7.0) for q in pairs]
    return metrics.accuracy(p)


def _rows(outcome) -> str:
    """The rows as JSON text (NaN == NaN there, unlike in dicts)."""
    return json.dumps([r.model_dump(mode="json") for r in outcome.result.rows])


def test_outputs_have_upstream_columns_and_correct_numbers(toy):
    outcome = toy.run()
    df = pd.read_csv(outcome.csv_path)
    assert tuple(df.columns) == UPSTREAM_CSV_COLUMNS
    assert list(zip(df.source, df.target, strict=True)) == [(s["source"], s["target"]) for s in TOY_SUITE]
    assert list(df.target_reference) == ["toy_b", "toy_d", "toy_b"]
    assert set(df.baseline_intervention) == {"test_length"}
    assert set(df.target_tuned_capability_intervention) == {"test_length"}
    suite = SuiteResult.model_validate(json.loads(outcome.json_path.read_text()))
    assert suite.intervention == "test_length" and suite.ttc == "single" and len(suite.rows) == 3
    for row in suite.rows:
        gen = _length_accuracy(toy.data_dir, row.target)
        ttc = _length_accuracy(toy.data_dir, row.target_reference)
        assert row.generalization_accuracy == pytest.approx(gen)
        assert row.baseline_accuracy == pytest.approx(gen)  # same intervention, data-independent
        assert row.target_tuned_capability == pytest.approx(ttc)
        assert row.source_ID_accuracy == pytest.approx(_length_accuracy(toy.data_dir, row.source))
        assert row.differential_elicitation == pytest.approx(0.0)
        lo, hi = row.generalization_accuracy_ci
        assert lo <= row.generalization_accuracy <= hi
        assert set(row.evaluation_keys) == {"generalization", "baseline", "ttc", "source_id"}
    # The CSV holds the same numbers as the JSON.
    assert list(df.generalization_accuracy) == pytest.approx([r.generalization_accuracy for r in suite.rows])


def test_train_independent_intervention_shares_baseline_and_main_evaluations(toy, counter):
    outcome = toy.run()
    plan = outcome.prepared.plan
    # Unique evaluated distributions: toy_b, toy_c (targets), toy_d (reference), toy_a, toy_e (sources).
    assert len(plan.evaluations) == 5
    assert counter.calls == 5 and outcome.counters.evaluations_computed == 5
    row = plan.rows[0]
    assert row.generalization == row.baseline


def test_train_dependent_intervention_keys_include_the_training_data(toy, counter):
    outcome = toy.run(intervention="test_bias")
    plan = outcome.prepared.plan
    # baseline on toy_b, toy_c; TTC on toy_b, toy_d; trained on toy_a → b, c, a; on toy_e → b, e.
    assert len(plan.evaluations) == 9
    assert outcome.counters.states_computed == 5  # 1 baseline (no data) + 2 TTC + 2 sources
    assert counter.fits == 5
    r0, r2 = plan.rows[0], plan.rows[2]  # toy_a → toy_b and toy_e → toy_b
    assert r0.generalization != r2.generalization
    assert r0.baseline == r2.baseline


def test_second_identical_run_computes_nothing_and_loads_no_model(toy, counter):
    first = toy.run(intervention="test_bias")
    calls, loads = counter.calls, len(toy.loads)
    assert loads == 1
    second = toy.run(intervention="test_bias")
    c = second.counters
    assert (c.evaluations_computed, c.states_computed, c.forward_passes, c.model_loads) == (0, 0, 0, 0)
    assert c.evaluations_reused == len(second.prepared.plan.evaluations)
    assert counter.calls == calls and len(toy.loads) == loads and not second.model_loaded
    assert _rows(first) == _rows(second)
    assert first.counters.forward_passes == calls  # the hook saw every fake forward pass


def test_key_inputs_change_what_is_reused(toy, counter):
    toy.run()
    n = len(toy.run().prepared.plan.evaluations)
    assert (
        toy.run(sets=["intervention.batch_size=3", "baseline.batch_size=3"]).counters.evaluations_computed
        == 0
    )
    assert toy.run(seed=1).counters.evaluations_computed == n
    assert toy.run(limit=2).counters.evaluations_computed == n
    changed = toy.run(sets=["intervention.scale=2"])
    # Baseline evaluations (toy_b, toy_c) keep their own default config and are reused.
    assert changed.counters.evaluations_computed == len(changed.prepared.plan.evaluations) - 2
    assert changed.counters.evaluations_reused == 2


def test_limit_caps_pairs_and_training_examples(toy):
    outcome = toy.run(intervention="test_bias", limit=3)
    store = ResultStore(toy.store)
    for task in outcome.prepared.plan.evaluations:
        rec = store.load_evaluation(task.key)
        assert rec.n == 3 and rec.limit == 3
    for key, st in outcome.prepared.plan.states.items():
        if st.inputs["intervention"] == "test_bias":
            assert store.load_state(key).state.meta["n"] == 3
    row = outcome.result.rows[0]
    assert row.baseline_accuracy == pytest.approx(_length_accuracy(toy.data_dir, "toy_b", limit=3))


def test_force_recomputes_and_invalidates_dependents(toy, counter, tmp_path):
    toy.run(intervention="test_bias")
    one = tmp_path / "one.json"
    one.write_text(json.dumps(TOY_SUITE[:1]))  # toy_a → toy_b only: re-fits the toy_a state
    forced = toy.run(intervention="test_bias", suite=str(one), force=True)
    assert forced.counters.evaluations_reused == 0 and forced.counters.states_computed == 3
    warnings: list[str] = []
    again = toy.run(warnings=warnings, intervention="test_bias")
    # Not in the forced suite but made from states it replaced: the baseline on toy_c and the
    # toy_a-trained state on toy_c. They are stale and recomputed; everything else is reused.
    assert again.counters.stale_entries == 2 and again.counters.evaluations_computed == 2
    stale = sorted(w.split("(")[1].split(")")[0] for w in warnings if "older state" in w)
    assert stale == ["test_bias trained on toy_a → toy_c", "test_length → toy_c"]
    assert again.counters.states_computed == 0
    assert toy.run(intervention="test_bias").counters.evaluations_computed == 0


def test_corrupt_entries_are_reported_and_recomputed(toy, counter):
    first = toy.run(intervention="test_bias")
    plan = first.prepared.plan
    store = ResultStore(toy.store)
    gen_key = plan.rows[0].generalization
    path = store.evaluation_path(gen_key)
    path.write_text(path.read_text()[:50])
    state_key = plan.state_key(plan.rows[2].generalization)  # trained on toy_e
    (store.state_path(state_key) / "tensors.safetensors").unlink()
    warnings: list[str] = []
    second = toy.run(warnings=warnings, intervention="test_bias")
    assert second.counters.corrupt_entries == 1  # the record; the state was not needed
    assert any(str(path) in w and "corrupt" in w for w in warnings)
    assert second.counters.evaluations_computed == 1  # only the damaged record
    assert store.load_evaluation(gen_key) is not None
    assert _rows(first) == _rows(second)
    # The broken state is noticed, reported and refitted the next time it is needed.
    store.evaluation_path(plan.rows[2].generalization).unlink()
    warnings.clear()
    third = toy.run(warnings=warnings, intervention="test_bias")
    assert third.counters.corrupt_entries == 1 and third.counters.states_computed == 1
    assert any("tensors.safetensors is missing" in w for w in warnings)
    assert store.load_state(state_key) is not None
    assert _rows(first) == _rows(third)


def _store_is_consistent(root) -> None:
    store = ResultStore(root)
    for f in (root / "evaluations").rglob("*"):
        if f.is_file():
            assert f.suffix == ".json" and not f.name.startswith("."), f"stray file {f}"
            assert store.load_evaluation(f.stem) is not None, f"bad record {f}"
    if (root / "states").exists():
        for d in (root / "states").iterdir():
            assert not d.name.startswith("."), f"leftover temp dir {d}"
            assert store.load_state(d.name) is not None, f"bad state {d}"
    assert store.counters.corrupt_entries == 0


@pytest.mark.parametrize("fail_at", [1, 2, 4, 7])
def test_disk_full_mid_run_keeps_the_store_consistent(toy, counter, monkeypatch, tmp_path, fail_at):
    real = store_mod.atomic_write_json
    calls = {"n": 0}

    def flaky(path, obj, **kw):
        calls["n"] += 1
        if calls["n"] >= fail_at:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, obj, **kw)

    monkeypatch.setattr(store_mod, "atomic_write_json", flaky)
    with pytest.raises(StoreError, match="No space left on device"):
        toy.run(intervention="test_bias")
    monkeypatch.undo()
    _store_is_consistent(toy.store)
    resumed = toy.run(intervention="test_bias")
    _store_is_consistent(toy.store)
    clean = toy.run(intervention="test_bias", store=tmp_path / "clean-store", out=tmp_path / "clean-out")
    assert _rows(resumed) == _rows(clean)


def test_interrupt_saves_finished_work_and_resume_skips_it(toy, counter, tmp_path):
    counter.interrupt_after = 3
    with pytest.raises(InterruptedRun, match="rerun the same command to resume") as exc:
        toy.run(intervention="test_bias")
    assert exc.value.exit_code == 130
    store = ResultStore(toy.store)
    saved = sorted(p.stem for p in (toy.store / "evaluations").rglob("*.json"))
    assert len(saved) == 3
    mtimes = {k: store.evaluation_path(k).stat().st_mtime_ns for k in saved}
    counter.interrupt_after = None
    resumed = toy.run(intervention="test_bias")
    assert resumed.counters.evaluations_reused == 3
    assert resumed.counters.evaluations_computed == len(resumed.prepared.plan.evaluations) - 3
    assert {k: store.evaluation_path(k).stat().st_mtime_ns for k in saved} == mtimes
    clean = toy.run(intervention="test_bias", store=tmp_path / "clean-store", out=tmp_path / "clean-out")
    assert _rows(resumed) == _rows(clean)


def test_best_of_ttc_takes_the_best_and_names_it(toy):
    outcome = toy.run(
        intervention="test_bias", ttc="best-of:test_length,test_bias", sets=["ttc.test_length.scale=-1"]
    )
    assert outcome.result.ttc == "best-of:test_length,test_bias"
    assert outcome.result.ttc_interventions == ["test_length", "test_bias"]
    store = ResultStore(toy.store)
    for rp, row in zip(outcome.prepared.plan.rows, outcome.result.rows, strict=True):
        accs = {name: store.load_evaluation(k).metrics["accuracy"] for name, k in rp.ttc.items()}
        best = max(accs.values())
        assert row.target_tuned_capability == pytest.approx(best)
        assert accs[row.target_tuned_capability_intervention] == best
        assert row.extra_metrics["target_tuned_accuracy.test_length"] == pytest.approx(accs["test_length"])
        de = (row.generalization_accuracy - row.baseline_accuracy) / best
        assert row.differential_elicitation == pytest.approx(de)


def test_duplicated_shifts_keep_their_rows_but_are_computed_once(toy, counter, tmp_path):
    dup = tmp_path / "dup.json"
    dup.write_text(json.dumps(TOY_SUITE + TOY_SUITE[:2]))
    outcome = toy.run(suite=str(dup))
    assert len(pd.read_csv(outcome.csv_path)) == 5
    assert counter.calls == 5


def test_missing_metrics_give_nan_differential_elicitation(toy, tmp_path):
    suite = tmp_path / "s.json"
    suite.write_text(json.dumps([{"source": "toy_a", "target": "toy_b"}]))
    outcome = toy.run(suite=str(suite), sets=["ttc.scale=0"])  # p = 0.5 everywhere: TTC accuracy 0.5
    assert outcome.result.rows[0].target_tuned_capability == 0.5
    outcome = toy.run(suite=str(suite), limit=1)
    assert not math.isnan(outcome.result.rows[0].generalization_accuracy)


def test_concurrent_runs_compute_each_key_once(toy, counter, tmp_path):
    results: dict[str, object] = {}
    errors: list[BaseException] = []

    def worker(name: str) -> None:
        try:
            results[name] = toy.run(intervention="test_bias", out=tmp_path / f"out-{name}")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    a, b = results["a"], results["b"]
    n = len(a.prepared.plan.evaluations)
    assert a.counters.evaluations_computed + b.counters.evaluations_computed == n
    assert a.counters.states_computed + b.counters.states_computed == 5
    assert _rows(a) == _rows(b)
    _store_is_consistent(toy.store)


def test_real_zero_shot_and_few_shot_plans(toy, tiny_model_dir):
    """zero_shot declares it ignores training data (one evaluation per distribution); few_shot does not."""
    from genies.lengths import TokenizerSource
    from genies.pipeline.suite import prepare_run

    def plan(iv: str):
        return prepare_run(
            toy.options(intervention=iv, baseline_intervention="zero_shot"),
            model_key={"name": "m"},
            tokenizer=TokenizerSource("tiny", tiny_model_dir),
        ).plan

    zs = plan("zero_shot")
    assert len(zs.evaluations) == 5  # toy_b, toy_c, toy_d, toy_a, toy_e
    assert all(r.generalization == r.baseline for r in zs.rows)
    fs = plan("few_shot")
    assert len(fs.evaluations) == 9
    assert fs.rows[0].generalization != fs.rows[2].generalization  # trained on toy_a vs toy_e
    assert fs.rows[0].baseline == zs.rows[0].baseline
