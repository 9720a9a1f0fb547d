"""The shift registry against the upstream shift lists in ../shared, plus suite-file handling."""

from __future__ import annotations

import dataclasses
import json
import tarfile
from collections import Counter
from pathlib import Path

import pytest

from genies.errors import DataError, GeniesError, UnknownNameError
from genies.shifts import (
    CATEGORIES,
    CATEGORY_GROUP,
    GROUPS,
    Shift,
    check_distributions,
    describe_suite,
    find_shift,
    get_suite,
    involved_distributions,
    list_suites,
    load_suite_file,
    unique_shifts,
)


@pytest.fixture(scope="module")
def shifts_dir(shared_dir: Path) -> Path:
    d = shared_dir / "genies-distribution-shifts"
    if not d.is_dir():
        pytest.skip(f"upstream shift lists not found at {d}")
    return d


def _rows(path: Path) -> list[tuple[str, str, str]]:
    """(source, target, target_reference) per entry of an upstream file, reference defaulting to target."""
    return [
        (e["source"], e["target"], e.get("target_reference", e["target"]))
        for e in json.loads(path.read_text())
    ]


def _keys(shifts: list[Shift]) -> list[tuple[str, str, str]]:
    return [s.key for s in shifts]


def _category_files(shifts_dir: Path) -> dict[str, Path]:
    return {p.stem: p for g in GROUPS for p in sorted((shifts_dir / g).glob("*.json")) if p.stem != "all"}


# --- the registry against the upstream files ---------------------------------------------------------


def test_suite_sizes():
    sizes = {
        name: len(get_suite(name)) for name in ("genies", "all", "all-paper", "test", "extreme", "probing")
    }
    assert sizes == {"genies": 15, "all": 56, "all-paper": 69, "test": 1, "extreme": 37, "probing": 19}


def test_all_paper_is_all_json_row_for_row(shifts_dir):
    assert _keys(get_suite("all-paper")) == _rows(shifts_dir / "all.json")


def test_all_is_all_json_deduplicated_in_first_occurrence_order(shifts_dir):
    upstream = list(dict.fromkeys(_rows(shifts_dir / "all.json")))
    assert _keys(get_suite("all")) == upstream
    assert len(upstream) == 56


def test_groups_follow_their_all_files(shifts_dir):
    paper = get_suite("all-paper")
    extreme_rows = _rows(shifts_dir / "extreme" / "all.json")
    probing_rows = _rows(shifts_dir / "probing" / "all.json")
    # all.json = extreme/all.json followed by probing/all.json
    assert _keys(paper) == extreme_rows + probing_rows
    assert _keys(get_suite("extreme")) == extreme_rows  # no duplicates there
    assert len(probing_rows) == 32
    assert _keys(get_suite("probing")) == list(dict.fromkeys(probing_rows))
    assert {s.group for s in paper[: len(extreme_rows)]} == {"extreme"}
    assert {s.group for s in paper[len(extreme_rows) :]} == {"probing"}


def test_each_category_equals_its_upstream_file(shifts_dir):
    files = _category_files(shifts_dir)
    assert sorted(files) == sorted(CATEGORIES)
    for category, path in files.items():
        shifts = get_suite(category)
        assert _keys(shifts) == _rows(path), category
        assert {s.category for s in shifts} == {category}
        assert {s.group for s in shifts} == {path.parent.name} == {CATEGORY_GROUP[category]}


def test_every_all_json_row_lies_in_exactly_one_category_file(shifts_dir):
    owner: dict[tuple[str, str, str], list[str]] = {}
    for category, path in _category_files(shifts_dir).items():
        for row in _rows(path):
            owner.setdefault(row, []).append(category)
    for s in get_suite("all-paper"):
        assert owner.get(s.key) == [s.category], s.id


def test_rows_per_category_match_the_spec_table(shifts_dir):
    paper = Counter(s.category for s in get_suite("all-paper"))
    unique = Counter(s.category for s in get_suite("all"))
    expected_unique = {
        "context": 8,
        "difficulty": 6,
        "encoding": 4,
        "pretraining_similarity": 4,
        "quality": 3,
        "skill": 12,
        "spurious_cues": 6,
        "unwanted_personas": 13,
    }
    assert dict(unique) == expected_unique
    assert dict(paper) == expected_unique | {"unwanted_personas": 26}
    # and the same counts follow from the upstream files themselves
    assert dict(unique) == {c: len(_rows(p)) for c, p in _category_files(shifts_dir).items()}


def test_genies_suite_equals_genies_json_with_label_and_category(shifts_dir):
    upstream = json.loads((shifts_dir / "GENIES.json").read_text())
    genies = get_suite("genies")
    assert _keys(genies) == _rows(shifts_dir / "GENIES.json")
    assert [(s.label, s.category) for s in genies] == [(e["label"], e["category"]) for e in upstream]
    # the documented upstream inconsistency: labelled extreme, but its category file is under probing/
    odd = [s for s in genies if s.label != s.group]
    assert [(s.id, s.group, s.label) for s in odd] == [
        ("alpaca_short->alpaca_long@alpaca_mmlu", "probing", "extreme")
    ]
    assert set(genies) <= set(get_suite("all"))


def test_test_suite_equals_test_json(shifts_dir):
    upstream = json.loads((shifts_dir / "test.json").read_text())
    (s,) = get_suite("test")
    assert (s.source, s.target, s.reference, s.label, s.category) == (
        upstream[0]["source"],
        upstream[0]["target"],
        upstream[0].get("target_reference", upstream[0]["target"]),
        upstream[0]["label"],
        upstream[0]["category"],
    )


def test_distribution_counts(shifts_dir):
    rows = _rows(shifts_dir / "all.json")
    shifts = get_suite("all")
    sources, targets, refs = (
        {s.source for s in shifts},
        {s.target for s in shifts},
        {s.reference for s in shifts},
    )
    assert (len(sources), len(targets), len(refs), len(involved_distributions(shifts))) == (26, 45, 44, 61)
    assert (
        sources == {r[0] for r in rows} and targets == {r[1] for r in rows} and refs == {r[2] for r in rows}
    )
    assert set(involved_distributions(get_suite("all-paper"))) == set(involved_distributions(shifts))


def test_upstream_files_read_as_suite_files_equal_the_builtins(shifts_dir):
    from_file = get_suite(str(shifts_dir / "GENIES.json"))
    builtin = get_suite("genies")
    assert from_file == builtin
    assert [s.label for s in from_file] == [s.label for s in builtin]
    assert get_suite(shifts_dir / "all.json") == get_suite("all-paper")
    assert get_suite(shifts_dir / "probing" / "all.json") == get_suite("all-paper")[37:]


def test_registry_distributions_exist_in_the_official_tarball(datasets_tarball):
    with tarfile.open(datasets_tarball) as tar:
        names = {Path(n).parts[1] for n in tar.getnames() if len(Path(n).parts) > 2}
    missing = set(involved_distributions(get_suite("all"))) - names
    assert not missing


def test_registry_distributions_exist_in_the_imported_store(request):
    pytest.importorskip("genies.data.store", reason="genies.data.store (data import) not available yet")
    data_dir = request.getfixturevalue("data_dir")
    for name in list_suites():
        if (
            name != "synthetic"
        ):  # generated by `genies data synth`, not in the release (tests/data/test_synthetic.py)
            get_suite(name, data_dir=data_dir, check_data=True)  # raises on any missing id
    assert len(involved_distributions(get_suite("all", data_dir=data_dir, check_data=True))) == 61


# --- the Shift record and suite API -------------------------------------------------------------------


def test_shift_defaults_id_and_equality():
    s = Shift("a", "b")
    assert s.target_reference == "b" and s.reference == "b"
    assert (s.category, s.group, s.label) == ("custom", None, None)
    assert s.id == "a->b" and s.key == ("a", "b", "b")
    r = Shift("a", "b", "c", "spurious_cues", "probing", "extreme")
    assert r.id == "a->b@c" and r.distributions == ("a", "b", "c")
    assert r == Shift("a", "b", "c", "spurious_cues", "probing")  # label describes the listing only
    assert r != Shift("a", "b", None, "spurious_cues", "probing")
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.source = "x"  # type: ignore[misc]


def test_ids_are_unique_within_deduplicated_suites():
    for name in list_suites():
        if name != "all-paper":
            ids = [s.id for s in get_suite(name)]
            assert len(ids) == len(set(ids)), name


def test_list_suites_and_descriptions():
    names = list_suites()
    assert names[:6] == ["genies", "all", "all-paper", "test", "extreme", "probing"]
    assert sorted(names[6:14]) == sorted(CATEGORIES) and len(CATEGORIES) == 8
    assert names[14:] == ["synthetic"]
    assert all(describe_suite(n) for n in names)
    with pytest.raises(UnknownNameError):
        describe_suite("nope")


def test_suite_names_are_case_insensitive():
    assert get_suite("GENIES") == get_suite("genies")


def test_unique_shifts_keeps_first_positions():
    a, b = Shift("a", "b"), Shift("c", "d")
    assert unique_shifts([a, b, a, Shift("a", "b", "x")]) == [a, b, Shift("a", "b", "x")]


def test_find_shift():
    s = find_shift("alpaca_mmlu", "sycophancy_mimicry")
    assert s is not None and (s.reference, s.category, s.group) == (
        "quote_attribution",
        "unwanted_personas",
        "probing",
    )
    assert find_shift("alpaca_mmlu", "nope") is None


def test_unknown_suite_says_did_you_mean():
    with pytest.raises(UnknownNameError, match=r"unknown suite 'genis'; did you mean 'genies'"):
        get_suite("genis")
    with pytest.raises(UnknownNameError, match="did you mean 'all-paper'"):
        get_suite("all_paper")


# --- user suite files ---------------------------------------------------------------------------------


def _write(tmp_path: Path, content: str, name: str = "suite.json") -> Path:
    p = tmp_path / name
    p.write_text(content)
    return p


def test_user_file_fills_category_from_registry_and_marks_custom(tmp_path):
    p = _write(
        tmp_path,
        json.dumps(
            [
                {"source": "alpaca_mmlu", "target": "wrong_arc"},
                {"source": "alpaca_short", "target": "alpaca_long", "target_reference": "alpaca_mmlu"},
                {"source": "mine", "target": "yours"},
                {"source": "mine", "target": "theirs", "category": "encoding", "label": "extreme"},
                {"source": "mine", "target": "ours", "category": "my_cat", "group": "probing"},
                {"source": "code", "target": "math", "target_reference": None, "label": None},
            ]
        ),
    )
    got = get_suite(str(p))
    assert [(s.id, s.category, s.group, s.label) for s in got] == [
        ("alpaca_mmlu->wrong_arc", "spurious_cues", "probing", None),
        ("alpaca_short->alpaca_long@alpaca_mmlu", "spurious_cues", "probing", None),
        ("mine->yours", "custom", None, None),
        ("mine->theirs", "encoding", "extreme", "extreme"),
        ("mine->ours", "my_cat", "probing", None),
        ("code->math", "custom", None, None),
    ]


def test_json_listing_round_trips_as_a_suite_file(tmp_path):
    for name in ("genies", "all-paper"):
        p = _write(tmp_path, json.dumps([s.to_json() for s in get_suite(name)]), f"{name}.json")
        again = load_suite_file(p)
        assert again == get_suite(name)
        assert [s.label for s in again] == [s.label for s in get_suite(name)]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[{", "is not valid JSON"),
        ('{"source": "a", "target": "b"}', "must hold a JSON list of shifts, not a dict"),
        ("[]", "lists no shifts"),
        ('[{"source": "a", "target": "b"}, {"source": "a"}]', "entry 1: missing 'target'"),
        ('[{"target": "b"}]', "entry 0: missing 'source'"),
        ('[{"source": "a", "target": 3}]', "'target' must be a non-empty string, got 3"),
        ('[{"source": "", "target": "b"}]', "'source' must be a non-empty string"),
        ('["a->b"]', "expected an object with source and target, got str"),
        ('[{"source": "a", "target": "b", "target_refrence": "c"}]', "did you mean 'target_reference'"),
        ('[{"source": "alpaca_mmlu", "target": "wrong_arc", "category": "skill"}]', "belongs to category"),
        (
            '[{"source": "a", "target": "b", "group": "extrme"}]',
            "unknown group 'extrme'; did you mean 'extreme'",
        ),
        (
            '[{"source": "a", "target": "b", "category": "skill", "group": "probing"}]',
            "belongs to group 'extreme'",
        ),
    ],
)
def test_malformed_suite_files_give_one_line_data_errors(tmp_path, content, message):
    p = _write(tmp_path, content)
    with pytest.raises(DataError, match=message) as info:
        get_suite(str(p))
    assert "\n" not in str(info.value)


def test_missing_suite_file(tmp_path):
    with pytest.raises(DataError, match="suite file not found"):
        get_suite(str(tmp_path / "nope.json"))
    with pytest.raises(DataError, match="suite file not found"):
        get_suite(str(tmp_path / "dir" / "nope"))


# --- checking ids against a data store ----------------------------------------------------------------


def _fake_store(tmp_path: Path, ids: list[str]) -> Path:
    for d in ids:
        (tmp_path / "store" / "distributions" / d).mkdir(parents=True)
    return tmp_path / "store"


def test_check_data_against_a_store(tmp_path):
    store = _fake_store(tmp_path, ["us_history_textbook", "us_history_fiction", "alpaca_mmlu", "truthful_qa"])
    assert len(get_suite("test", data_dir=store, check_data=True)) == 1
    p = _write(tmp_path, json.dumps([{"source": "alpaca_mmlu", "target": "truthfull_qa"}]))
    get_suite(str(p), data_dir=store)  # not checked unless asked
    with pytest.raises(
        UnknownNameError, match=r"unknown distribution 'truthfull_qa'; did you mean 'truthful_qa'"
    ) as e:
        get_suite(str(p), data_dir=store, check_data=True)
    assert "alpaca_mmlu->truthfull_qa" in str(e.value)
    with pytest.raises(UnknownNameError, match="unknown distribution 'us_history'"):
        get_suite("context", data_dir=store, check_data=True)


def test_check_data_uses_the_default_store(tmp_path, monkeypatch):
    store = _fake_store(tmp_path, ["us_history_textbook", "us_history_fiction"])
    monkeypatch.setenv("GENIES_DATA_DIR", str(store))
    assert get_suite("test", check_data=True)


def test_check_data_accepts_distribution_folders_given_as_paths(tmp_path):
    store = _fake_store(tmp_path, ["alpaca_mmlu"])
    folder = tmp_path / "my_dists" / "new_target"
    folder.mkdir(parents=True)
    check_distributions([Shift("alpaca_mmlu", str(folder))], store)
    with pytest.raises(UnknownNameError):
        check_distributions([Shift("alpaca_mmlu", str(tmp_path / "absent"))], store)


def test_check_data_with_an_empty_store(tmp_path):
    with pytest.raises(DataError, match="no distributions in the data store") as e:
        get_suite("genies", data_dir=tmp_path / "empty", check_data=True)
    assert isinstance(e.value, GeniesError) and "genies data import" in str(e.value)
