"""Sweeps under failure: recorded failures, --retry-failed, status, kill-and-rerun, racing processes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from pipeline_helpers import BiasIntervention
from test_scale_sweep import write_sweep

from genies.cli import main
from genies.errors import GeniesError
from genies.interventions.registry import register_intervention
from genies.pipeline.store import ResultStore

HERE = Path(__file__).resolve().parent
KILLER = HERE / "killer.py"
CLI = ["-c", "import sys; from genies.cli import main; sys.exit(main(sys.argv[1:]))"]
FLAKY_ENV = "GENIES_TEST_FLAKY"
COUNTERS = re.compile(r"evaluations: (\d+) computed, (\d+) reused; states: (\d+) computed, (\d+) reused")


@register_intervention("test_scale_flaky")
class FlakyIntervention(BiasIntervention):
    """test_bias that fails to fit while $GENIES_TEST_FLAKY is set (a bug a user then fixes)."""

    def fit(self, ctx, train, config):
        if os.environ.get(FLAKY_ENV):
            ctx.log("flaky: about to fail")
            raise GeniesError("flaky fit failed on purpose")
        state = super().fit(ctx, train, config)
        state.meta["intervention"] = self.name
        return state


def _counters(err: str) -> dict[str, int]:
    m = COUNTERS.search(" ".join(err.split()))
    assert m, err
    return dict(zip(("eval_c", "eval_r", "state_c", "state_r"), map(int, m.groups()), strict=True))


def _toy_sweep(toy, tiny_model_dir, tmp_path) -> Path:
    cfg = tmp_path / "toy.toml"
    cfg.write_text(
        "[sweep]\n"
        f"models = [{json.dumps(str(tiny_model_dir))}]\n"
        'interventions = ["test_bias", "test_scale_flaky"]\n'
        f"suites = [{json.dumps(str(toy.suite))}]\n"
        f"data_dir = {json.dumps(str(toy.data_dir))}\n"
        'baseline_intervention = "test_length"\ndevice = "cpu"\nout = "out"\nstore = "store"\n'
    )
    return cfg


def test_a_failure_is_recorded_the_rest_goes_on_and_retry_reruns_only_it(
    toy, tiny_model_dir, tmp_path, capsys, monkeypatch
):
    cfg = _toy_sweep(toy, tiny_model_dir, tmp_path)
    monkeypatch.setenv(FLAKY_ENV, "1")
    assert main(["sweep-run", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "flaky fit failed on purpose" in err
    tiny = tiny_model_dir.name
    assert (tmp_path / "out" / tiny / "test_bias" / "toy_suite.csv").exists()  # the rest of the sweep ran
    assert not (tmp_path / "out" / tiny / "test_scale_flaky").exists()
    failures = list((tmp_path / "out" / ".sweep" / "failures").glob("*.json"))
    assert failures
    doc = json.loads(failures[0].read_text())
    assert (
        doc["kind"] == "state" and "flaky fit failed" in doc["error"] and "flaky: about to fail" in doc["log"]
    )

    assert main(["sweep-status", str(cfg)]) == 0
    out = capsys.readouterr().out
    state_row = next(ln for ln in out.splitlines() if "state" in ln and "│" in ln)
    cells = [c.strip() for c in state_row.split("│") if c.strip()]
    assert cells[0] == "state" and int(cells[3]) == len(failures), out  # kind, done, running, failed
    assert "flaky fit failed on purpose" in out

    # a plain rerun does not retry what failed (and computes nothing else: the rest is done)
    assert main(["sweep-run", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert (
        "skipped (failed before)" in err and _counters(err)["eval_c"] == 0 and _counters(err)["state_c"] == 0
    )

    monkeypatch.delenv(FLAKY_ENV)  # the "fix"
    assert main(["sweep-run", str(cfg), "--retry-failed"]) == 0
    err = capsys.readouterr().err
    c = _counters(err)
    assert c["state_c"] == len(failures)  # only the failed fits …
    n_flaky = sum(1 for f in (tmp_path / "store" / "evaluations").rglob("*.json")
                  if json.loads(f.read_text())["intervention"] == "test_scale_flaky")  # fmt: skip
    assert c["eval_c"] == n_flaky  # … and the evaluations that waited on them
    assert (tmp_path / "out" / tiny / "test_scale_flaky" / "toy_suite.csv").exists()
    assert not list((tmp_path / "out" / ".sweep" / "failures").glob("*.json"))


def _sweep_subprocess(args: list[str], data_dir: Path, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "GENIES_DATA_DIR": str(data_dir), "PYTHONPATH": str(HERE)}
    return subprocess.Popen(
        [sys.executable, *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _evaluation_files(store: Path) -> set[str]:
    return (
        {f.stem for f in (store / "evaluations").rglob("*.json")}
        if (store / "evaluations").exists()
        else set()
    )


def test_killed_midway_the_rerun_finishes_only_the_missing_nodes(data_dir, tiny_model_dir, tmp_path):
    cfg = write_sweep(tmp_path, str(tiny_model_dir), ["zero_shot", "few_shot"], name="kill")
    p = _sweep_subprocess([str(KILLER), "3", "sweep-run", str(cfg)], data_dir, tmp_path)
    _, err = p.communicate(timeout=600)
    assert p.returncode == -9, err
    store = tmp_path / "kill-store"
    before = _evaluation_files(store)
    n_states = len([d for d in (store / "states").iterdir() if not d.name.startswith(".")])
    assert before or n_states  # something was finished before the kill …
    p = _sweep_subprocess([*CLI, "sweep-run", str(cfg)], data_dir, tmp_path)
    _, err = p.communicate(timeout=600)
    assert p.returncode == 0, err
    c = _counters(err)
    after = _evaluation_files(store)
    assert c["eval_c"] == len(after - before) and after > before  # … and only the missing ones ran now
    assert c["state_c"] + n_states == len(list((store / "states").iterdir()))
    ResultStore(store)  # consistent: every record verifies
    for key in after:
        assert ResultStore(store).load_evaluation(key) is not None


def test_racing_sweeps_compute_each_key_once(data_dir, tiny_model_dir, tmp_path):
    cfg = write_sweep(tmp_path, str(tiny_model_dir), ["zero_shot", "few_shot"], name="race")
    procs = [_sweep_subprocess([*CLI, "sweep-run", str(cfg)], data_dir, tmp_path) for _ in range(3)]
    errs = [p.communicate(timeout=900)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), errs
    counters = [_counters(e) for e in errs]
    store = tmp_path / "race-store"
    files = _evaluation_files(store)
    assert sum(c["eval_c"] for c in counters) == len(files)  # each evaluation computed by one process
    n_states = len([d for d in (store / "states").iterdir() if not d.name.startswith(".")])
    assert sum(c["state_c"] for c in counters) == n_states
    s = ResultStore(store)
    assert all(s.load_evaluation(k) is not None for k in files) and s.counters.corrupt_entries == 0
    stray = [f for f in store.rglob("*") if f.is_file() and (f.name.startswith(".") or f.suffix == ".tmp")]
    assert not stray, stray  # no torn or temporary files left behind
