"""The synthetic suite (genies.data.synthetic): determinism, validity, planted cues, store interplay."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from datakit import dist_files, good_files, make_tar, tree_hash, write_tree

from genies.cli import main
from genies.data import synthetic as syn
from genies.data.loading import clear_cache, load_distribution
from genies.data.store import import_data, install_generated, list_distributions, read_manifest
from genies.data.validation import check_distribution
from genies.errors import ConfigError, DataError, UnknownNameError
from genies.shifts import find_shift, get_suite, involved_distributions, list_suites

BALANCED = (
    "synth_facts",
    "synth_facts_fiction",
    "synth_confident_correct",
    "synth_expert_wrong",
    "synth_quality_low",
)


@pytest.fixture(scope="module")
def suite() -> dict[str, dict[str, list[dict]]]:
    """The default-size suite, parsed: id -> split -> records."""
    files = syn.build_suite()
    return {d: {s: json.loads(f[f"{s}.json"]) for s in ("train", "test")} for d, f in files.items()}


def _all_records(suite, dist_id):
    return suite[dist_id]["train"] + suite[dist_id]["test"]


def _accuracy(records, prefer) -> float:
    """Pairwise accuracy of a scorer ``prefer(text, record) -> float`` (ties count half, as genies'
    default). Text-only scorers ignore the record; the oracle reads the recorded problem from it."""
    hits = 0.0
    for r in records:
        (a, sa), (b, _) = r["responses"].items()
        good, bad = (a, b) if sa == 1 else (b, a)
        g, w = prefer(good, r), prefer(bad, r)
        hits += 1.0 if g > w else 0.5 if g == w else 0.0
    return hits / len(records)


def oracle(text: str, record: dict) -> float:
    """1 for the response that claims the truth recomputed from the problem, else 0 (never reads scores)."""
    meta = record["synthetic"]
    claim = meta["claims"][list(record["responses"]).index(text)]
    return float(claim == syn.truth_of(meta["problem"]))


# --- determinism and sizes ---------------------------------------------------------------------------


def test_same_seed_same_bytes_other_seed_other_bytes():
    a, b = (
        syn.build_suite(seed=3, train_size=40, test_size=20),
        syn.build_suite(seed=3, train_size=40, test_size=20),
    )
    assert a == b
    c = syn.build_suite(seed=4, train_size=40, test_size=20)
    assert set(c) == set(a) == set(syn.DISTRIBUTION_IDS)
    for d in a:
        assert a[d]["train.json"] != c[d]["train.json"] and a[d]["test.json"] != c[d]["test.json"], d


def test_generate_writes_the_same_bytes_in_any_store(tmp_path):
    first = syn.generate(tmp_path / "a", seed=7, train_size=30, test_size=10)
    syn.generate(tmp_path / "b", seed=7, train_size=30, test_size=10)
    ha, hb = tree_hash(tmp_path / "a" / "distributions"), tree_hash(tmp_path / "b" / "distributions")
    ha.pop("manifest.json"), hb.pop("manifest.json")  # records mtimes
    assert ha == hb and len(ha) == 3 * len(syn.DISTRIBUTION_IDS)
    assert first.ids == list(syn.DISTRIBUTION_IDS) and first.removed == []
    files = syn.build_suite(seed=7, train_size=30, test_size=10)
    for d, members in files.items():
        for name, data in members.items():
            assert (tmp_path / "a" / "distributions" / d / name).read_bytes() == data


@pytest.mark.parametrize(("train", "test"), [(1, 1), (7, 3), (200, 100), (450, 40), (40, 3000)])
def test_sizes_are_honoured(train, test):
    for d, f in syn.build_suite(train_size=train, test_size=test).items():
        assert len(json.loads(f["train.json"])) == train, d
        assert len(json.loads(f["test.json"])) == test, d
        meta = json.loads(f["metadata.json"])
        assert (meta["train_size"], meta["test_size"], meta["seed"]) == (train, test, 0)


@pytest.mark.parametrize(
    "bad", [{"train_size": 0}, {"test_size": -1}, {"train_size": 2.5}, {"seed": "x"}, {"test_size": 10**6}]
)
def test_bad_sizes_are_config_errors(bad):
    with pytest.raises(ConfigError):
        syn.build_suite(**bad)


# --- validity and format -----------------------------------------------------------------------------


def test_every_example_passes_validation_without_warnings(tmp_path):
    syn.generate(tmp_path, train_size=200, test_size=100)
    for d in syn.DISTRIBUTION_IDS:
        report = check_distribution(tmp_path / "distributions" / d)
        assert report.problems == [], (d, [str(p) for p in report.problems])
        dist = load_distribution(d, tmp_path)
        assert len(dist.train) == 200 and len(dist.test) == 100
        assert dist.responses_per_example == [2]
        assert len(dist.test.to_pairs("all")) == 100
    assert all(i.ok for i in list_distributions(tmp_path))


def test_prompts_follow_the_alpaca_format(suite):
    for d in syn.DISTRIBUTION_IDS:
        for r in _all_records(suite, d):
            fmt = r["prompt_format"]
            assert fmt in (syn.PROMPT_FORMAT, syn.PROMPT_FORMAT_INPUT)
            expected = fmt.replace("{instruction}", r["instruction"]).replace("{input}", r.get("input", ""))
            assert r["prompt"] == expected
            assert r["prompt"].startswith("Below is an instruction") and r["prompt"].endswith(
                "### Response:\n"
            )


def test_response_order_is_a_fair_coin(suite):
    for d in syn.DISTRIBUTION_IDS:
        recs = _all_records(suite, d)
        first_best = sum(next(iter(r["responses"].values())) == 1 for r in recs) / len(recs)
        assert 0.4 <= first_best <= 0.6, (d, first_best)


def test_no_test_problem_appears_in_any_train_split(suite):
    def identity(problem):  # both directions / operand orders of one question are one problem
        if problem["task"] == "addition":
            return ("add", frozenset((problem["a"], problem["b"])))
        subject = problem["subject"]
        subject = tuple(subject) if isinstance(subject, list) else subject
        rel = problem["relation"]
        if rel == "opposite":  # "opposite of hot" and "opposite of cold"
            return (rel, frozenset((subject, syn.truth_of(problem))))
        return (rel.split("_")[0], subject)  # "day after x" and "day before x"; "bigger"/"smaller"

    train = {identity(r["synthetic"]["problem"]) for d in suite for r in suite[d]["train"]}
    test = {identity(r["synthetic"]["problem"]) for d in suite for r in suite[d]["test"]}
    assert train and test and not train & test


# --- the planted causes ------------------------------------------------------------------------------


def test_length_cue_is_planted_only_where_it_should_be(suite):
    def by_length(text: str, _record: dict) -> float:
        return len(text)

    for split in ("train", "test"):
        # the spurious source rewards "shorter", its target "longer": a length-only scorer learned on the
        # source (prefer shorter) gets >= 95% there and <= 5% on the target, whichever way it is read
        assert _accuracy(suite["synth_shorter_correct"][split], lambda t, r: -len(t)) >= 0.95
        assert _accuracy(suite["synth_longer_correct"][split], lambda t, r: -len(t)) <= 0.05
        assert _accuracy(suite["synth_longer_correct"][split], by_length) >= 0.95
        assert _accuracy(suite["synth_shorter_correct"][split], by_length) <= 0.05
        assert _accuracy(suite["synth_quality_high"][split], by_length) <= 0.05  # terse vs verbose
        for d in BALANCED:
            assert 0.35 <= _accuracy(suite[d][split], by_length) <= 0.65, (d, split)


def test_correctness_oracle_gets_everything_right(suite):
    for d in syn.DISTRIBUTION_IDS:
        for r in _all_records(suite, d):
            meta = r["synthetic"]
            truth = syn.truth_of(meta["problem"])  # recomputed from the problem alone
            assert meta["truth"] == truth, d
            texts, scores = list(r["responses"]), list(r["responses"].values())
            assert [c == truth for c in meta["claims"]] == [s == 1 for s in scores], (d, r["instruction"])
            for text, claim in zip(texts, meta["claims"], strict=True):
                assert claim is None or syn.states(text, claim), (d, text, claim)
        for split in ("train", "test"):
            assert _accuracy(suite[d][split], oracle) == 1.0, (d, split)


def _template_regex(templates: tuple[str, ...]) -> re.Pattern[str]:
    parts = [re.escape(t).replace(re.escape("{clause}"), ".+") for t in templates]
    return re.compile("^(?:" + "|".join(parts) + ")$")


def test_answer_statistics_are_no_cue(suite):
    """A learner of "which answers tend to be right", fitted on any train split, is at chance on every
    test split of its pool (without balancing it fell to 0.33: the partition reverses the statistics)."""
    pools = {s.id: s.pool for s in syn.SPECS}
    for src in syn.DISTRIBUTION_IDS:
        tally: dict[str, int] = {}
        for r in suite[src]["train"]:
            meta = r["synthetic"]
            for claim in meta["claims"]:
                if claim is not None:
                    tally[claim] = tally.get(claim, 0) + (1 if claim == meta["truth"] else -1)

        def memorizer(text: str, record: dict, tally=tally) -> float:
            claim = record["synthetic"]["claims"][list(record["responses"]).index(text)]
            return tally.get(claim, 0) if claim is not None else 0

        for tgt in syn.DISTRIBUTION_IDS:
            if pools[tgt] == pools[src] and tgt != "synth_quality_low":  # there: answer vs no answer
                assert 0.4 <= _accuracy(suite[tgt]["test"], memorizer) <= 0.6, (src, tgt)


def test_persona_cue_flips_between_source_and_target(suite):
    confident, hedged = _template_regex(syn.CONFIDENT), _template_regex(syn.HEDGED)
    for d in ("synth_confident_correct", "synth_expert_wrong"):
        for r in _all_records(suite, d):
            assert all(bool(confident.match(t)) != bool(hedged.match(t)) for t in r["responses"])

    def by_tone(text: str, _record: dict) -> float:
        return 1.0 if confident.match(text) else 0.0

    assert _accuracy(_all_records(suite, "synth_confident_correct"), by_tone) >= 0.95
    assert _accuracy(_all_records(suite, "synth_expert_wrong"), by_tone) <= 0.05
    assert _accuracy(_all_records(suite, "synth_facts"), by_tone) == 0.5  # no tone at all there


def test_quality_cue_flips_between_source_and_target(suite):
    def by_working(text: str, _record: dict) -> float:  # number of worked steps shown
        return float(text.count("="))

    assert _accuracy(_all_records(suite, "synth_quality_low"), by_working) >= 0.95
    assert _accuracy(_all_records(suite, "synth_quality_high"), by_working) <= 0.05


def test_the_worked_error_is_one_slip():
    for a, b in [(27, 45), (11, 74), (90, 91), (55, 55), (10, 10)]:
        for style in range(3):
            right, total = syn.worked_sum(a, b, error=False, style=style)
            assert total == a + b and right.endswith(f"{a + b}.")
            _, wrong = syn.worked_sum(a, b, error=True, style=style)
            assert abs(wrong - (a + b)) == 10


def test_number_to_words():
    cases = {0: "zero", 7: "seven", 15: "fifteen", 40: "forty", 47: "forty-seven", 100: "one hundred"}
    cases |= {347: "three hundred forty-seven", 1627: "one thousand six hundred twenty-seven"}
    assert {n: syn.number_to_words(n) for n in cases} == cases
    with pytest.raises(ValueError):
        syn.number_to_words(-1)


def test_metadata_says_what_was_planted(suite):
    files = syn.build_suite(seed=5, train_size=10, test_size=5)
    for d, f in files.items():
        meta = json.loads(f["metadata.json"])
        assert meta["id"] == d and meta["generated_by"] == syn.GENERATOR
        assert (meta["seed"], meta["generator_version"]) == (5, syn.GENERATOR_VERSION)
        assert {"contrast", "cue", "correct_rule"} <= set(meta["planted"])
        assert meta["shifts"], f"{d} takes part in no shift"
        for s in meta["shifts"]:
            assert s["role"] in ("source", "target") and s["changes"] and s["expect"]
    cue = {d for d, f in files.items() if "shortcut" in json.loads(f["metadata.json"])["planted"]}
    assert cue == {
        "synth_longer_correct",
        "synth_shorter_correct",
        "synth_confident_correct",
        "synth_expert_wrong",
        "synth_quality_low",
        "synth_quality_high",
    }


# --- the registry ------------------------------------------------------------------------------------


def test_suite_is_registered_and_complete(tmp_path):
    assert "synthetic" in list_suites()
    shifts = get_suite("synthetic")
    assert len(shifts) == len(syn.SHIFT_NOTES) >= 6
    assert {(s.source, s.target) for s in shifts} == set(syn.SHIFT_NOTES)
    assert set(involved_distributions(shifts)) == set(syn.DISTRIBUTION_IDS)
    assert len({s.category for s in shifts}) == len(shifts)  # one shift per category
    for s in shifts:
        assert s.group is not None and find_shift(s.source, s.target) == s
    official = set(involved_distributions(get_suite("all")))
    assert all(d.startswith(syn.PREFIX) and d not in official for d in syn.DISTRIBUTION_IDS)
    write_tree(tmp_path / "other", dist_files("alpha"))
    with pytest.raises(UnknownNameError, match="synth_"):
        get_suite("synthetic", data_dir=tmp_path / "other", check_data=True)
    syn.generate(tmp_path / "store", train_size=5, test_size=5)
    get_suite("synthetic", data_dir=tmp_path / "store", check_data=True)  # every source and target exists


def test_cli_synth_and_shifts_list(tmp_path, capsys):
    assert main(["data", "synth", "--size", "12", "--seed", "2", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "11 synthetic distributions" in out and "12 train / 6 test" in out
    expected = syn.build_suite(seed=2, train_size=12, test_size=6)
    for d, members in expected.items():
        for name, data in members.items():
            assert (tmp_path / "distributions" / d / name).read_bytes() == data
    assert main(["shifts", "list", "--suite", "synthetic", "--data-dir", str(tmp_path), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(r["source"], r["target"]) for r in listed] == [
        (s.source, s.target) for s in get_suite("synthetic")
    ]
    assert main(["data", "synth", "--size", "0", "--data-dir", str(tmp_path)]) == 2  # usage error


# --- interplay with imports --------------------------------------------------------------------------


def _synth_hashes(root: Path) -> dict[str, str]:
    return {k: v for k, v in tree_hash(root / "distributions").items() if k.startswith(syn.PREFIX)}


def test_import_keeps_the_synthetic_distributions(tmp_path):
    store = tmp_path / "store"
    syn.generate(store, train_size=8, test_size=4)
    before = _synth_hashes(store)
    result = import_data(make_tar(tmp_path / "release.tar", good_files()), store)
    assert [i.id for i in result.distributions] == ["alpha", "beta"]
    assert [i.id for i in result.kept] == sorted(syn.DISTRIBUTION_IDS)
    assert _synth_hashes(store) == before
    ids = {i.id for i in list_distributions(store)}
    assert ids == {"alpha", "beta", *syn.DISTRIBUTION_IDS}
    assert set(read_manifest(store)["distributions"]) == ids
    get_suite("synthetic", data_dir=store, check_data=True)


def test_synth_keeps_imported_distributions_and_replaces_its_own(tmp_path):
    store = tmp_path / "store"
    import_data(make_tar(tmp_path / "release.tar", good_files()), store)
    official = {k: v for k, v in tree_hash(store / "distributions").items() if not k.startswith("manifest")}
    manifest = read_manifest(store)
    # a stale generated distribution (e.g. from an older generator version) is removed
    stale = store / "distributions" / "synth_old"
    stale.mkdir()
    for name, data in dist_files("synth_old").items():
        (stale / Path(name).name).write_bytes(data)
    (stale / "metadata.json").write_text(json.dumps({"id": "synth_old", "generated_by": syn.GENERATOR}))

    result = syn.generate(store, seed=1, train_size=6, test_size=3)
    assert result.removed == ["synth_old"] and not stale.exists()
    now = tree_hash(store / "distributions")
    assert all(now[k] == v for k, v in official.items())  # imported files untouched
    new_manifest = read_manifest(store)
    assert new_manifest["source"] == manifest["source"]
    assert new_manifest["distributions"]["alpha"] == manifest["distributions"]["alpha"]

    first = _synth_hashes(store)
    syn.generate(store, seed=2, train_size=6, test_size=3)
    second = _synth_hashes(store)
    assert set(first) == set(second) and first != second
    clear_cache()
    assert load_distribution("synth_facts", store).train.fingerprint  # loads after the swap
    assert {i.id for i in list_distributions(store)} == {"alpha", "beta", *syn.DISTRIBUTION_IDS}
    assert not list(store.glob(".import-*")) and not list(store.glob(".old-*"))


def test_an_imported_distribution_with_a_synthetic_id_wins_and_blocks_generation(tmp_path):
    store = tmp_path / "store"
    syn.generate(store, train_size=4, test_size=2)
    files = {**good_files(), **dist_files("synth_facts")}
    result = import_data(make_tar(tmp_path / "release.tar", files), store)
    assert "synth_facts" in [i.id for i in result.distributions]
    assert "synth_facts" not in [i.id for i in result.kept]
    mine = json.loads((store / "distributions" / "synth_facts" / "metadata.json").read_text())
    assert "generated_by" not in mine
    before = tree_hash(store / "distributions")
    with pytest.raises(DataError, match="synth_facts.*was not made by"):
        syn.generate(store, train_size=4, test_size=2)
    assert tree_hash(store / "distributions") == before


def test_install_generated_refuses_invalid_files_and_leaves_the_store(tmp_path):
    store = tmp_path / "store"
    syn.generate(store, train_size=4, test_size=2)
    before = tree_hash(store / "distributions")
    meta = json.dumps({"generated_by": syn.GENERATOR}).encode()
    broken = {"synth_x": {"train.json": b"[]", "test.json": b"[]", "metadata.json": meta}}
    with pytest.raises(DataError, match="refusing"):
        install_generated(syn.GENERATOR, broken, store)
    unsigned = {
        "synth_x": {**syn.build_suite(train_size=2, test_size=1)["synth_facts"], "metadata.json": b"{}"}
    }
    with pytest.raises(DataError, match="generated_by"):
        install_generated(syn.GENERATOR, unsigned, store)
    assert tree_hash(store / "distributions") == before


def test_official_release_and_synthetic_suite_coexist(data_dir, tmp_path):
    """With the real release: synth beside 66 official distributions, and a re-import keeps both."""
    store = tmp_path / "store"
    shutil.copytree(data_dir / "distributions", store / "distributions")  # the session's imported store
    official = {k: v for k, v in tree_hash(store / "distributions").items() if k != "manifest.json"}
    syn.generate(store)
    after_synth = tree_hash(store / "distributions")
    assert all(after_synth[k] == v for k, v in official.items())
    assert len(list_distributions(store)) == 66 + len(syn.DISTRIBUTION_IDS)
    import_data(data_dir, store)
    now = tree_hash(store / "distributions")
    assert all(now[k] == v for k, v in official.items())
    assert all(now[k] == after_synth[k] for k in after_synth if k.startswith(syn.PREFIX))
    infos = list_distributions(store)
    assert len(infos) == 66 + len(syn.DISTRIBUTION_IDS)
    assert all(i.ok for i in infos if i.id.startswith(syn.PREFIX))
    for name in list_suites():
        get_suite(name, data_dir=store, check_data=True)
