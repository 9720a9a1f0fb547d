"""`genies sweep-run` on the tiny model: identical tables through every executor, dedup, dry run, status.

The intervention list is every registered one except interactive ones and upstream-dir plug-ins, so a
method another stream adds is swept here too (each with the fast settings it documents for the tiny
model: its defaults, plus ``FAST`` below where a method needs them).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from genies.cli import main
from genies.interventions.registry import list_interventions

TINY_SUITE = [{"source": "crt_1", "target": "crt_2"}, {"source": "arc_easy", "target": "crt_2"}]
EXCLUDED_PREFIXES = ("test_", "human", "upstream")  # test doubles, interactive, upstream-dir plug-ins
SWEPT = sorted(n for n in list_interventions() if not n.startswith(EXCLUDED_PREFIXES))
FAST: dict[str, dict] = {
    "zero_shot": {"scoring": "mean"},
    "few_shot": {"scoring": "mean"},
    "lora_fine_tune": {"num_train_steps": 2, "batch_size": 2},
    "prompt_tuning": {"num_train_steps": 2, "batch_size": 2},
    "full_fine_tune": {"num_train_steps": 2, "batch_size": 2},
}


def _json_without_time(path: Path) -> dict:
    doc = json.loads(path.read_text())
    doc.pop("created")
    return doc


def write_sweep(tmp: Path, model: str, interventions, *, name: str = "sweep", limit: int = 3, extra: str = "",
                suite: str | None = None) -> Path:  # fmt: skip
    if suite is None:
        (tmp / "suite.json").write_text(json.dumps(TINY_SUITE))
        suite = str(tmp / "suite.json")
    lines = [
        "[sweep]",
        f"models = [{json.dumps(model)}]",
        f"interventions = {json.dumps(list(interventions))}",
        f"suites = [{json.dumps(suite)}]",
        f"limit = {limit}",
        'device = "cpu"',
        f'out = "{name}-out"',
        f'store = "{name}-store"',
    ]
    for iv in interventions:
        if FAST.get(iv):
            lines.append(f"[config.{iv}.intervention]")
            lines += [f"{key} = {json.dumps(value)}" for key, value in FAST[iv].items()]
    path = tmp / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


def _sweep(capsys, config: Path, *flags: str) -> str:
    rc = main(["sweep-run", str(config), *flags])
    err = capsys.readouterr().err
    assert rc == 0, err
    return " ".join(err.split())


EXECUTOR_FLAGS = {
    "local": ["--executor", "local"],
    "pool": ["--executor", "local", "--workers", "2"],
    "submitit": ["--executor", "submitit", "--cluster", "local", "--workers", "2"],
}


@pytest.fixture(scope="module")
def swept(data_dir, tiny_model_dir, tmp_path_factory):
    """One sweep of every swept intervention per executor (a sweep shares its baselines: one run each)."""
    tmp = tmp_path_factory.mktemp("sweeps")
    outs, logs = {}, {}
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp)
        mp.setenv("GENIES_DATA_DIR", str(data_dir))
        mp.setenv("GENIES_CACHE_DIR", str(tmp / "cache"))
        for name, flags in EXECUTOR_FLAGS.items():
            config = write_sweep(tmp, str(tiny_model_dir), SWEPT, name=name)
            import contextlib
            import io

            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                rc = main(["sweep-run", str(config), *flags])
            logs[name] = " ".join(err.getvalue().split())
            assert rc == 0, logs[name]
            outs[name] = tmp / f"{name}-out" / tiny_model_dir.name
    return tmp, outs, logs


@pytest.mark.parametrize("intervention", SWEPT)
def test_sweep_tables_are_identical_through_every_executor(swept, intervention):
    _, outs, logs = swept
    for name, log in logs.items():
        assert "evaluations: 0 computed" not in log and " 0 failed" in log, (name, log)
    ref = outs["local"] / intervention
    assert (ref / "suite.csv").exists()
    for name in ("pool", "submitit"):
        assert (ref / "suite.csv").read_bytes() == (outs[name] / intervention / "suite.csv").read_bytes(), (
            name
        )
        assert _json_without_time(ref / "suite.json") == _json_without_time(
            outs[name] / intervention / "suite.json"
        ), name


@pytest.mark.parametrize("intervention", SWEPT)
def test_a_sweeps_table_is_genies_runs_table(
    swept, use_data_dir, tiny_model_dir, capsys, monkeypatch, intervention
):
    tmp, outs, _ = swept
    monkeypatch.chdir(tmp)
    args = ["run", "-i", intervention, "--suite", str(tmp / "suite.json"), "--model", str(tiny_model_dir),
            "--device", "cpu", "--limit", "3", "--no-progress", "--store", str(tmp / "local-store"),
            "--out", str(tmp / f"run-{intervention}")]  # fmt: skip
    for key, value in FAST.get(intervention, {}).items():
        args += ["--set", f"intervention.{key}={json.dumps(value)}"]
    assert main(args) == 0, capsys.readouterr().err
    err = " ".join(capsys.readouterr().err.split())
    assert "evaluations: 0 computed" in err, err  # everything came from the sweep's store
    csv = (tmp / f"run-{intervention}" / "suite.csv").read_bytes()
    assert csv == (outs["local"] / intervention / "suite.csv").read_bytes()


def test_a_sweep_shares_nodes_and_dry_run_counts_them(
    use_data_dir, tiny_model_dir, tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    config = write_sweep(tmp_path, str(tiny_model_dir), ["zero_shot", "few_shot"], name="dedup",
                         extra="[resources.evaluation]\ngpus = 2\nest_seconds = 3600\nest_seconds_per_unit = 0\n")  # fmt: skip
    assert main(["sweep-run", str(config), "--dry-run"]) == 0
    cap = capsys.readouterr()
    text = " ".join(cap.out.split())
    first = " ".join(cap.err.split())
    assert "2 runs," in first and "before deduplication" in first
    n_nodes = int(first.split(" runs, ")[1].split(" nodes")[0])
    before = int(first.split("(")[1].split(" before")[0])
    assert n_nodes < before  # zero_shot's evaluations are few_shot's baselines: planned once
    assert "evaluation" in text and "estimated GPU-hours" in text
    gpu_h = float(text.split("estimated GPU-hours: ")[1].split()[0])
    from genies.pipeline.sweep import load_sweep_config, prepare_sweep

    sweep = prepare_sweep(load_sweep_config(config))
    n_eval = len(sweep.graph.of_kind("evaluation"))
    assert gpu_h == pytest.approx(2 * n_eval, abs=0.01)  # 2 GPUs × 1 h per evaluation to compute
    assert not (tmp_path / "dedup-out").exists() or not any((tmp_path / "dedup-out").rglob("*.csv"))
    err = _sweep(capsys, config)
    computed = int(err.split("evaluations: ")[1].split(" computed")[0])
    assert computed == n_eval  # each shared evaluation computed once
    assert main(["sweep-status", str(config)]) == 0
    status = " ".join(capsys.readouterr().out.split())
    assert "to compute: 0 nodes" in status, status
    err = _sweep(capsys, config)
    assert "evaluations: 0 computed" in err and "model loads: 0" in err  # a finished sweep loads nothing


def test_bad_sweep_configs_are_one_line_errors(tmp_path, capsys):
    cases = {
        "unknown.toml": "[sweep]\ninterventions = ['zero_shot']\nmodels = ['x']\nbogus = 1\n",
        "kind.toml": "[sweep]\ninterventions = ['zero_shot']\nmodels = ['x']\n[resources.gpu]\ngpus = 1\n",
        "nomodel.toml": "[sweep]\ninterventions = ['zero_shot']\n",
        "badiv.toml": "[sweep]\ninterventions = ['nope']\nmodels = ['x']\n",
    }
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        assert main(["sweep-run", str(tmp_path / name), "--dry-run"]) != 0
        err = capsys.readouterr().err
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, (name, err)
    assert main(["sweep-run", str(tmp_path / "missing.toml")]) != 0
    assert "error: " in capsys.readouterr().err


@pytest.mark.skipif(
    not __import__("importlib").util.find_spec("ray"),
    reason="Ray is not installed (pip install 'genies[ray]')",
)
def test_ray_executor_gives_the_local_tables(use_data_dir, tiny_model_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RAY_DISABLE_USAGE_STATS", "1")
    os.environ.pop("RAY_ADDRESS", None)
    outs = {}
    for name, flags in {"local": [], "ray": ["--executor", "ray", "--workers", "2"]}.items():
        config = write_sweep(tmp_path, str(tiny_model_dir), ["zero_shot", "few_shot"], name=name)
        err = _sweep(capsys, config, *flags)
        assert "0 failed" in err, err
        outs[name] = tmp_path / f"{name}-out" / tiny_model_dir.name
    for iv in ("zero_shot", "few_shot"):
        assert (outs["local"] / iv / "suite.csv").read_bytes() == (
            outs["ray"] / iv / "suite.csv"
        ).read_bytes()


def test_the_paper_llama_example_parses_with_per_model_layout():
    from genies.pipeline.sweep import load_sweep_config, node_resources

    repo = Path(__file__).resolve().parents[2]
    cfg = load_sweep_config(repo / "examples" / "sweeps" / "paper-llama.toml")
    models = {m.name.split("/")[-1]: m for m in cfg.model_entries()}
    assert set(models) == {"open_llama_3b", "llama-7b", "llama-13b", "llama-30b"}
    assert len(models["llama-30b"].interventions) == 9 and "ccs" not in models["llama-7b"].interventions
    assert models["llama-7b"].config["lora_fine_tune"]["intervention"]["learning_rate"] == 2e-4
    assert models["open_llama_3b"].config["lora_fine_tune"]["intervention"]["learning_rate"] == 7.2e-5
    assert node_resources(cfg, "evaluation", models["llama-30b"])["gpus"] == 4
    assert node_resources(cfg, "evaluation", models["llama-7b"])["gpus"] == 1


@pytest.mark.parametrize("executor", ["submitit", "ray"])
def test_genies_run_takes_the_remote_executors(use_data_dir, tiny_model_dir, tmp_path, capsys, executor):
    """`genies run --executor submitit|ray` (submitit: local jobs where there is no Slurm) = local."""
    if executor == "ray" and not __import__("importlib").util.find_spec("ray"):
        pytest.skip("Ray is not installed (pip install 'genies[ray]')")
    if executor == "submitit" and __import__("shutil").which("sbatch"):
        pytest.skip("sbatch is on PATH: submitit would submit to a real Slurm cluster")
    suite = tmp_path / "one.json"
    suite.write_text(json.dumps(TINY_SUITE[:1]))
    csvs = []
    for name in ("local", executor):
        args = ["run", "-i", "zero_shot", "--suite", str(suite), "--model", str(tiny_model_dir), "--device", "cpu",
                "--limit", "2", "--no-progress", "--store", str(tmp_path / f"s-{name}"),
                "--out", str(tmp_path / f"o-{name}"), "--executor", name]  # fmt: skip
        assert main(args) == 0, capsys.readouterr().err
        err = " ".join(capsys.readouterr().err.split())
        assert "evaluations: 0 computed" not in err, err  # the remote workers' counters came back
        csvs.append((tmp_path / f"o-{name}" / "one.csv").read_bytes())
    assert csvs[0] == csvs[1]
