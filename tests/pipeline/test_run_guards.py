"""`genies run` guards (hardening items that live in the pipeline): outputs never land inside a store,
a failed run leaves nothing behind, config values have strict types, a config file must be UTF-8."""

from __future__ import annotations

import os
import shutil

import pytest

from genies.cli import main


def _error(capsys) -> str:
    err = capsys.readouterr().err
    errors = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


def _args(toy, *extra: str) -> list[str]:
    return ["run", "-i", "test_length", "--baseline-intervention", "test_length", "--suite", str(toy.suite),
            "--data-dir", str(toy.data_dir), "--store", str(toy.store), *extra]  # fmt: skip


def _tree(root) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    ("where", "what"),
    [
        (lambda toy: toy.data_dir, "the data store"),
        (lambda toy: toy.data_dir / "distributions" / "toy_b", "the data store"),
        (lambda toy: toy.store / "results", "the result store"),
        (lambda toy: toy.store, "the result store"),
        (lambda toy: toy.root / "models" / "out", "the models folder"),
    ],
    ids=["data-dir", "a-distribution", "inside-store", "store", "models-dir"],
)
def test_out_inside_a_store_is_refused(toy, capsys, monkeypatch, where, what):
    monkeypatch.setenv("GENIES_MODELS_DIR", str(toy.root / "models"))
    before = _tree(toy.data_dir)
    out = where(toy)
    assert main([*_args(toy), "--out", str(out)]) == 1
    line = _error(capsys)
    assert f"--out {out} is inside {what}" in line
    assert _tree(toy.data_dir) == before  # test.json of toy_b untouched
    assert not (toy.store / "evaluations").exists() and not (toy.root / "models").exists()


def test_a_symlink_into_the_data_store_is_refused_too(toy, capsys, tmp_path):
    link = tmp_path / "innocent"
    link.symlink_to(toy.data_dir / "distributions")
    assert main([*_args(toy), "--out", str(link / "toy_b")]) == 1
    assert "is inside the data store" in _error(capsys)


def test_a_failed_run_leaves_no_empty_out_and_no_new_state_entries(toy, capsys, tiny_model_dir, tmp_path):
    broken = tmp_path / "broken-model"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "model.safetensors").write_bytes(b"\x00" * 64 + b"not a safetensors file")
    out = tmp_path / "new" / "out"
    code = main([*_args(toy, "--model", str(broken), "--device", "cpu", "--no-progress"), "--out", str(out)])
    assert code == 1
    assert "cannot load model" in _error(capsys)
    assert not (tmp_path / "new").exists()  # every folder the run created is gone again
    states = toy.store / "states"
    assert not states.exists() or not any(states.iterdir())
    assert not list((toy.store / "evaluations").rglob("*.json"))


def test_a_failed_run_keeps_an_out_dir_that_existed(toy, capsys, tmp_path, tiny_model_dir):
    broken = tmp_path / "broken-model"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "model.safetensors").write_bytes(b"garbage")
    toy.out.mkdir(parents=True)
    assert main([*_args(toy, "--model", str(broken), "--device", "cpu"), "--out", str(toy.out)]) == 1
    _error(capsys)
    assert toy.out.is_dir()


@pytest.mark.parametrize("value", ["true", "2.0", '"2"'])
def test_set_values_of_the_wrong_type_are_refused(toy, capsys, value):
    args = ["run", "-i", "few_shot", "--suite", str(toy.suite), "--data-dir", str(toy.data_dir),
            "--store", str(toy.store), "--out", str(toy.out), "--set", f"intervention.num_shots={value}"]  # fmt: skip
    assert main(args) == 1
    assert "num_shots: Input should be a valid integer" in _error(capsys)
    assert not toy.store.exists() and not toy.out.exists()


def test_a_config_file_that_is_not_utf8_is_a_one_line_error(toy, capsys, tmp_path):
    cfg = tmp_path / "bin.toml"
    cfg.write_bytes(b"\xff\xfe")
    assert main([*_args(toy), "--out", str(toy.out), "--config", str(cfg)]) == 1
    assert f"config file {cfg} is not UTF-8 text" in _error(capsys)
    assert not toy.store.exists() and not toy.out.exists()


def test_out_check_uses_the_environment_defaults(toy, capsys, monkeypatch):
    monkeypatch.setenv("GENIES_STORE_DIR", str(toy.store))
    args = ["run", "-i", "test_length", "--suite", str(toy.suite), "--data-dir", str(toy.data_dir)]
    assert main([*args, "--out", os.path.join(str(toy.store), "x")]) == 1
    assert "is inside the result store" in _error(capsys)
