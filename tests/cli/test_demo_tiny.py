"""`genies demo` end to end on the tiny random model, small sizes (well under a minute).

What is checked: the steps run in order through `genies run`'s machinery (outputs where `genies run`
puts them), the budget skips a run that would overshoot and a rerun reuses every evaluation, an
intervention this build lacks is one line and the demo goes on, the results table covers the 7
planted shifts, the comparison and the HTML report are produced when `genies.report` has them (one
line saying so otherwise), per-step timings and the real benchmark's commands end the output.
The real-data step (official `test` suite) runs when the release tarball is at hand.
"""

from __future__ import annotations

import importlib.util
import json
import re

import pytest

from genies.cli import main
from genies.data import load_distribution
from genies.data import synthetic as syn
from genies.interventions.registry import intervention_class, list_interventions
from genies.pipeline import demo as demo_mod


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:
        return False


def _demo(capsys, tiny, out, *extra: str) -> tuple[int, str, str]:
    code = main(
        [
            "demo", "--model", str(tiny), "--device", "cpu", "--size", "4", "--test-size", "2",
            "--limit", "2", "--no-progress", "--out", str(out), *extra,
        ]
    )  # fmt: skip
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def _flat(text: str) -> str:
    return " ".join(text.split())


def _status(text: str, step: str) -> str | None:
    """A step's status in the timings table (cells separated by box characters)."""
    m = re.search(re.escape(step) + r"[\s|\u2502]+(ran|cached|skipped|failed|absent)\b", text)
    return m.group(1) if m else None


def test_demo_end_to_end_budget_rerun_and_outputs(tiny_model_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(demo_mod.DATA_SOURCE_ENV, raising=False)
    out = tmp_path / "demo"

    # 1. budget 0: zero_shot (the baseline) always runs; few_shot would overshoot and is skipped
    code, stdout, stderr = _demo(
        capsys, tiny_model_dir, out, "-i", "zero_shot,no_such_method,few_shot", "--budget", "0"
    )
    assert code == 0, stderr[-3000:]
    err = _flat(stderr)
    assert "skip no_such_method on synthetic: not registered in this build" in err
    assert "skip few_shot on synthetic: needs ~" in err and "raise --budget" in err
    assert "real-data step skipped: official data not in the store" in err
    zs = json.loads((out / "synthetic" / "zero_shot" / "synthetic.json").read_text())
    assert {(r["source"], r["target"]) for r in zs["rows"]} == set(syn.SHIFT_NOTES)
    assert not (out / "synthetic" / "few_shot").exists()  # a skipped run leaves no folder behind
    # the synthetic suite was generated at the sizes asked (into the conftest-isolated data store)
    assert len(load_distribution("synth_add_1digit").train) == 4
    assert len(load_distribution("synth_add_1digit").test) == 2

    # 2. the full budget: zero_shot is reused from the store, few_shot runs
    code, stdout, stderr = _demo(capsys, tiny_model_dir, out, "-i", "few_shot")
    assert code == 0, stderr[-3000:]
    fs = json.loads((out / "synthetic" / "few_shot" / "synthetic.json").read_text())
    assert fs["intervention"] == "few_shot" and fs["intervention_config"]["num_shots"] == 2
    assert len(fs["rows"]) == 7
    text = _flat(stdout)
    assert "synthetic suite: accuracy on each target" in text
    for src, tgt in syn.SHIFT_NOTES:
        assert f"{src} → {tgt}" in text or f"{src} -> {tgt}" in text
    assert "zero_shot" in text and "few_shot" in text and "DE mean" in text
    # per-step timings: zero_shot reused everything, few_shot computed its pairs
    assert _status(text, "zero_shot on synthetic") == "cached"
    assert _status(text, "few_shot on synthetic") == "ran"
    assert "genies demo:" in text and "wall time" in text
    assert (
        "genies run -i zero_shot --suite genies" in text and "genies run -i few_shot --suite genies" in text
    )
    # comparison and report: produced when this build has genies.report's contract, else one line
    if _has("genies.report.html"):
        assert (out / "demo-report.html").is_file()
    else:
        assert "genies.report.html is not in this build; no report written" in _flat(stderr)
    if not _has("genies.report.compare"):
        assert "genies.report.compare is not in this build; skipped" in _flat(stderr)

    # 3. a rerun computes nothing
    code, stdout, _ = _demo(capsys, tiny_model_dir, out, "-i", "few_shot")
    assert code == 0
    assert _status(stdout, "few_shot on synthetic") == _status(stdout, "zero_shot on synthetic") == "cached"


def test_demo_settings_fit_the_registered_configs():
    """Every DEMO_CONFIGS entry of a registered intervention is a valid config for it (after the
    filtering demo_sets does), and the keys it drops are reported, not silently used."""
    from genies.pipeline.config import parse_sets

    for name in demo_mod.DEMO_CONFIGS:
        if name not in list_interventions():
            continue
        sets, dropped = demo_mod.demo_sets(name)
        cfg = parse_sets(sets).get("intervention", {})
        intervention_class(name).make_config(cfg)  # raises on a bad key or type
        assert set(cfg) | set(dropped) == set(demo_mod.DEMO_CONFIGS[name].config)
    assert demo_mod.run_order(["few_shot"]) == ["zero_shot", "few_shot"]
    order = demo_mod.run_order()
    assert order[: len(demo_mod.DEMO_ORDER)] == list(demo_mod.DEMO_ORDER)
    assert set(list_interventions()) <= set(order)


def test_demo_runs_the_real_test_suite_when_a_release_is_given(
    tiny_model_dir, datasets_tarball, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(demo_mod.DATA_SOURCE_ENV, str(datasets_tarball))
    out = tmp_path / "demo"
    code, stdout, stderr = _demo(capsys, tiny_model_dir, out, "-i", "zero_shot", "--real-limit", "2")
    assert code == 0, stderr[-3000:]
    real = json.loads((out / "test" / "zero_shot" / "test.json").read_text())
    assert real["suite"] == "test" and real["limit"] == 2 and len(real["rows"]) == 1
    # the synthetic suite survived the import (generated distributions belong to the store)
    assert (out / "synthetic" / "zero_shot" / "synthetic.json").is_file()
    assert _status(stdout, "import official data") == "ran"
    assert _status(stdout, "zero_shot on test") == "ran"


@pytest.mark.parametrize("bad", [["--budget", "-1"], ["--limit", "0"], ["--size", "0"]])
def test_demo_bad_options_are_one_line_usage_errors(bad, capsys):
    code = main(["demo", *bad])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1, err


def test_training_methods_run_on_the_telling_shifts_with_their_trainings_in_the_estimate(
    tiny_model_dir, tmp_path, monkeypatch, capsys
):
    """lora_fine_tune runs on DemoConfig.shifts only (a shift file under <out>/suites), its results
    pair with zero_shot's (same --limit), and its estimate counts the reward models it must train."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(demo_mod.DATA_SOURCE_ENV, raising=False)
    monkeypatch.setitem(
        demo_mod.DEMO_CONFIGS,
        "lora_fine_tune",
        demo_mod.DemoConfig(
            {"num_train_steps": 1, "batch_size": 2}, train_cost=5.0, shifts=demo_mod.TELLING_SHIFTS
        ),
    )
    out = tmp_path / "demo"
    code, stdout, stderr = _demo(capsys, tiny_model_dir, out, "--interventions", "lora_fine_tune")
    assert code == 0, stderr
    suite = json.loads((out / "suites" / "lora_fine_tune.json").read_text())
    assert {(s["source"], s["target"]) for s in suite} == set(demo_mod.TELLING_SHIFTS)
    text = _flat(stdout + stderr)
    assert "lora_fine_tune on synthetic (2 of its shifts)" in text
    assert _status(stdout, "compare lora_fine_tune vs zero_shot") == "ran"

    d = demo_mod.Demo(demo_mod.DemoOptions(), console=None)  # type: ignore[arg-type]
    d.seconds_per_pair = 0.1
    # 4 trainings (2 sources, 2 target references) x 1 step x 2 pairs x 5.0, plus 10 pairs x 1.0
    assert d.estimate("lora_fine_tune", demo_mod.SYNTH_SUITE, 10, trainings=4) == pytest.approx(5.0)


def test_interventions_needing_user_settings_are_absent_not_failed():
    why = demo_mod.why_not_run("upstream_dir")
    assert why is not None and "path" in why
    assert demo_mod.why_not_run("zero_shot") is None
