"""`genies sweep`: the hps split (first N / next M of the train split), grid and optuna search on the
tiny model, trials cached in the store, the best config printed, bad grids refused in one line."""

from __future__ import annotations

import json

import pytest

from genies.cli import main
from genies.pipeline.hps import hps_splits, parse_grid


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from genies.data.synthetic import generate

    data = tmp_path_factory.mktemp("synth")
    generate(data, seed=0, train_size=30, test_size=4)
    return data


def test_parse_grid_and_hps_split(synth):
    from genies.data.loading import load_distribution

    assert parse_grid(["lr=1e-5,7e-5,2e-4", "r=8:64"]) == {"learning_rate": [1e-5, 7e-5, 2e-4], "r": (8, 64)}
    dist = load_distribution("synth_add_1digit", synth)
    fit, val = hps_splits(dist, 20, 6)
    train = dist.split("train").examples
    assert fit.examples == train[:20] and val.examples == train[20:26]


def _args(synth, tiny, store, *extra):
    return ["sweep", "-i", "lora_fine_tune", "-d", "synth_add_1digit", "--n-train", "8", "--n-val", "4",
            "--set", "num_train_steps=2", "--set", "batch_size=2", "--model", str(tiny), "--device", "cpu",
            "--data-dir", str(synth), "--store", str(store), *extra]  # fmt: skip


def test_grid_sweep_cached_and_best_printed(synth, tiny_model_dir, tmp_path, capsys):
    store = tmp_path / "store"
    args = _args(synth, tiny_model_dir, store, "--grid", "lr=1e-5,2e-3")
    assert main(args) == 0, capsys.readouterr().err
    out = capsys.readouterr()
    assert 'best: {"learning_rate": ' in out.out
    trials = list((store / "sweeps" / "trials").glob("*.json"))
    assert len(trials) == 2
    docs = [json.loads(p.read_text()) for p in trials]
    assert sorted(d["config"]["learning_rate"] for d in docs) == [1e-5, 2e-3]
    assert all(d["pairs"] > 0 and 0 <= d["metrics"]["accuracy"] <= 1 for d in docs)
    assert not (store / "sweeps" / "checkpoints").exists() or not any(
        (store / "sweeps" / "checkpoints").iterdir()
    )
    assert main(args) == 0
    assert capsys.readouterr().err.count("(cached)") == 2
    summary = json.loads(next((store / "sweeps").glob("*.json")).read_text())
    best = max(docs, key=lambda d: d["metrics"]["accuracy"])
    assert summary["best"]["objective"] == best["metrics"]["accuracy"]


def test_optuna_search(synth, tiny_model_dir, tmp_path, capsys):
    pytest.importorskip("optuna")
    store = tmp_path / "store"
    args = _args(
        synth, tiny_model_dir, store, "--grid", "lr=1e-5:1e-2", "--search", "optuna", "--trials", "2"
    )
    assert main(args) == 0, capsys.readouterr().err
    docs = [json.loads(p.read_text()) for p in (store / "sweeps" / "trials").glob("*.json")]
    assert 1 <= len(docs) <= 2 and all(1e-5 <= d["config"]["learning_rate"] <= 1e-2 for d in docs)


def test_bad_input_is_one_line(synth, tiny_model_dir, tmp_path, capsys):
    assert main(_args(synth, tiny_model_dir, tmp_path / "s", "--grid", "lr=1e-5:1e-3")) != 0
    assert "need --search optuna" in capsys.readouterr().err
    assert main(_args(synth, tiny_model_dir, tmp_path / "s", "--grid", "bogus=1,2")) != 0
    assert "no config key 'bogus'" in capsys.readouterr().err
