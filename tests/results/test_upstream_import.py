"""Importing upstream result trees (synthetic ones, so these run without ../shared)."""

from __future__ import annotations

import io
import json
import math
import os
import stat
import tarfile
from pathlib import Path

import numpy as np
import pytest
from upstream_tree import evaluation_doc, make_tarball, make_tree

from genies import metrics
from genies.errors import DataError, StoreError, UnknownNameError
from genies.results import upstream as up
from genies.results.upstream import UpstreamStore, import_upstream, paper_rows, record_key

SHIFTS = [("alpaca_mmlu", "truthful_qa"), ("alpaca_mmlu", "wrong_arc"), ("code", "us_history")]


@pytest.fixture
def tree(tmp_path):
    return make_tree(tmp_path / "src", SHIFTS)


@pytest.fixture
def suite_file(tmp_path) -> Path:
    p = tmp_path / "suite.json"
    p.write_text(json.dumps([{"source": s, "target": t} for s, t in SHIFTS]))
    return p


def _json(obj) -> str:
    """Canonical JSON (NaN written as NaN): equality that treats NaN as equal to itself."""
    return json.dumps(obj, sort_keys=True)


def _store_files(store: Path) -> list[Path]:
    return [p for p in (store / "upstream").rglob("*") if p.is_file()]


def test_import_folder_counts_and_skips(tree, tmp_path):
    summary = import_upstream(tree.root, store=tmp_path / "store")
    # mms: 3 target files + 2 source files; zero_shot: the same 5 + one base-model file
    assert summary.records[("llama-7b", "mms")] == 5
    assert summary.records[("llama-7b", "zero_shot")] == 6
    assert summary.records[("llama-7b", "ccs")] == 1
    assert summary.records[("human", "human_eval")] == 1
    assert summary.ttc["llama-7b"] == 3
    assert summary.skipped == {"not a JSON file": 1, "stale or nested folder": 1}
    assert summary.n_records == 13
    assert summary.store == tmp_path / "store" / "upstream"


def test_imported_record_content(tree, tmp_path):
    import_upstream(tree.root, store=tmp_path / "store")
    store = UpstreamStore(tmp_path / "store")
    rel = "evaluations/mms/llama-7b-alpaca_mmlu/truthful_qa.json"
    raw = tree.files[rel]
    rec = store.get("llama-7b", "mms", "alpaca_mmlu", "truthful_qa")
    assert rec is not None
    assert rec.origin == "upstream" and rec.label == "llama-7b" and rec.intervention == "mms"
    assert rec.train_distribution == "alpaca_mmlu" and rec.eval_distribution == "truthful_qa"
    assert rec.key == record_key("llama-7b", "mms", "alpaca_mmlu", "truthful_qa")
    assert rec.p_correct == raw["eval_probabilities"]  # bit for bit through the store
    assert rec.n == len(raw["eval_probabilities"])
    assert rec.ties == metrics.tie_count(raw["eval_probabilities"]) > 0
    assert _json(rec.metrics) == _json(metrics.summarize(raw["eval_probabilities"]))
    stored = {k: v for k, v in raw.items() if isinstance(v, float)}
    assert rec.info["stored"] == stored
    assert rec.info["source_file"] == rel
    assert rec.model == {"name": "llama-7b", "path": "models/x"}


def test_odd_key_sets(tree, tmp_path):
    import_upstream(tree.root, store=tmp_path / "store")
    store = UpstreamStore(tmp_path / "store")
    base = store.get("llama-7b", "zero_shot", None, "truthful_qa")  # base-model folder: no train
    assert base is not None and base.train_distribution is None
    ccs = store.get("llama-7b", "ccs", "alpaca_mmlu", "truthful_qa")  # accuracy only
    assert ccs is not None and ccs.p_correct == [] and ccs.n == 0 and ccs.metrics == {}
    assert ccs.info["stored"]["eval_accuracy"] == 0.61 and ccs.info["has_probabilities"] is False
    human = store.get("human", "human_eval", None, "code")  # unprefixed keys
    raw = tree.files["evaluations/human_eval/human/code.json"]
    assert human is not None and human.p_correct == raw["probabilities"]
    assert human.info["stored"]["eval_accuracy"] == raw["accuracy"]
    assert human.info["stored"]["eval_brier_score"] == raw["brier_score"]
    assert human.metrics["accuracy_upstream"] == raw["accuracy"]


def test_imported_files_are_read_only(tree, tmp_path):
    import_upstream(tree.root, store=tmp_path / "store")
    files = _store_files(tmp_path / "store")
    assert files
    for p in files:
        assert stat.S_IMODE(p.stat().st_mode) == 0o444, p


def test_reimport_replaces_cleanly(tree, tmp_path):
    store = tmp_path / "store"
    import_upstream(tree.root, store=store)
    first = json.loads((store / "upstream" / "manifest.json").read_text())
    import_upstream(tree.root, store=store)  # over read-only files
    second = json.loads((store / "upstream" / "manifest.json").read_text())
    assert first["records"] == second["records"]
    # a file that disappeared from the source disappears from the store
    (tree.root / "evaluations/ccs/llama-7b-alpaca_mmlu/truthful_qa.json").unlink()
    summary = import_upstream(tree.root, store=store)
    assert ("llama-7b", "ccs") not in summary.records
    assert "ccs" not in UpstreamStore(store).interventions("llama-7b")
    assert not (store / "upstream" / "evaluations" / "llama-7b" / "ccs.json").exists()
    assert sorted(p.name for p in store.iterdir()) == ["locks", "upstream"]  # no staging left behind


def test_failed_import_keeps_previous_one(tree, tmp_path, monkeypatch):
    store = tmp_path / "store"
    import_upstream(tree.root, store=store)
    before = (store / "upstream" / "manifest.json").read_bytes()

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(up, "_import_files", broken)
    with pytest.raises(StoreError, match="No space left on device"):
        import_upstream(tree.root, store=store)
    assert (store / "upstream" / "manifest.json").read_bytes() == before
    assert sorted(p.name for p in store.iterdir()) == ["locks", "upstream"]


def _manifest_without_source(store: Path) -> dict:
    doc = json.loads((store / "upstream" / "manifest.json").read_text())
    return {k: v for k, v in doc.items() if k not in ("source", "imported")}


@pytest.mark.parametrize("top", [None, "GENIES-main"])
def test_tarball_equals_folder(tree, tmp_path, top):
    import_upstream(tree.root, store=tmp_path / "a")
    tarball = make_tarball(tree, tmp_path / "results.tar.gz", top=top)
    import_upstream(tarball, store=tmp_path / "b")
    assert _manifest_without_source(tmp_path / "a") == _manifest_without_source(tmp_path / "b")
    a = UpstreamStore(tmp_path / "a").bundle("llama-7b", "mms")
    b = UpstreamStore(tmp_path / "b").bundle("llama-7b", "mms")
    assert _json({k: r.model_dump() for k, r in a.items()}) == _json(
        {k: r.model_dump() for k, r in b.items()}
    )


def test_repository_root_is_accepted(tree, tmp_path):
    summary = import_upstream(tree.root.parent, store=tmp_path / "store")  # holds results/
    assert summary.n_records == 13


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def test_unsafe_archive_members_are_refused(tmp_path):
    doc = json.dumps(evaluation_doc(np.random.default_rng(0))).encode()
    tarball = tmp_path / "evil.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        _add_bytes(tar, "results/evaluations/mms/llama-7b-a/b.json", doc)
        _add_bytes(tar, "results/evaluations/mms/../../../../escaped.json", doc)
        link = tarfile.TarInfo("results/evaluations/mms/llama-7b-a/c.json")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    summary = import_upstream(tarball, store=tmp_path / "store")
    assert summary.n_records == 1
    assert summary.skipped["unsafe archive member"] == 2
    assert not (tmp_path / "escaped.json").exists()


def test_bad_sources(tmp_path):
    with pytest.raises(DataError, match="no such file or directory"):
        import_upstream(tmp_path / "missing", store=tmp_path / "store")
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(DataError, match="neither a folder nor a tar archive"):
        import_upstream(text, store=tmp_path / "store")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no results/evaluations folder"):
        import_upstream(tmp_path / "empty", store=tmp_path / "store")
    other = tmp_path / "other.tar.gz"
    with tarfile.open(other, "w:gz") as tar:
        _add_bytes(tar, "distributions/a/train.json", b"[]")
    with pytest.raises(DataError, match="holds no results/evaluations folder"):
        import_upstream(other, store=tmp_path / "store")
    assert not (tmp_path / "store" / "upstream").exists()


def test_truncated_tarball(tree, tmp_path):
    tarball = make_tarball(tree, tmp_path / "results.tar.gz")
    data = tarball.read_bytes()
    tarball.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="cannot read archive"):
        import_upstream(tarball, store=tmp_path / "store")


def test_tree_without_usable_files(tmp_path):
    root = tmp_path / "results" / "evaluations" / "mms" / "llama-7b-a"
    root.mkdir(parents=True)
    (root / "b.txt").write_text("not an evaluation")
    with pytest.raises(DataError, match="holds no upstream evaluation files"):
        import_upstream(tmp_path, store=tmp_path / "store")
    (root / "b.json").write_text("{not json")
    with pytest.raises(
        DataError, match=r"1 file .* cannot be read as JSON \(evaluations/mms/llama-7b-a/b.json\)"
    ):
        import_upstream(tmp_path, store=tmp_path / "store")


@pytest.mark.parametrize("damage", ["truncated", "not-utf8"])
def test_import_is_all_or_nothing(tree, tmp_path, damage):
    """A tree with one unreadable file is refused, naming it, and the previous import stays."""
    store = tmp_path / "store"
    good = import_upstream(tree.root, store=store)
    before = {p.relative_to(store).as_posix(): p.read_bytes() for p in _store_files(store)}
    victim = next(p for p in sorted((tree.root / "evaluations").rglob("*.json")))
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"\xff\xfe" + data)
    rel = victim.relative_to(tree.root).as_posix()
    with pytest.raises(DataError, match="nothing was imported") as err:
        import_upstream(tree.root, store=store)
    assert rel in str(err.value)
    after = {p.relative_to(store).as_posix(): p.read_bytes() for p in _store_files(store)}
    assert after == before
    assert sum(1 for _ in UpstreamStore(store).records()) == good.n_records
    assert not [p for p in store.iterdir() if p.name.startswith(".upstream")]  # no staging left


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs a non-root POSIX user")
def test_read_only_store_is_a_store_error(tree, tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    store.chmod(0o555)
    try:
        with pytest.raises(StoreError, match="cannot"):
            import_upstream(tree.root, store=store)
    finally:
        store.chmod(0o755)


# --- reading back: paper_rows ------------------------------------------------------------------------


def test_store_must_exist(tmp_path):
    with pytest.raises(StoreError, match="no imported paper results") as err:
        UpstreamStore(tmp_path / "nothing")
    assert "import-upstream" in str(err.value)


def test_paper_rows_follow_the_mapping(tree, tmp_path, suite_file):
    import_upstream(tree.root, store=tmp_path / "store")
    rows = paper_rows("llama-7b", "mms", str(suite_file), store=tmp_path / "store")
    assert [(r.source, r.target) for r in rows] == SHIFTS
    for r in rows:
        gen = tree.files[f"evaluations/mms/llama-7b-{r.source}/{r.target}.json"]
        src = tree.files[f"evaluations/mms/llama-7b-{r.source}/{r.source}.json"]
        base = tree.files[f"evaluations/zero_shot/llama-7b-{r.source}/{r.target}.json"]
        ttc = tree.ttc[("llama-7b", r.target)]
        assert r.target_reference == r.target
        assert r.generalization_accuracy == gen["eval_accuracy"]
        assert r.source_ID_accuracy == src["eval_accuracy"]
        assert r.RMS_calibration_error == gen["eval_rms_calibration_error"]
        assert r.baseline_accuracy == base["eval_accuracy"]
        assert r.baseline_intervention == "zero_shot"
        assert r.target_tuned_capability == ttc["best_intervention_accuracy"]
        assert r.target_tuned_capability_intervention == "classify_lora"
        expected_de = (gen["eval_accuracy"] - base["eval_accuracy"]) / ttc["best_intervention_accuracy"]
        assert r.differential_elicitation == expected_de
        assert r.extra_metrics["generalization_accuracy"] == metrics.accuracy(gen["eval_probabilities"])
        assert set(r.evaluation_keys) == {"generalization", "source_id", "baseline"}
        assert r.generalization_accuracy_ci is None


def test_paper_rows_with_ci(tree, tmp_path, suite_file):
    import_upstream(tree.root, store=tmp_path / "store")
    rows = paper_rows("llama-7b", "mms", str(suite_file), store=tmp_path / "store", with_ci=True, seed=1)
    for r in rows:
        lo, hi = r.generalization_accuracy_ci
        assert lo <= r.generalization_accuracy <= hi
        lo, hi = r.differential_elicitation_ci
        assert lo <= r.differential_elicitation <= hi
    again = paper_rows("llama-7b", "mms", str(suite_file), store=tmp_path / "store", with_ci=True, seed=1)
    assert [r.differential_elicitation_ci for r in again] == [r.differential_elicitation_ci for r in rows]


def test_paper_rows_missing_pieces_are_none(tree, tmp_path, suite_file):
    (tree.root / "evaluations/zero_shot/llama-7b-code/us_history.json").unlink()
    (tree.root / "target_tuned_capability/llama-7b/wrong_arc.json").unlink()
    import_upstream(tree.root, store=tmp_path / "store")
    rows = {r.target: r for r in paper_rows("llama-7b", "mms", str(suite_file), store=tmp_path / "store")}
    assert rows["us_history"].baseline_accuracy is None
    assert rows["us_history"].differential_elicitation is None
    assert rows["wrong_arc"].target_tuned_capability is None
    assert rows["wrong_arc"].differential_elicitation is None
    assert rows["truthful_qa"].differential_elicitation is not None
    assert not math.isnan(rows["truthful_qa"].differential_elicitation)


def test_paper_rows_unknown_names(tree, tmp_path):
    import_upstream(tree.root, store=tmp_path / "store")
    with pytest.raises(UnknownNameError, match="did you mean 'llama-7b'"):
        paper_rows("llama-7", "mms", store=tmp_path / "store")
    with pytest.raises(UnknownNameError, match="unknown intervention for llama-7b 'msm'"):
        paper_rows("llama-7b", "msm", store=tmp_path / "store")
    with pytest.raises(UnknownNameError, match="unknown suite"):
        paper_rows("llama-7b", "mms", "genis", store=tmp_path / "store")


def test_metrics_of_an_older_version_are_recomputed_on_read(tree, tmp_path):
    store = tmp_path / "store"
    import_upstream(tree.root, store=store)
    bundle = store / "upstream" / "evaluations" / "llama-7b" / "mms.json"
    doc = json.loads(bundle.read_text())
    for rec in doc["records"]:
        rec["metrics_version"], rec["metrics"] = "0", {"accuracy": -1.0}
    os.chmod(bundle, 0o644)
    bundle.write_text(json.dumps(doc))
    for rec in UpstreamStore(store).bundle("llama-7b", "mms").values():
        assert rec.metrics_version == metrics.METRICS_VERSION
        assert rec.metrics == metrics.summarize(rec.p_correct) or not rec.p_correct
