"""The intervention context on the tiny model: one engine per model, adapters restored bit-identically."""

from __future__ import annotations

import pytest
import torch

from genies.api.context import InterventionContext, ModelSession
from genies.errors import GeniesError


@pytest.fixture(scope="module")
def lm(tiny_model_dir):
    from genies.models.loading import load_model

    return load_model(str(tiny_model_dir), device="cpu")


REQUESTS = [("What is the capital of France?", " Paris."), ("What is the capital of France?", " Rome.")]


def _snapshot(model):
    return (
        {k: v.detach().clone() for k, v in model.state_dict().items()},
        [(n, type(m).__name__, m.training) for n, m in model.named_modules()],
        {n: p.requires_grad for n, p in model.named_parameters()},
    )


def test_one_engine_per_model_and_scores_through_it(lm):
    session = ModelSession.of(lm)
    ctx = InterventionContext(seed=0, session=session)
    other = InterventionContext(seed=1, session=session)
    assert ctx.engine is other.engine  # one engine per loaded model: its self-check ran once
    a = ctx.scores(REQUESTS)
    assert [s.n_tokens for s in a] == [s.n_tokens for s in other.scores(REQUESTS)]
    assert ctx.scores([]) == []


def test_a_context_without_a_model_says_so():
    ctx = InterventionContext(seed=3)
    assert ctx.seed == 3
    with pytest.raises(GeniesError, match="without a model"):
        ctx.model  # noqa: B018
    with ctx.progress(10, "x") as advance:  # progress is a no-op without a bar
        advance(3)
    ctx.log("nothing happens")


def test_progress_and_log_reach_the_run(lm):
    import contextlib

    seen, lines = [], []

    @contextlib.contextmanager
    def factory(total, what):
        seen.append((total, what))
        yield lambda n=1: seen.append(n)

    ctx = InterventionContext.for_model(lm, progress=factory, log=lines.append)
    ctx.scores(REQUESTS)
    ctx.log("hello")
    assert seen == [(2, "scoring"), 2] and lines == ["hello"]


def test_adapter_trains_on_the_shared_model_and_restores_it_bit_identically(lm):
    import peft

    model = lm.model
    before = _snapshot(model)
    ctx = InterventionContext.for_model(lm, seed=0)
    base_scores = [s.logprob_sum for s in ctx.scores(REQUESTS)]
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        base_logits = model(ids).logits.clone()

    config = peft.LoraConfig(
        r=4, target_modules=["q_proj", "v_proj"], lora_dropout=0.0, init_lora_weights=False
    )
    with ctx.adapter(config) as wrapped:
        trainable = [p for p in wrapped.parameters() if p.requires_grad]
        assert trainable and all("lora" in n for n, p in wrapped.named_parameters() if p.requires_grad)
        opt = torch.optim.SGD(trainable, lr=0.5)
        wrapped.train()
        loss = wrapped(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        wrapped.eval()
        inside = [s.logprob_sum for s in ctx.scores(REQUESTS)]  # the engine sees the adapter
        assert inside != pytest.approx(base_scores, abs=1e-6)
    after = _snapshot(model)
    assert after[1] == before[1] and after[2] == before[2]  # same modules, flags, requires_grad
    assert after[0].keys() == before[0].keys()
    assert all(torch.equal(after[0][k], before[0][k]) for k in before[0])  # bit-identical weights
    with torch.no_grad():
        assert torch.equal(model(ids).logits, base_logits)
    assert [s.logprob_sum for s in ctx.scores(REQUESTS)] == base_scores


def test_adapter_weights_can_be_loaded_frozen_and_the_model_is_restored_after_an_error(lm):
    import peft

    ctx = InterventionContext.for_model(lm)
    config = peft.LoraConfig(r=2, target_modules=["q_proj"], lora_dropout=0.0, init_lora_weights=False)
    with ctx.adapter(config) as wrapped:
        saved = {k: v.clone() for k, v in peft.get_peft_model_state_dict(wrapped).items()}
    before = _snapshot(lm.model)
    with (
        pytest.raises(RuntimeError, match="boom"),
        ctx.adapter(config, state_dict=saved, trainable=False) as w,
    ):
        got = peft.get_peft_model_state_dict(w)
        assert all(torch.equal(got[k], saved[k]) for k in saved)
        assert not any(p.requires_grad for p in w.parameters())
        raise RuntimeError("boom")
    after = _snapshot(lm.model)
    assert after[1:] == before[1:] and all(torch.equal(after[0][k], before[0][k]) for k in before[0])


def test_a_model_changed_inside_the_block_is_reported(lm):
    import peft

    ctx = InterventionContext.for_model(lm)
    config = peft.LoraConfig(r=2, target_modules=["q_proj"], lora_dropout=0.0)
    weight = lm.model.model.layers[0].mlp.up_proj.weight
    original = weight.detach().clone()
    try:
        with pytest.raises(GeniesError, match="not restored as found"), ctx.adapter(config), torch.no_grad():
            weight.add_(1.0)  # an in-place change of a base weight (e.g. merging an adapter)
    finally:
        with torch.no_grad():
            weight.copy_(original)


def test_checkpoint_dir_of_a_library_context_is_removed_on_close(lm):
    with InterventionContext.for_model(lm) as ctx:
        d = ctx.checkpoint_dir
        (d / "step.txt").write_text("1")
        assert d.is_dir()
    assert not d.exists()
