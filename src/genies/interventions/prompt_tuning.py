"""``prompt_tuning``: the reward model of ``lora_fine_tune`` with peft prompt tuning instead of LoRA.

Upstream-reference §4.4: 10 virtual-token embeddings (random init, seeded) are prepended to every
sequence as input embeddings, and they plus the scalar head are the only trained tensors; learning rate
0.0052 by default (the paper's). The reward is read at the last real token (the appended EOS), as
upstream's prompt-tuned model effectively did (it pooled at the last position). Everything else —
loss, schedule, resume, logs, p(correct) = σ(r_c − r_r) — is ``lora_fine_tune``'s. The shared model is
used through ``ctx.adapter`` and left as found. Fast settings for the tiny model:
``--set intervention.num_train_steps=2 --set intervention.batch_size=2``.
"""

from __future__ import annotations

import contextlib
from typing import ClassVar

import pydantic

from genies.api.intervention import InterventionConfig
from genies.interventions.lora_fine_tune import (
    Attached,
    RewardConfig,
    RewardIntervention,
    adapter_tensors,
    peft_model,
    readout,
)
from genies.interventions.registry import register_intervention


class PromptTuningConfigModel(RewardConfig):
    """Prompt-tuned reward model: ``num_virtual_tokens`` trained embeddings + the scalar head."""

    learning_rate: float = pydantic.Field(0.0052, gt=0, description="Constant learning rate (paper: 0.0052).")
    num_virtual_tokens: int = pydantic.Field(10, ge=1, description="Trained virtual tokens (upstream 10).")


@register_intervention("prompt_tuning")
class PromptTuning(RewardIntervention):
    """Prompt-tuned reward model (upstream §4.4)."""

    Config: ClassVar[type[InterventionConfig]] = PromptTuningConfigModel

    @contextlib.contextmanager
    def attach(self, ctx, cfg, tensors, trainable):  # type: ignore[override]
        import peft

        from genies.models.reward import backbone_of

        pcfg = peft.PromptTuningConfig(
            task_type=peft.TaskType.FEATURE_EXTRACTION, num_virtual_tokens=cfg.num_virtual_tokens
        )
        with peft_model(ctx, cfg, pcfg, adapter_tensors(tensors), trainable) as wrapped:
            out = readout(ctx, cfg, tensors, trainable)
            lm = wrapped.get_base_model()
            params = {n: p for n, p in wrapped.named_parameters() if p.requires_grad} if trainable else {}
            if trainable:
                params[out.name] = out.tensor

            def prefix():
                return wrapped.get_prompt(batch_size=1)[0]  # [V, D], recomputed so gradients flow

            def export():
                sd = peft.get_peft_model_state_dict(wrapped)
                return {**{f"adapter.{k}": v for k, v in sd.items()}, out.name: out.tensor.detach()}

            yield Attached(
                params=params,
                reward=out.reward_fn(backbone_of(lm), lm.get_output_embeddings(), lm.config, prefix),
                export=export,
                meta={
                    "adapter": "prompt_tuning",
                    "num_virtual_tokens": cfg.num_virtual_tokens,
                    "reward_head": out.kind,
                },
                modules=[wrapped],
            )
