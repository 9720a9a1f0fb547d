"""load_distribution (validated, cached), unknown ids, and pairing (upstream-reference §1.4)."""

from __future__ import annotations

import json
import os
import random

import numpy as np
import pytest
from datakit import good_files, make_tar, records

from genies.data import Distribution, Pair, import_data, list_distribution_ids, load_distribution
from genies.errors import DataError, UnknownNameError, ValidationError


def test_load_official_distribution(use_data_dir):
    dist = load_distribution("ranking_logic_easy")
    assert isinstance(dist, Distribution) and dist.id == "ranking_logic_easy"
    assert (len(dist.train), len(dist.test), dist.responses_per_example) == (600, 250, [3])
    assert dist.path == (use_data_dir / "distributions" / "ranking_logic_easy").resolve()
    ex = dist.test.examples[7]
    assert ex.index == 7 and ex.responses.count((ex.best, 1.0)) == 1 and len(ex.worse) == 2
    assert "prompt_format" in ex.extra and "prompt" not in ex.extra
    # in-process cache: the same object until a file changes
    assert load_distribution("ranking_logic_easy") is dist
    assert load_distribution(dist.path) is dist


def test_unknown_id_suggests_close_names(use_data_dir):
    with pytest.raises(
        UnknownNameError, match=r"unknown distribution 'alpaca_eazy'; did you mean 'alpaca_easy'"
    ):
        load_distribution("alpaca_eazy")


def test_unknown_id_in_an_empty_store_hints_at_importing(tmp_path):
    with pytest.raises(UnknownNameError) as exc:
        load_distribution("alpaca_easy", tmp_path)
    assert "is empty; run `genies data download`" in str(exc.value)
    assert list_distribution_ids(tmp_path) == []


def test_degenerate_distribution_is_refused_unless_not_strict(use_data_dir):
    with pytest.raises(
        ValidationError, match="'commonsense_qa' is not usable: .*degenerate prompts: 600/600"
    ):
        load_distribution("commonsense_qa")
    dist = load_distribution("commonsense_qa", strict=False)
    assert len(dist.train) == 600 and dist.train.examples[0].prompt == "B"


def test_load_from_a_folder_reloads_edited_files(tmp_path):
    d = tmp_path / "mine"
    d.mkdir()
    (d / "train.json").write_text(json.dumps(records(4)))
    (d / "test.json").write_text(json.dumps(records(2, 3, "t")))
    first = load_distribution(d)
    assert first.id == "mine" and len(first.test) == 2
    (d / "test.json").write_text(json.dumps(records(5, 3, "t")))
    os.utime(d / "test.json", ns=(1, 1))  # a different mtime even on coarse clocks
    assert len(load_distribution(str(d)).test) == 5

    (d / "train.json").write_text(
        json.dumps(records(1) + [{"prompt": "p", "responses": {"a": 1.0, "b": 1.0}}])
    )
    with pytest.raises(
        ValidationError, match=r"invalid distribution 'mine': .*train.json: example 1: 2 responses"
    ):
        load_distribution(d)


def test_missing_folder_or_file_path(tmp_path):
    with pytest.raises(DataError, match="no such distribution folder"):
        load_distribution(tmp_path / "nope")
    (tmp_path / "f.json").write_text("[]")
    with pytest.raises(DataError, match="is a file; a distribution is a folder"):
        load_distribution(str(tmp_path / "f.json"))


def test_store_ids_come_from_the_data_dir_argument_or_environment(tmp_path, monkeypatch):
    import_data(make_tar(tmp_path / "d.tar", good_files()), tmp_path / "store")
    assert list_distribution_ids(tmp_path / "store") == ["alpha", "beta"]
    monkeypatch.setenv("GENIES_DATA_DIR", str(tmp_path / "store"))
    assert list_distribution_ids() == ["alpha", "beta"]
    assert load_distribution("beta").train.distribution_id == "beta"


# ------------------------------------------------------------------------------------------ pairs


def test_all_pairs_counts_match_the_spec(use_data_dir):
    # §1.4: 250 examples × (k−1), and the listed exceptions
    expected = {"arc_easy": 750, "code_low_quality": 500, "crt_1": 250, "alpaca_high_quality": 750}
    expected |= {"personality_traits": 500, "illegal_dont_help": 492, "truthful_qa": 750}
    for dist_id, n in expected.items():
        pairs = load_distribution(dist_id).test.to_pairs("all")
        assert len(pairs) == n
        assert all(isinstance(p, Pair) and p.correct != p.incorrect for p in pairs)
    pairs = load_distribution("arc_easy").test.to_pairs("all")
    assert [p.id for p in pairs[:4]] == ["0/1", "0/2", "0/3", "1/1"]  # correct is first in arc_easy


def test_one_pair_per_example_is_seeded_and_ignores_the_global_rng(use_data_dir):
    split = load_distribution("arc_hard").train

    def draw(seed, global_seed):
        random.seed(global_seed)
        np.random.seed(global_seed)
        return [p.id for p in split.to_pairs("one_per_example", seed=seed)]

    a = draw(seed=3, global_seed=1)
    assert len(a) == 600 and len({i.split("/")[0] for i in a}) == 600
    assert draw(seed=3, global_seed=999) == a
    assert draw(seed=4, global_seed=1) != a
    # the choice for one example does not depend on which others are there (e.g. --limit)
    head = [p.id for p in split.head(10).to_pairs("one_per_example", seed=3)]
    assert head == a[:10]
    # every worse response gets picked for some example: it is a choice, not a constant
    assert len({i.split("/")[1] for i in a}) == 3
