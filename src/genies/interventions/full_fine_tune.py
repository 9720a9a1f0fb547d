"""``full_fine_tune``: the reward model of ``lora_fine_tune`` with every backbone weight trained.

Not in the paper (upstream-reference §4.5: its script was broken); asked for by users. A private copy
of the model's backbone is trained (the shared model is never touched), with the same scalar head,
loss, schedule, resume and logs as ``lora_fine_tune``; the default learning rate is upstream's 2e-5.
The state holds the whole backbone (``backbone.*``, safetensors) and the head, so it is as large as
the model (540 MB for SmolLM2-135M in float32) and every checkpoint also holds AdamW's two moments.
With ``reward_head="logprob"`` the vocabulary projection is the trained copy's input embedding when the
model ties them (SmolLM2, Gemma), else a frozen copy of the model's LM head.
Fast settings for the tiny model: ``--set intervention.num_train_steps=2 --set intervention.batch_size=2``.
"""

from __future__ import annotations

import contextlib
import copy
from typing import ClassVar

import pydantic

from genies.api.intervention import InterventionConfig
from genies.errors import StoreError
from genies.interventions.lora_fine_tune import Attached, RewardConfig, RewardIntervention, readout
from genies.interventions.registry import register_intervention


class FullFineTuneConfig(RewardConfig):
    """Full fine-tuning: all backbone weights + the head."""

    learning_rate: float = pydantic.Field(2e-5, gt=0, description="Constant learning rate (upstream 2e-5).")


@register_intervention("full_fine_tune")
class FullFineTune(RewardIntervention):
    """Reward model with all weights trained, on a private copy of the backbone."""

    Config: ClassVar[type[InterventionConfig]] = FullFineTuneConfig

    @contextlib.contextmanager
    def attach(self, ctx, cfg, tensors, trainable):  # type: ignore[override]
        from genies.models.reward import backbone_of

        if cfg.load_in_4bit:
            from genies.errors import ConfigError

            raise ConfigError("full_fine_tune does not train 4-bit weights; set load_in_4bit=false")
        backbone = copy.deepcopy(backbone_of(ctx.model.model))
        if tensors is not None:
            own = {k[len("backbone.") :]: v for k, v in tensors.items() if k.startswith("backbone.")}
            try:
                backbone.load_state_dict(own, strict=True)
            except RuntimeError as exc:
                raise StoreError(f"full_fine_tune state does not fit this model: {str(exc)[:200]}") from None
        for p in backbone.parameters():
            p.requires_grad_(trainable)
        out = readout(ctx, cfg, tensors, trainable)
        params = {f"backbone.{n}": p for n, p in backbone.named_parameters()} if trainable else {}
        if trainable:
            params[out.name] = out.tensor

        def export():
            sd = {f"backbone.{k}": v for k, v in backbone.state_dict().items()}
            return {**sd, out.name: out.tensor.detach()}

        model = ctx.model.model
        lm_head = _unembedding(model, backbone) if out.kind == "logprob" else None  # linear never projects
        yield Attached(
            params=params,
            reward=out.reward_fn(backbone, lm_head, model.config),
            export=export,
            meta={"adapter": "none", "reward_head": out.kind},
            modules=[backbone],
        )


def _unembedding(model, backbone):
    """The vocabulary projection for ``reward_head="logprob"``: never the shared model's own weights."""
    import torch

    if getattr(model.config, "tie_word_embeddings", False):
        emb = backbone.get_input_embeddings()  # the trained copy's, as the tied model would use it
        return lambda h: torch.nn.functional.linear(h, emb.weight)
    head = copy.deepcopy(model.get_output_embeddings())
    for p in head.parameters():
        p.requires_grad_(False)
    return head
