"""``ccs``: Contrast-Consistent Search (Burns et al.; upstream-reference §4.11, §5.14).

Each response is read twice, followed by the "Does the responder successfully follow the
instruction?" question answered ``Yes`` and ``No``; the feature is the final-norm hidden state at the
last token (site ``final``). A probe ``sigmoid(w·x + b)`` is trained without labels on the two
mean-centred sets with the CCS loss ``mean(min(p_yes, p_no)²) + mean((p_yes − (1 − p_no))²)``
(full-batch AdamW, lr 1e-3, weight decay 0.01, 1000 epochs, 10 seeded restarts, lowest loss kept).
A response's "yes" confidence is ``c = ½·(p_yes + 1 − p_no)``.

Two modes:

* ``mode="pairwise"`` (default, comparable with the other methods): the probe is fitted once at
  training time on all rows of the training pairs; its sign is chosen on the *source's training
  labels*; a pair is scored by ``Δ = c(correct) − c(incorrect)`` and
  ``p(correct) = sigmoid(a·Δ)`` with ``a`` fitted on the training pairs (no intercept, so swapping
  the responses gives ``1 − p``). The "No" template has upstream's missing space restored.
* ``mode="upstream"`` reproduces §4.11 and is **not comparable**: training rows are drawn with
  replacement from the first ``max_examples`` (100) examples; at evaluation the probe is refitted
  label-free on the saved training features, test features are centred with the test set's own
  means, each response is classified alone (``c < 0.5`` → "correct", upstream's comparison), and the
  sign is chosen on the *test labels* (``acc = max(acc, 1 − acc)``). A pair gets 1 when both of its
  responses are classified right, 0 when both are wrong and ½ otherwise, so the evaluation's accuracy
  is upstream's per-row accuracy; ``info["comparable"]`` is false.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import pydantic

from genies.api.intervention import (
    Intervention,
    InterventionConfig,
    InterventionState,
    Requirements,
    ScoredPairs,
    pair_texts,
)
from genies.interventions._representation import (
    NO_TEMPLATE,
    NO_TEMPLATE_CCS_UPSTREAM,
    YES_TEMPLATE,
    activation_requirements,
    check_state,
    pair_scale,
    sigmoid,
    train_pairs,
)
from genies.interventions.registry import register_intervention

if TYPE_CHECKING:
    from genies.api.context import InterventionContext
    from genies.data.schema import Pair, Split

#: The continuations (pairwise mode): the same strings as cra's, so the two share cached activations.
CCS_YES_TEMPLATE = YES_TEMPLATE
CCS_NO_TEMPLATE = NO_TEMPLATE
#: Upstream's "No" continuation (``"###Does"``, no space), used by ``mode="upstream"``.
CCS_NO_TEMPLATE_UPSTREAM = NO_TEMPLATE_CCS_UPSTREAM
#: Upstream's training-set size (``max_examples=100``; the paper's llama-30b run used 300).
UPSTREAM_MAX_EXAMPLES = 100


class CCSConfig(InterventionConfig):
    """``mode`` ("pairwise" | "upstream"), optimisation settings (upstream's), ``max_examples``."""

    mode: Literal["pairwise", "upstream"] = pydantic.Field(
        "pairwise", description="'pairwise' (comparable, default) or 'upstream' (§4.11, not comparable)."
    )
    num_epochs: int = pydantic.Field(1000, ge=1, description="Full-batch AdamW steps per restart.")
    num_restarts: int = pydantic.Field(10, ge=1, description="Random restarts; the lowest final loss wins.")
    lr: float = pydantic.Field(1e-3, gt=0)
    weight_decay: float = pydantic.Field(0.01, ge=0)
    max_examples: int | None = pydantic.Field(
        None, ge=1, description="Training examples used; None = all (pairwise) or 100 (upstream)."
    )


def _templates(mode: str) -> tuple[str, str]:
    return (CCS_YES_TEMPLATE, CCS_NO_TEMPLATE_UPSTREAM if mode == "upstream" else CCS_NO_TEMPLATE)


def fit_ccs_probe(
    x_yes: np.ndarray, x_no: np.ndarray, cfg: CCSConfig, seed: int
) -> tuple[np.ndarray, float, float]:
    """``(w, b, loss)`` of the CCS probe on centred features ``[m, D]`` (best of the restarts)."""
    import torch

    a = torch.tensor(x_yes, dtype=torch.float32)
    b_ = torch.tensor(x_no, dtype=torch.float32)
    dim = a.shape[1]
    best: tuple[np.ndarray, float, float] | None = None
    for restart in range(cfg.num_restarts):
        g = torch.Generator().manual_seed(int(seed) * 1000 + restart)
        bound = 1.0 / np.sqrt(dim)
        w = ((torch.rand(dim, generator=g) * 2 - 1) * bound).requires_grad_(True)
        bias = ((torch.rand(1, generator=g) * 2 - 1) * bound).requires_grad_(True)
        opt = torch.optim.AdamW([w, bias], lr=cfg.lr, weight_decay=cfg.weight_decay)
        for _ in range(cfg.num_epochs):
            opt.zero_grad()
            loss = _ccs_loss(torch.sigmoid(a @ w + bias), torch.sigmoid(b_ @ w + bias))
            loss.backward()
            opt.step()
        with torch.no_grad():
            final = float(_ccs_loss(torch.sigmoid(a @ w + bias), torch.sigmoid(b_ @ w + bias)))
        if best is None or final < best[2]:
            best = (w.detach().numpy().astype(np.float64), float(bias.detach()), final)
    assert best is not None
    return best


def _ccs_loss(p0: Any, p1: Any) -> Any:
    import torch

    return (torch.minimum(p0, p1) ** 2).mean() + ((p0 - (1 - p1)) ** 2).mean()


def yes_confidence(x_yes: np.ndarray, x_no: np.ndarray, w: np.ndarray, b: float) -> np.ndarray:
    """``c = ½·(p(yes) + 1 − p(no))`` per row of centred features."""
    return 0.5 * (sigmoid(x_yes @ w + b) + 1.0 - sigmoid(x_no @ w + b))


def _rows(
    ctx: InterventionContext, pairs: Sequence[Pair], mode: str
) -> tuple[list[tuple[str, str]], np.ndarray, np.ndarray]:
    """The distinct response texts of ``pairs`` and their ``final`` features under both templates."""
    texts = pair_texts(pairs)
    yes_t, no_t = _templates(mode)
    x_yes = ctx.activations(texts, ("final",), yes_t)["final"].float().numpy().astype(np.float64)
    x_no = ctx.activations(texts, ("final",), no_t)["final"].float().numpy().astype(np.float64)
    return texts, x_yes, x_no


@register_intervention("ccs")
class CCS(Intervention):
    """Contrast-Consistent Search on the final hidden state of Yes/No continuations."""

    Config: ClassVar[type[InterventionConfig]] = CCSConfig

    def requirements(self, config: InterventionConfig) -> Requirements:
        cfg = self.check_config(config)
        return activation_requirements(("final",), _templates(cfg.mode))

    # ------------------------------------------------------------ fit

    def fit(self, ctx: InterventionContext, train: Split, config: InterventionConfig) -> InterventionState:
        import torch

        cfg = self.check_config(config)
        limit = cfg.max_examples or (UPSTREAM_MAX_EXAMPLES if cfg.mode == "upstream" else None)
        pairs = train_pairs(train.head(limit), ctx.seed)
        texts, x_yes, x_no = _rows(ctx, pairs, cfg.mode)
        where = {t: i for i, t in enumerate(texts)}
        label = np.zeros(len(texts))
        label[[where[(p.prompt, p.correct)] for p in pairs]] = 1.0
        meta: dict[str, Any] = {"intervention": self.name, "mode": cfg.mode, "n_train_pairs": len(pairs)}
        if cfg.mode == "upstream":  # rows drawn with replacement (§4.11), features kept for the refit
            idx = np.random.default_rng(ctx.seed).integers(0, len(texts), len(texts))
            meta["comparable"] = False
            return InterventionState(
                meta=meta,
                tensors={
                    "train_yes": torch.tensor(x_yes[idx], dtype=torch.float32),
                    "train_no": torch.tensor(x_no[idx], dtype=torch.float32),
                },
            )
        mu_yes, mu_no = x_yes.mean(0), x_no.mean(0)
        w, b, loss = fit_ccs_probe(x_yes - mu_yes, x_no - mu_no, cfg, ctx.seed)
        c = yes_confidence(x_yes - mu_yes, x_no - mu_no, w, b)
        row_acc = float(np.mean((c > 0.5) == (label == 1)))
        sign = 1.0 if row_acc >= 0.5 else -1.0  # chosen on the source's own training labels
        c = c if sign > 0 else 1.0 - c
        delta = np.array([c[where[(p.prompt, p.correct)]] - c[where[(p.prompt, p.incorrect)]] for p in pairs])
        scale = pair_scale(delta)
        meta.update(
            {
                "comparable": True,
                "sign": sign,
                "scale": scale,
                "ccs_loss": loss,
                "train_row_accuracy": max(row_acc, 1 - row_acc),
                "train_pair_accuracy": float(np.mean((delta > 0) + 0.5 * (delta == 0))),
            }
        )
        ctx.log(f"ccs: loss {loss:.4f}, training row accuracy {meta['train_row_accuracy']:.3f}")
        tensors = {
            "w": torch.tensor(w, dtype=torch.float32),
            "b": torch.tensor([b], dtype=torch.float32),
            "mu_yes": torch.tensor(mu_yes, dtype=torch.float32),
            "mu_no": torch.tensor(mu_no, dtype=torch.float32),
        }
        return InterventionState(meta=meta, tensors=tensors)

    # ------------------------------------------------------------ scoring

    def score_pairs(
        self,
        ctx: InterventionContext,
        state: InterventionState,
        pairs: Sequence[Pair],
        config: InterventionConfig,
    ) -> ScoredPairs:
        cfg = self.check_config(config)
        if state.meta.get("mode") != cfg.mode:
            from genies.errors import StoreError

            raise StoreError(f"the ccs state was fitted in mode {state.meta.get('mode')!r}, not {cfg.mode!r}")
        if not pairs:
            return ScoredPairs([], np.zeros(0), info={"mode": cfg.mode})
        if cfg.mode == "upstream":
            return self._score_upstream(ctx, state, pairs, cfg)
        check_state(self.name, state, ("w", "b", "mu_yes", "mu_no"), ("sign", "scale"))
        texts, x_yes, x_no = _rows(ctx, pairs, cfg.mode)
        where = {t: i for i, t in enumerate(texts)}
        t = {k: v.double().numpy() for k, v in state.tensors.items()}
        c = yes_confidence(x_yes - t["mu_yes"], x_no - t["mu_no"], t["w"], float(t["b"][0]))
        c = c if state.meta["sign"] > 0 else 1.0 - c
        delta = np.array([c[where[(p.prompt, p.correct)]] - c[where[(p.prompt, p.incorrect)]] for p in pairs])
        info = {k: state.meta[k] for k in ("mode", "comparable", "sign", "train_row_accuracy", "ccs_loss")}
        return ScoredPairs([p.id for p in pairs], sigmoid(state.meta["scale"] * delta), info=info)

    def _score_upstream(
        self, ctx: InterventionContext, state: InterventionState, pairs: Sequence[Pair], cfg: CCSConfig
    ) -> ScoredPairs:
        check_state(self.name, state, ("train_yes", "train_no"), ("mode",))
        ty = state.tensors["train_yes"].double().numpy()
        tn = state.tensors["train_no"].double().numpy()
        w, b, loss = fit_ccs_probe(ty - ty.mean(0), tn - tn.mean(0), cfg, ctx.seed)  # refit, label-free
        texts, x_yes, x_no = _rows(ctx, pairs, cfg.mode)
        where = {t: i for i, t in enumerate(texts)}
        c = yes_confidence(x_yes - x_yes.mean(0), x_no - x_no.mean(0), w, b)  # the test set's own means
        pred_correct = c < 0.5  # upstream: predict label 1 when c < 0.5
        ok_c = np.array([pred_correct[where[(p.prompt, p.correct)]] for p in pairs], dtype=float)
        ok_i = np.array([not pred_correct[where[(p.prompt, p.incorrect)]] for p in pairs], dtype=float)
        p = 0.5 * (ok_c + ok_i)
        acc = float(p.mean())
        flipped = acc < 0.5
        if flipped:  # the sign is chosen on the test labels: accuracy >= 0.5 by construction
            p = 1.0 - p
        info = {
            "mode": "upstream",
            "comparable": False,
            "row_accuracy": max(acc, 1 - acc),
            "sign_flipped_on_test_labels": flipped,
            "ccs_loss": loss,
        }
        return ScoredPairs([q.id for q in pairs], p, info=info)
