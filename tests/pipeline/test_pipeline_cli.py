"""`genies run` through the CLI: one-line errors before any work, Ctrl-C, and the tiny model end to end.

The end-to-end tests use the tiny random LLaMA and the official data, with a 2-shift suite of short
distributions (the tiny model's 512-token limit would drop most examples of the `test` suite) and
--limit 2, to stay quick.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from genies.cli import main

KILLER = Path(__file__).with_name("killer.py")

TINY_SUITE = [{"source": "crt_1", "target": "crt_2"}, {"source": "arc_easy", "target": "crt_2"}]
COUNTERS = re.compile(
    r"evaluations: (\d+) computed, (\d+) reused; states: (\d+) computed, (\d+) reused; "
    r"corrupt: (\d+); stale: (\d+); forward passes: (\d+); model loads: (\d+)"
)


def _counters(text: str) -> dict[str, int]:
    m = COUNTERS.search(" ".join(text.split()))
    assert m, f"no counters line in:\n{text}"
    names = (
        "eval_computed",
        "eval_reused",
        "state_computed",
        "state_reused",
        "corrupt",
        "stale",
        "forward",
        "loads",
    )
    return dict(zip(names, map(int, m.groups()), strict=True))


def _run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["run", *args])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    return lines[0]


# ------------------------------------------------------------------------------------------- bad input


@pytest.fixture
def toy_cli(toy):
    """CLI args for the toy data; the model name is never reached by the bad-input tests."""
    return toy, [
        "--suite",
        str(toy.suite),
        "--data-dir",
        str(toy.data_dir),
        "--store",
        str(toy.store),
        "--out",
        str(toy.out),
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-i", "zero_shoot"], "unknown intervention 'zero_shoot'; did you mean 'zero_shot'"),
        (
            ["-i", "test_length", "--baseline-intervention", "few_shots"],
            "unknown intervention 'few_shots'; did you mean 'few_shot'",
        ),
        (["-i", "test_length", "--ttc-intervention", "tset_bias"], "did you mean 'test_bias'"),
        (["-i", "test_length", "--ttc", "best-of:test_length,zero_shto"], "unknown intervention 'zero_shto'"),
        (
            ["-i", "test_length", "--set", "intervention.num_shots=2"],
            "intervention config: invalid config for intervention 'test_length': num_shots",
        ),
        (["-i", "test_length", "--set", "ttc.scale=big"], "ttc config: invalid config"),
        (["-i", "test_length", "--set", "scale=2"], "use ROLE.KEY=VALUE"),
        (["-i", "test_length", "--ttc", "best"], "--ttc must be 'single' or 'best-of"),
        (["-i", "test_length", "--limit", "0"], "--limit must be at least 1"),
    ],
)
def test_bad_names_and_configs_fail_before_any_work(toy_cli, capsys, args, message):
    toy, common = toy_cli
    code, out, err = _run(capsys, *args, *common, "--model", "smollm2-135m")
    assert code == 1
    assert message in _one_error_line(err)
    assert not toy.store.exists() and not toy.out.exists()


def test_unknown_suite_and_model_fail_before_any_work(toy, capsys):
    code, _, err = _run(
        capsys, "-i", "test_length", "--suite", "genis", "--store", str(toy.store), "--out", str(toy.out)
    )
    assert code == 1 and "unknown suite 'genis'; did you mean 'genies'" in _one_error_line(err)
    code, _, err = _run(
        capsys,
        "-i",
        "test_length",
        "--suite",
        str(toy.suite),
        "--data-dir",
        str(toy.data_dir),
        "--model",
        "smollm2-13m",
        "--store",
        str(toy.store),
        "--out",
        str(toy.out),
    )
    assert code == 1 and "unknown model 'smollm2-13m'; did you mean 'smollm2-135m'" in _one_error_line(err)
    assert not toy.store.exists() and not toy.out.exists()


def test_unknown_distribution_in_a_suite_file(toy, capsys, tmp_path):
    suite = tmp_path / "s.json"
    suite.write_text(json.dumps([{"source": "toy_a", "target": "toy_bb"}]))
    args = [
        "-i",
        "test_length",
        "--suite",
        str(suite),
        "--data-dir",
        str(toy.data_dir),
        "--store",
        str(toy.store),
    ]
    code, _, err = _run(capsys, *args, "--out", str(toy.out))
    assert code == 1 and "unknown distribution 'toy_bb'; did you mean 'toy_b'" in _one_error_line(err)
    assert not toy.store.exists() and not toy.out.exists()


def test_config_file_with_unknown_key_or_table(toy_cli, capsys, tmp_path):
    toy, common = toy_cli
    cfg = tmp_path / "c.toml"
    cfg.write_text("[intervention]\nscale = 2\n[baseline]\nbogus = 1\n")
    code, _, err = _run(capsys, "-i", "test_length", *common, "--config", str(cfg))
    assert code == 1 and "baseline config: invalid config" in _one_error_line(err) and "bogus" in err
    cfg.write_text("[trainer]\nlr = 1\n")
    code, _, err = _run(capsys, "-i", "test_length", *common, "--config", str(cfg))
    assert code == 1 and "unknown config table 'trainer'" in _one_error_line(err)
    assert not toy.store.exists()


def test_unwritable_out_is_detected_before_work(toy, capsys, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    args = [
        "-i",
        "test_length",
        "--suite",
        str(toy.suite),
        "--data-dir",
        str(toy.data_dir),
        "--store",
        str(toy.store),
    ]
    code, _, err = _run(capsys, *args, "--out", str(blocker / "out"))
    assert code == 1 and "output directory" in _one_error_line(err) and "not writable" in err
    assert not toy.store.exists()
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as a user who can write anywhere (the file-blocked case above still ran)")
        code, _, err = _run(capsys, *args, "--out", str(ro / "out"))
        assert code == 1 and "Permission denied" in _one_error_line(err)
    finally:
        ro.chmod(0o700)


# ------------------------------------------------------------------------------------------- tiny model


@pytest.fixture
def tiny_env(use_data_dir, tiny_model_dir, tmp_path):
    suite = tmp_path / "tiny_suite.json"
    suite.write_text(json.dumps(TINY_SUITE))
    return {"suite": suite, "model": tiny_model_dir, "root": tmp_path}


def _tiny_args(env, store: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--suite", str(env["suite"]), "--model", str(env["model"]), "--device", "cpu", "--limit", "2",
        "--store", str(store), "--out", str(out), "--no-progress", *extra,
    ]  # fmt: skip


def test_interrupt_exits_cleanly_with_resume_hint(toy, counter, tiny_model_dir, capsys):
    counter.interrupt_after = 2
    args = [
        "-i",
        "test_length",
        "--baseline-intervention",
        "test_length",
        "--suite",
        str(toy.suite),
        "--data-dir",
        str(toy.data_dir),
    ]
    code, _, err = _run(
        capsys, *args, "--model", str(tiny_model_dir), "--store", str(toy.store), "--out", str(toy.out)
    )
    assert code == 130
    assert "rerun the same command to resume" in err and "Traceback" not in err
    assert len(list(toy.store.rglob("evaluations/*/*.json"))) == 2
    counter.interrupt_after = None
    code, _, err = _run(
        capsys, *args, "--model", str(tiny_model_dir), "--store", str(toy.store), "--out", str(toy.out)
    )
    assert code == 0 and _counters(err)["eval_reused"] == 2


def test_second_identical_invocation_does_no_forward_passes(tiny_env, capsys):
    store, out = tiny_env["root"] / "store", tiny_env["root"] / "out"
    args = ["-i", "few_shot", "--set", "intervention.num_shots=1", *_tiny_args(tiny_env, store, out)]
    code, stdout, err = _run(capsys, *args)
    assert code == 0, err
    first = _counters(err)
    assert first["eval_computed"] > 0 and first["forward"] > 0 and first["loads"] == 1
    assert "arc_easy → crt_2" in stdout and "mean: " in stdout
    csv1 = pd.read_csv(out / "tiny_suite.csv")
    code, _, err = _run(capsys, *args)
    assert code == 0, err
    second = _counters(err)
    assert second["eval_computed"] == 0 and second["forward"] == 0 and second["loads"] == 0
    assert second["eval_reused"] == first["eval_computed"]
    pd.testing.assert_frame_equal(csv1, pd.read_csv(out / "tiny_suite.csv"))
    assert "loading the model" not in err


def _subprocess_run(args: list[str], kill_after: str) -> subprocess.CompletedProcess:
    """``genies run ARGS`` in a fresh process that is killed after its ``kill_after``-th store write."""
    return subprocess.run(
        [sys.executable, str(KILLER), kill_after, "run", *args],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=300,
    )


def _rows_json(path: Path) -> str:
    return json.dumps(json.loads(path.read_text())["rows"])


def test_killed_run_resumes_to_the_same_numbers_without_redoing_work(tiny_env, capsys):
    root = tiny_env["root"]
    iv = ["-i", "few_shot", "--set", "intervention.num_shots=1"]
    # Reference: one uninterrupted run in its own store.
    code, _, err = _run(capsys, *iv, *_tiny_args(tiny_env, root / "ref-store", root / "ref-out"))
    assert code == 0, err
    total = _counters(err)["eval_computed"]

    store, out = root / "store", root / "out"
    # Writes: zero_shot state, baseline eval, TTC state + eval, crt_1 state, then its evaluations:
    # the 6th write is the first evaluation of the crt_1-trained state.
    killed = _subprocess_run([*iv, *_tiny_args(tiny_env, store, out)], "6")
    assert killed.returncode == -9, killed.stderr
    done = sorted((store / "evaluations").rglob("*.json"))
    assert len(done) == 3
    mtimes = {p: p.stat().st_mtime_ns for p in done}
    assert not (out / "tiny_suite.csv").exists()

    # Restart (in this process: a fresh store object and runner, as after a reboot).
    code, _, err = _run(capsys, *iv, *_tiny_args(tiny_env, store, out))
    assert code == 0, err
    c = _counters(err)
    assert c["eval_reused"] == 3 and c["eval_computed"] == total - 3 and c["corrupt"] == 0
    assert {p: p.stat().st_mtime_ns for p in done} == mtimes
    pd.testing.assert_frame_equal(
        pd.read_csv(root / "ref-out" / "tiny_suite.csv"), pd.read_csv(out / "tiny_suite.csv")
    )
    assert _rows_json(root / "ref-out" / "tiny_suite.json") == _rows_json(out / "tiny_suite.json")


def test_sigint_mid_run_saves_work_and_says_how_to_resume(tiny_env, capsys):
    root = tiny_env["root"]
    args = ["-i", "zero_shot", *_tiny_args(tiny_env, root / "store", root / "out")]
    proc = _subprocess_run(args, "2:INT")
    assert proc.returncode == 130, proc.stderr
    assert "rerun the same command to resume" in proc.stderr and "Traceback" not in proc.stderr
    assert len(list((root / "store" / "evaluations").rglob("*.json"))) == 1  # write 1 was the state
    code, _, err = _run(capsys, *args)
    assert code == 0 and _counters(err)["eval_reused"] == 1
