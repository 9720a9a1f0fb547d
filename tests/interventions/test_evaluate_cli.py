"""`genies evaluate` end to end on the tiny model and the official data, plus bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from genies.cli import main


def _run_json(capsys, args: list[str]) -> list[dict]:
    code = main(["evaluate", *args, "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    return json.loads(out.out)


def test_zero_shot_end_to_end(use_data_dir, tiny_model_dir, capsys):
    from genies import metrics
    from genies.data import load_distribution
    from genies.interventions import get_intervention
    from genies.models.loading import load_model

    records = _run_json(
        capsys, ["-i", "zero_shot", "-m", str(tiny_model_dir), "-d", "alpaca_easy,crt_1", "--limit", "8"]
    )
    assert [r["eval_distribution"] for r in records] == ["alpaca_easy", "crt_1"]
    from genies.api.context import InterventionContext

    lm = load_model(str(tiny_model_dir), device="cpu")
    iv = get_intervention("zero_shot")
    cfg = iv.make_config({})
    for r in records:
        dist = load_distribution(r["eval_distribution"])
        pairs = dist.test.to_pairs("all")[:8]
        # zero_shot declares that its scores never depend on a training split: the record says so
        assert r["train_distribution"] is None and r["train_fingerprint"] is None
        assert r["n"] + r["dropped"] == 8 and r["n"] == len(r["p_correct"]) == len(r["pair_ids"])
        assert r["eval_fingerprint"] == dist.test.fingerprint
        assert r["inputs"]["eval"]["pair_ids"] == r["pair_ids"] and r["metrics_version"]
        # the CLI's numbers are exactly the library's numbers for the kept pairs of the first 8
        kept = [p for p in pairs if p.id in set(r["pair_ids"])]
        ctx = InterventionContext.for_model(lm, seed=0)
        direct = iv.score_pairs(ctx, iv.fit(ctx, dist.train, cfg), kept, cfg)
        assert r["pair_ids"] == direct.pair_ids
        np.testing.assert_allclose(r["p_correct"], direct.p_correct, rtol=0, atol=1e-6)
        p = np.array(r["p_correct"])
        assert r["metrics"]["accuracy"] == pytest.approx(metrics.accuracy(p))
        assert r["metrics"]["brier_score"] == pytest.approx(metrics.brier_score(p))
        assert set(r["metrics"]) == set(metrics.summarize(p))

    # the table names every distribution and the metric columns
    assert (
        main(["evaluate", "-i", "zero_shot", "-m", str(tiny_model_dir), "-d", "crt_1", "--limit", "4"]) == 0
    )
    out = capsys.readouterr().out
    assert "crt_1" in out and "brier" in out and "acc(up)" in out


def test_few_shot_end_to_end_with_train_distribution(use_data_dir, tiny_model_dir, capsys):
    args = ["-i", "few_shot", "-m", str(tiny_model_dir), "-d", "crt_1", "-t", "crt_2", "--limit", "6"]
    records = _run_json(capsys, [*args, "--set", "intervention.num_shots=1", "--seed", "3"])
    (r,) = records
    assert r["train_distribution"] == "crt_2" and r["config"]["num_shots"] == 1 and r["seed"] == 3
    assert r["info"]["pool_size"] == 600 and r["n"] + r["dropped"] == 6
    assert r["n"] > 0
    again = _run_json(capsys, [*args, "--set", "intervention.num_shots=1", "--seed", "3"])[0]
    assert again["p_correct"] == r["p_correct"]
    other = _run_json(capsys, [*args, "--set", "intervention.num_shots=1", "--seed", "4"])[0]
    assert other["p_correct"] != r["p_correct"]
    # batch size is not a result: same numbers
    batched = _run_json(
        capsys,
        [*args, "--set", "intervention.num_shots=1", "--seed", "3", "--set", "intervention.batch_size=1"],
    )[0]
    np.testing.assert_allclose(batched["p_correct"], r["p_correct"], rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "args,message",
    [
        (
            ["-i", "zero_sho", "-m", "x", "-d", "crt_1"],
            "unknown intervention 'zero_sho'; did you mean 'zero_shot'",
        ),
        (["-i", "zero_shot", "-m", "no-such-model", "-d", "crt_11"], "unknown distribution 'crt_11'"),
        (["-i", "zero_shot", "-m", "no-such-model", "-d", "crt_1"], "unknown model 'no-such-model'"),
        (["-i", "zero_shot", "-m", "x", "-d", "crt_1", "-t", "nope"], "unknown distribution 'nope'"),
        (
            ["-i", "zero_shot", "-m", "x", "-d", "crt_1", "--set", "intervention.num_shots=2"],
            "invalid config for intervention 'zero_shot'",
        ),
        (["-i", "few_shot", "-m", "x", "-d", "crt_1", "--set", "intervention.num_shots=-1"], "num_shots"),
        (
            ["-i", "few_shot", "-m", "x", "-d", "crt_1", "--set", "intervention.num_shots=true"],
            "num_shots: Input should be a valid integer",
        ),
        (["-i", "zero_shot", "-m", "x", "-d", "crt_1", "--set", "scoring"], "use ROLE.KEY=VALUE"),
        (["-i", "zero_shot", "-m", "x", "-d", "crt_1", "--set", "scoring=mean"], "use ROLE.KEY=VALUE"),
        (["-i", "zero_shot", "-m", "x", "-d", "crt_1", "--limit", "0"], "--limit must be a positive"),
        (["-i", "zero_shot", "-m", "x", "-d", " , "], "at least one distribution"),
        (["-i", "zero_shot", "-m", "x", "-d", "crt_1", "--split", "dev"], "--split must be"),
    ],
)
def test_bad_input_is_one_line_error(use_data_dir, capsys, args, message):
    code = main(["evaluate", *args])
    err = capsys.readouterr().err
    assert code != 0
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], err
    assert "Traceback" not in err


@pytest.mark.slow
def test_smollm2_through_evaluate(use_data_dir, capsys):
    """The real SmolLM2-135M: zero-shot and 2-shot on a few pairs; numbers are only sanity-checked."""
    from genies.errors import ModelError
    from genies.models.loading import load_model

    try:
        load_model("smollm2-135m", device="cpu")
    except ModelError as exc:
        pytest.skip(f"smollm2-135m unavailable: {exc}")
    runs = [
        (["-i", "zero_shot", "-d", "crt_1,alpaca_easy"], 12),
        (["-i", "few_shot", "--set", "intervention.num_shots=2", "-d", "crt_1"], 6),
    ]
    for extra, limit in runs:
        records = _run_json(capsys, [*extra, "--limit", str(limit), "--device", "cpu"])  # default model
        for r in records:
            assert r["n"] + r["dropped"] == limit and r["n"] > 0
            assert 0.0 <= r["metrics"]["accuracy"] <= 1.0
            assert r["ties"] < r["n"]  # float32 scoring: exact ties are rare
            assert r["model"]["name"] == "smollm2-135m"
