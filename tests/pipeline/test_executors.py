"""Executors: --workers N equals --workers 1, dying workers, two processes on one key, bad flags."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pipeline_helpers import DIE_ALWAYS_ENV, DIE_DIR_ENV, FIT_LOG_ENV

from genies.cli import main
from genies.pipeline.store import ResultStore
from genies.pipeline.suite import prepare_run, run_suite

HERE = Path(__file__).resolve().parent
TINY_SUITE = [{"source": "crt_1", "target": "crt_2"}, {"source": "arc_easy", "target": "crt_2"}]


def _json_without_time(path: Path) -> dict:
    doc = json.loads(path.read_text())
    doc.pop("created")
    return doc


def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def _store_is_consistent(root: Path) -> None:
    store = ResultStore(root)
    for f in (root / "evaluations").rglob("*"):
        if f.is_file():
            assert f.suffix == ".json" and not f.name.startswith("."), f"stray file {f}"
            assert store.load_evaluation(f.stem) is not None, f"bad record {f}"
    for d in (root / "states").iterdir() if (root / "states").exists() else []:
        assert not d.name.startswith("."), f"leftover temp dir {d}"
        assert store.load_state(d.name) is not None, f"bad state {d}"
    assert store.counters.corrupt_entries == 0


@pytest.mark.parametrize("intervention", ["zero_shot", "few_shot"])
def test_two_workers_give_the_outputs_of_one(use_data_dir, tiny_model_dir, tmp_path, capsys, intervention):
    """`genies run --workers 2` writes exactly the CSV and JSON of `--workers 1` (the tiny model, CI)."""
    suite = tmp_path / "suite.json"
    suite.write_text(json.dumps(TINY_SUITE))
    outs = {}
    for w in (1, 2):
        args = ["run", "-i", intervention, "--set", "intervention.scoring=mean", "--suite", str(suite),
                "--model", str(tiny_model_dir), "--device", "cpu", "--limit", "3", "--no-progress",
                "--store", str(tmp_path / f"store{w}"), "--out", str(tmp_path / f"out{w}"), "--workers", str(w)]  # fmt: skip
        assert main(args) == 0, capsys.readouterr().err
        err = " ".join(capsys.readouterr().err.split())
        assert " computed, 0 reused; states:" in err and "evaluations: 0 computed" not in err, err
        assert "model loads: 0" not in err  # worker processes report their model loads too
        outs[w] = tmp_path / f"out{w}"
    assert (outs[1] / "suite.csv").read_bytes() == (outs[2] / "suite.csv").read_bytes()
    assert _json_without_time(outs[1] / "suite.json") == _json_without_time(outs[2] / "suite.json")
    _store_is_consistent(tmp_path / "store2")


def _toy_args(toy, tiny_model_dir, **kw):
    base = {"model": str(tiny_model_dir), "device": "cpu"}
    return toy.options(**{**base, **kw})


def test_a_worker_that_dies_mid_node_is_replaced_and_the_node_retried(
    toy, tiny_model_dir, tmp_path, monkeypatch
):
    die = tmp_path / "die"
    die.mkdir()
    monkeypatch.setenv(DIE_DIR_ENV, str(die))
    opts = _toy_args(toy, tiny_model_dir, intervention="test_die_once", baseline_intervention="test_die_once")
    outcome = run_suite(dataclasses.replace(opts, workers=2))
    n = len(outcome.prepared.plan.evaluations)
    assert len(list(die.iterdir())) == n  # every evaluation killed its worker once, then succeeded
    assert outcome.counters.evaluations_computed == n
    _store_is_consistent(toy.store)
    monkeypatch.delenv(DIE_DIR_ENV)
    clean = run_suite(dataclasses.replace(opts, store=tmp_path / "clean", out=tmp_path / "clean-out"))
    assert outcome.csv_path.read_bytes() == clean.csv_path.read_bytes()


def test_a_node_that_always_kills_its_worker_is_reported(toy, tiny_model_dir, tmp_path, monkeypatch, capsys):
    die = tmp_path / "die"
    die.mkdir()
    monkeypatch.setenv(DIE_DIR_ENV, str(die))
    monkeypatch.setenv(DIE_ALWAYS_ENV, "1")
    args = ["run", "-i", "test_die_once", "--baseline-intervention", "test_die_once", "--suite", str(toy.suite),
            "--data-dir", str(toy.data_dir), "--model", str(tiny_model_dir), "--device", "cpu",
            "--store", str(toy.store), "--out", str(toy.out), "--no-progress", "--workers", "2"]  # fmt: skip
    assert main(args) == 1
    err = capsys.readouterr().err
    errors = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in err, err
    assert "a worker process died while running it" in errors[0] and "test_die_once" in errors[0]
    _store_is_consistent(toy.store)
    assert not toy.out.exists()  # a failed run leaves no empty --out behind


def _state_node_file(toy, tiny_model_dir, tmp_path) -> Path:
    prepared = prepare_run(_toy_args(toy, tiny_model_dir, intervention="test_sleepy"))
    node = next(n for n in prepared.plan.graph.of_kind("state") if n.inputs["intervention"] == "test_sleepy")
    f = tmp_path / "state.json"
    f.write_text(node.dumps())
    return f


def test_two_processes_fitting_the_same_state_fit_it_once(toy, tiny_model_dir, tmp_path):
    node_file = _state_node_file(toy, tiny_model_dir, tmp_path)
    log = tmp_path / "fits.log"
    env = {
        **os.environ,
        FIT_LOG_ENV: str(log),
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    code = "import sys; from genies.cli import main; sys.exit(main(sys.argv[1:]))"
    cmd = [
        sys.executable,
        "-c",
        code,
        "node",
        str(node_file),
        "--store",
        str(toy.store),
        "--data-dir",
        str(toy.data_dir),
    ]
    procs = [
        subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [r[1] for r in results]
    statuses = sorted(json.loads(out.strip().splitlines()[-1])["status"] for out, _ in results)
    assert statuses == ["computed", "reused"]
    assert len(log.read_text().splitlines()) == 1  # fitted once, by one of the two processes
    _store_is_consistent(toy.store)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--workers", "0"], "--workers must be at least 1 (got 0)"),
        (["--workers", "-1"], "--workers must be at least 1 (got -1)"),
        (["--executor", "lokal"], "unknown executor 'lokal'; did you mean 'local'"),
    ],
)
def test_bad_executor_flags_fail_before_any_work(toy, capsys, flags, message):
    args = ["run", "-i", "test_length", "--suite", str(toy.suite), "--data-dir", str(toy.data_dir),
            "--store", str(toy.store), "--out", str(toy.out), *flags]  # fmt: skip
    assert main(args) == 1
    assert message in _one_error_line(capsys.readouterr().err)
    assert not toy.store.exists() and not toy.out.exists()


def test_pool_refuses_in_process_models(toy):
    from genies.errors import ConfigError

    with pytest.raises(ConfigError, match="worker processes can load by name"):
        toy.run(workers=2)


def test_the_local_executor_runs_the_graph_in_plan_order(toy, counter, monkeypatch):
    """Baseline, target-tuned references, then source by source, as upstream did."""
    from genies.pipeline import executors

    ran: list[str] = []
    real = executors.resolve

    def spy(node, env, **kw):
        ran.append(node.key)
        return real(node, env, **kw)

    monkeypatch.setattr(executors, "resolve", spy)
    outcome = toy.run(intervention="test_bias")
    graph = outcome.prepared.plan.graph
    assert ran == [k for k in graph.nodes if graph[k].kind in ("state", "evaluation")]
