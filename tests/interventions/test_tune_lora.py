"""lora_fine_tune / prompt_tuning / full_fine_tune on the tiny random LLaMA: training changes the right
weights, states round-trip, rewards are batch-invariant, a killed fit resumes to the same weights,
configs are strict, the shared model is left as found, and `genies run` drives them end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from genies.api.context import InterventionContext
from genies.api.intervention import InterventionState
from genies.data.schema import examples_from_records
from genies.errors import ConfigError
from genies.interventions.registry import get_intervention
from genies.models.reward import CHECKPOINT_FILE, init_head

FAST = {"num_train_steps": 2, "batch_size": 2, "log_every": 1}


@pytest.fixture(scope="module")
def lm(tiny_model_dir):
    from genies.models.loading import load_model

    return load_model(str(tiny_model_dir), device="cpu")


@pytest.fixture(scope="module")
def split():
    recs = [
        {
            "prompt": f"Question {i}: what is {i} plus {i}?",
            "responses": {f"{2 * i}": 1.0, f"{2 * i + 1}, no": 0.0},
        }
        for i in range(10)
    ]
    return examples_from_records(recs, "train", "toy")


def _params(lm):
    return {n: p.detach().clone() for n, p in lm.model.named_parameters()}


def test_one_step_changes_lora_and_head(lm, split):
    it = get_intervention("lora_fine_tune")
    cfg = it.make_config({**FAST, "num_train_steps": 1})
    before = _params(lm)
    with InterventionContext.for_model(lm, seed=3) as ctx:
        state = it.fit(ctx, split, cfg)
    lora_b = [k for k in state.tensors if k.startswith("adapter.") and "lora_B" in k]
    assert lora_b and all(state.tensors[k].abs().sum() > 0 for k in lora_b)  # peft inits B at 0
    head0 = init_head(lm.model.config.hidden_size, 3)
    assert not torch.equal(state.tensors["head"], head0)
    assert state.meta["target_modules"] == ["q_proj", "v_proj"]
    assert [e["step"] for e in state.meta["train_log"]] == [1]
    after = _params(lm)  # the shared base model is left as found, bit for bit
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert not any("lora" in n for n, _ in lm.model.named_modules())


@pytest.mark.parametrize(
    ("name", "head"),
    [
        ("lora_fine_tune", "linear"),
        ("prompt_tuning", "linear"),
        ("full_fine_tune", "linear"),
        ("lora_fine_tune", "logprob"),
        ("prompt_tuning", "logprob"),
        ("full_fine_tune", "logprob"),
    ],
)
def test_save_load_identical_scores_and_batch_invariance(lm, split, name, head, tmp_path):
    it = get_intervention(name)
    cfg = it.make_config({**FAST, "reward_head": head})
    pairs = split.to_pairs("all")
    before = _params(lm)
    with InterventionContext.for_model(lm, seed=0) as ctx:
        state = it.fit(ctx, split, cfg)
        state.save(tmp_path / "s")
        assert (tmp_path / "s" / "train_log.jsonl").read_text().count("\n") == 2
        loaded = InterventionState.load(tmp_path / "s")
        a = it.score_pairs(ctx, state, pairs, cfg).p_correct
        b = it.score_pairs(ctx, loaded, pairs, cfg).p_correct
        one_cfg = it.make_config({**FAST, "reward_head": head, "eval_batch_size": 1})
        one = it.score_pairs(ctx, loaded, pairs, one_cfg).p_correct
        rev = it.score_pairs(ctx, loaded, pairs[::-1], cfg).p_correct[::-1]
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(one, a, rtol=0, atol=1e-6)  # batch size / neighbours / padding
    np.testing.assert_allclose(rev, a, rtol=0, atol=1e-6)
    if head == "linear":
        assert np.all((a > 0) & (a < 1)) and np.std(a) > 0
    else:  # the tiny model's log-probs are sharp (testing.py scales its LM head): margins saturate σ
        assert np.all((a >= 0) & (a <= 1)) and a.mean() > 0.5
    assert state.meta["reward_head"] == head
    assert ("scale" in state.tensors) == (head == "logprob") and ("head" in state.tensors) == (
        head == "linear"
    )
    after = _params(lm)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in lm.model.parameters())  # no gradient leaked into the shared model


@pytest.mark.parametrize("name", ["lora_fine_tune", "full_fine_tune"])
@pytest.mark.parametrize("beta", [1.0, 0.05])
def test_logprob_readout_starts_at_zero_shot(lm, split, name, beta):
    """Untrained (LoRA's B = 0 / the unchanged copy, β at its init), the logprob reward of each text
    is β times the summed log-prob of ``response + EOS`` that the zero-shot scorer compares,
    batch-invariantly."""
    from genies.models.reward import encode_pairs, flatten

    pairs = split.to_pairs("all")
    it = get_intervention(name)
    cfg = it.make_config({**FAST, "reward_head": "logprob", "logprob_scale_init": beta})
    with InterventionContext.for_model(lm, seed=0) as ctx:
        want = [
            beta * s.logprob_sum
            for s in ctx.engine.score([(p.prompt, r) for p in pairs for r in (p.correct, p.incorrect)])
        ]
        seqs, starts = flatten(encode_pairs(ctx, pairs))
        with it.attach(ctx, cfg, None, False) as att, torch.no_grad():
            for m in att.modules:
                m.eval()
            together = att.reward(seqs, starts)
            alone = torch.cat([att.reward(seqs[i : i + 1], starts[i : i + 1]) for i in range(len(seqs))])
    assert np.std(want) > 1.0 * beta and max(want) < 0
    np.testing.assert_allclose(together.numpy(), want, rtol=1e-5, atol=1e-3 * beta)
    torch.testing.assert_close(together, alone, rtol=0, atol=1e-4)


def test_logprob_state_is_not_read_as_linear(lm, split):
    from genies.errors import StoreError

    it = get_intervention("lora_fine_tune")
    with InterventionContext.for_model(lm, seed=0) as ctx:
        state = it.fit(ctx, split, it.make_config({**FAST, "num_train_steps": 1, "reward_head": "logprob"}))
        with pytest.raises(StoreError, match="no head"):
            it.score_pairs(ctx, state, split.to_pairs("all"), it.make_config(FAST))


def test_rewards_read_at_last_real_token(lm):
    from genies.models.reward import backbone_of, rewards

    head = init_head(lm.model.config.hidden_size, 0)
    seqs = [[5, 6, 7, 8, 9, 10, 11], [5, 6], [12, 13, 14]]
    with torch.no_grad():
        together = rewards(backbone_of(lm.model), head, seqs)
        alone = torch.stack([rewards(backbone_of(lm.model), head, [s])[0] for s in seqs])
    torch.testing.assert_close(together, alone, rtol=0, atol=1e-5)
    assert together.dtype == torch.float32


class _Kill(Exception):
    pass


def test_resume_after_kill_gives_same_weights(lm, split, tmp_path):
    it = get_intervention("lora_fine_tune")
    cfg = it.make_config({**FAST, "num_train_steps": 6, "checkpoint_every": 2, "log_every": 2})
    with InterventionContext.for_model(lm, seed=1, checkpoint_dir=tmp_path / "a") as ctx:
        straight = it.fit(ctx, split, cfg)

    calls = {"n": 0}

    def killing_progress(total, what):
        import contextlib

        @contextlib.contextmanager
        def bar():
            def advance(n=1):
                calls["n"] += 1
                if calls["n"] > 5:  # advance(0) at start, then after steps 1..4: killed in step 5's advance
                    raise _Kill

            yield advance

        return bar()

    ck = tmp_path / "b"
    with pytest.raises(_Kill):
        it.fit(
            InterventionContext.for_model(lm, seed=1, checkpoint_dir=ck, progress=killing_progress),
            split,
            cfg,
        )
    assert (ck / CHECKPOINT_FILE).exists()
    resumed = it.fit(InterventionContext.for_model(lm, seed=1, checkpoint_dir=ck), split, cfg)
    assert resumed.meta["resumed_from"] == 4
    assert sorted(resumed.tensors) == sorted(straight.tensors)
    for k in straight.tensors:
        assert torch.equal(resumed.tensors[k], straight.tensors[k]), k
    assert resumed.meta["train_log"] == straight.meta["train_log"]
    lines = [json.loads(x) for x in (ck / "train_log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in lines] == [2, 4, 6]


def test_config_is_strict_and_4bit_refused_on_cpu(lm, split):
    it = get_intervention("lora_fine_tune")
    with pytest.raises(ConfigError, match="num_train_step"):
        it.make_config({"num_train_step": 3})
    with pytest.raises(ConfigError):
        it.make_config({"learning_rate": "fast"})
    cfg = it.make_config({**FAST, "load_in_4bit": True})
    with pytest.raises(ConfigError, match="CUDA"):
        it.fit(InterventionContext.for_model(lm, seed=0), split, cfg)


def test_genies_run_synthetic_suite(tiny_model_dir, tmp_path, capsys):
    from genies.cli import main
    from genies.data.synthetic import generate

    data = tmp_path / "data"
    generate(data, seed=0, train_size=8, test_size=4)
    args = ["run", "-i", "lora_fine_tune", "--suite", "synthetic", "--model", str(tiny_model_dir),
            "--device", "cpu", "--data-dir", str(data), "--store", str(tmp_path / "store"),
            "--out", str(tmp_path / "out"), "--no-progress",
            "--set", "intervention.num_train_steps=2", "--set", "intervention.batch_size=2"]  # fmt: skip
    assert main(args) == 0, capsys.readouterr().err
    rows = json.loads((tmp_path / "out" / "synthetic.json").read_text())
    assert "synth_add_1digit" in json.dumps(rows)
    logs = list((tmp_path / "store" / "states").rglob("train_log.jsonl"))
    assert logs and all(p.read_text().strip() for p in logs)


def test_forward_pairs_same_loss_less_padding(lm, split):
    """Splitting a batch into smaller forwards trains the same function (no dropout: the same
    weights up to float rounding), is reproducible, and is part of the cache key."""
    from genies.models.reward import _forwards

    it = get_intervention("full_fine_tune")
    base = {**FAST, "batch_size": 4, "num_train_steps": 3}
    whole, split1 = it.make_config(base), it.make_config({**base, "forward_pairs": 1})
    with InterventionContext.for_model(lm, seed=2) as ctx:
        a = it.fit(ctx, split, whole)
        b = it.fit(ctx, split, split1)
        c = it.fit(ctx, split, split1)
    for k in a.tensors:
        torch.testing.assert_close(b.tensors[k], a.tensors[k], rtol=0, atol=1e-5)
        assert torch.equal(b.tensors[k], c.tensors[k]), k
    assert a.meta["train_tokens"] == b.meta["train_tokens"]
    for x, y in zip(a.meta["train_log"], b.meta["train_log"], strict=True):
        assert y["loss"] == pytest.approx(x["loss"], abs=1e-5)
    assert it.key_config(whole) != it.key_config(split1)
    chunk = [([1] * 5, [1] * 2), ([1], [1]), ([1] * 3, [1] * 9)]
    assert [p for _, p in _forwards(chunk, None, 7)] == [chunk]
    parts = _forwards(chunk, 2, 7)
    assert [len(p) for _, p in parts] == [2, 1] and parts[0][1][0] == ([1], [1])  # sorted by length
    assert len({s for s, _ in parts}) == 2
