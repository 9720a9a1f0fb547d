"""`genies show-state` on a store filled by tiny-model runs of representation methods."""

from __future__ import annotations

import json

import pytest
import torch

from genies.cli import main
from genies.data.synthetic import generate
from genies.pipeline.graph import node_key
from genies.pipeline.store import ResultStore
from genies.pipeline.suite import RunOptions, run_suite

SHIFT = {"source": "synth_facts", "target": "synth_facts_fiction", "category": "context"}


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("show-state")
    generate(root / "data", seed=0, train_size=12, test_size=8)
    suite = root / "suite.json"
    suite.write_text(json.dumps([SHIFT]), encoding="utf-8")
    outcomes = {}
    for name in ("mms", "lat_pca"):
        outcomes[name] = run_suite(
            RunOptions(
                intervention=name,
                suite=str(suite),
                model=str(tiny_model_dir),
                limit=8,
                store=str(root / "store"),
                data_dir=str(root / "data"),
                out=str(root / "out" / name),
                device="cpu",
                progress=False,
            )
        )
    return {"root": root, "store": root / "store", "outcomes": outcomes}


def _cli(capsys, *argv):
    capsys.readouterr()
    code = main(list(argv))
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def _state_key(world, name):
    """The state key behind the run's source-ID evaluation of ``name``."""
    oc = world["outcomes"][name]
    return oc.prepared.plan.state_key(oc.result.rows[0].evaluation_keys["source_id"])


def test_list_shows_every_state(world, capsys):
    code, out, _ = _cli(capsys, "show-state", "--list", "--store", str(world["store"]), "--json")
    assert code == 0
    rows = json.loads(out)
    by = {}
    for r in rows:
        by.setdefault(r["intervention"], []).append(r)
    assert {"mms", "lat_pca", "zero_shot"} <= set(by)
    mms_key = _state_key(world, "mms")
    assert mms_key in {r["key"] for r in by["mms"]}
    assert all(r["complete"] for r in rows)
    code, out, _ = _cli(capsys, "show-state", "--list", "-i", "mms", "--store", str(world["store"]))
    assert code == 0 and mms_key in out and "lat_pca" not in out


def test_mms_state_shows_heads_probe_accuracies_and_calibrator(world, capsys):
    key = _state_key(world, "mms")
    code, out, err = _cli(
        capsys, "show-state", key[:10], "--store", str(world["store"]), "--json", "--top", "5"
    )
    assert code == 0, err
    s = json.loads(out)
    assert s["key"] == key and s["intervention"] == "mms"
    assert s["train"]["distribution"] == "synth_facts" and s["activation_dtype"] == "float32"
    stored = ResultStore(world["store"]).load_state(key).state
    acc = stored.tensors["probe_accuracy"].tolist()
    ua = s["unit_accuracy"]
    assert ua["units"] == "attention heads" and ua["n"] == len(acc) and len(ua["top"]) == 5
    tops = [e["accuracy"] for e in ua["top"]]
    assert tops == sorted(tops, reverse=True) and tops[0] == pytest.approx(max(acc))
    assert s["selected"] == stored.meta["selected"] and "coef" in s["calibrator"]
    shapes = {t["name"]: t["shape"] for t in s["tensors"]}
    assert shapes["directions"][0] == len(stored.meta["selected"])
    # the table form says the same
    code, out, _ = _cli(capsys, "show-state", key[:10], "--store", str(world["store"]), "--top", "3")
    assert code == 0
    assert "chosen units" in out and "calibrator: coef" in out and "top 3 of" in out
    first = stored.meta["selected"][0]["unit"]
    assert f"layer {first[0]} head {first[1]}" in out


def test_lat_pca_state_and_evaluation_key(world, capsys):
    key = _state_key(world, "lat_pca")
    ev = world["outcomes"]["lat_pca"].result.rows[0].evaluation_keys["source_id"]
    code, out, err = _cli(capsys, "show-state", ev, "--store", str(world["store"]), "--json")
    assert code == 0, err
    s = json.loads(out)
    assert s["key"] == key and s["via_evaluation"] == ev and s["unit_accuracy"]["units"] == "layers"
    assert s["unit_accuracy"]["top"][0]["unit"] == f"layer {s['meta']['layer']}"  # the chosen (best) layer
    stored = ResultStore(world["store"]).load_state(key).state
    assert s["unit_accuracy"]["max"] == pytest.approx(max(stored.meta["layer_accuracy"]))


def test_adapter_state_shows_files_and_train_log_tail(world, capsys, tmp_path):
    from genies.interventions.lora_fine_tune import RewardState

    store = ResultStore(tmp_path / "store")
    store.check_writable()
    inputs = {"kind": "state", "intervention": "lora_fine_tune", "config": {"lr": 1e-4}, "model": {"name": "m"},
              "train": None, "seed": 0, "scoring_version": 1}  # fmt: skip
    log = [{"step": i, "loss": 1.0 / (i + 1)} for i in range(8)]
    state = RewardState(
        meta={"intervention": "lora_fine_tune", "adapter": "lora", "train_log": log},
        tensors={"lora_A": torch.zeros(4, 2)},
    )
    key = node_key(inputs)
    store.save_state(key, state, inputs, generation=0, extra={"fit_s": 1.5, "label": "lora"})
    code, out, err = _cli(capsys, "show-state", key, "--store", str(store.root), "--log-tail", "3")
    assert code == 0, err
    assert "train_log.jsonl" in out and "tensors.safetensors" in out and "lora_A" in out
    assert "training log: last 3 of 8 entries" in out and "0.125" in out


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("nothere",), "no state with key 'nothere'"),
        (("",), "the state key is empty"),
        ((), "give a state KEY"),
    ],
)
def test_unknown_key_is_one_line(world, capsys, args, says):
    code, out, err = _cli(capsys, "show-state", *args, "--store", str(world["store"]))
    assert code == 1 and says in " ".join(err.split()) and "Traceback" not in out + err
    assert len(err.strip().splitlines()) == 1


def test_ambiguous_prefix_and_missing_store(capsys, tmp_path):
    store = ResultStore(tmp_path / "store")
    for k in ("ab" + "0" * 30, "ab" + "1" * 30):
        (store.states_dir / k).mkdir(parents=True)
    code, _, err = _cli(capsys, "show-state", "ab", "--store", str(store.root))
    assert code == 1 and "'ab' is ambiguous: 2 states match" in err and len(err.strip().splitlines()) == 1
    code, _, err = _cli(capsys, "show-state", "ab0", "--store", str(store.root))
    assert code == 1 and "is damaged (missing or unreadable _COMPLETE)" in err
    code, _, err = _cli(capsys, "show-state", "--list", "--store", str(tmp_path / "none"))
    assert code == 1 and "does not exist" in err


def test_corrupt_state_file_is_one_line(world, capsys, tmp_path):
    import shutil

    store = tmp_path / "store"
    shutil.copytree(world["store"] / "states", store / "states")
    key = _state_key(world, "mms")
    tensors = store / "states" / key / "tensors.safetensors"
    tensors.write_bytes(tensors.read_bytes()[:-7])
    code, out, err = _cli(capsys, "show-state", key, "--store", str(store))
    assert code == 1 and "is damaged" in err and "tensors.safetensors" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in out + err
