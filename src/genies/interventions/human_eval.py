"""``human_eval``: a person labels pairs in the terminal; the judgements are stored as an evaluation.

Upstream-reference §4.13 showed the correct response always as "A" (so its 7 stored runs measure
nothing); here each pair's A/B order is drawn from a generator seeded by ``(ctx.seed, pair id)``, the
order is recorded (``info["correct_label"]``) with the answers (``info["answers"]``), and the
evaluation goes through the store like any other (a rerun reuses it; a different ``annotator`` is a
different evaluation). Keys: ``A`` / ``B`` pick a response, ``P`` passes (p = 0.5, a tie), ``Q``
stops (nothing is stored). p(correct) is 1 for a right pick and 0 for a wrong one.

Run it with one process and no progress bar, e.g.
``genies run -i human_eval --suite test --limit 20 --no-progress --set intervention.annotator=me``.
Input is read from standard input (a terminal, or a pipe for tests and scripted replays); prompts go
to standard error. Nothing is trained and no model is loaded for it.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar, TextIO

import numpy as np
import pydantic

from genies.api.intervention import (
    Intervention,
    InterventionConfig,
    InterventionState,
    Requirements,
    ScoredPairs,
    scored_pairs,
)
from genies.errors import GeniesError, StoreError
from genies.hashing import sha256_text
from genies.interventions.registry import register_intervention

if TYPE_CHECKING:
    from genies.api.context import InterventionContext
    from genies.data.schema import Pair, Split


class HumanEvalConfig(InterventionConfig):
    annotator: str = pydantic.Field("", description="Who labels (part of the key: one evaluation each).")
    max_chars: int = pydantic.Field(4000, ge=100, description="Characters shown per text (display only).")


def correct_is_a(seed: int, pair: Pair) -> bool:
    """Whether the correct response is shown as A: a fair coin seeded by (seed, pair id, prompt)."""
    tag = int(sha256_text(f"genies.human_eval\0{pair.id}\0{pair.prompt}")[:16], 16)
    return bool(np.random.default_rng([int(seed) & 0xFFFFFFFFFFFFFFFF, tag]).random() < 0.5)


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[:n] + f" … [{len(text) - n} more characters]"


def label_pairs(
    pairs: Sequence[Pair],
    seed: int,
    *,
    max_chars: int = 4000,
    inp: TextIO | None = None,
    out: TextIO | None = None,
) -> tuple[np.ndarray, list[str], list[str]]:
    """Ask for a judgement of every pair; return p(correct), the A/B label of each correct response and
    the answers given (``A``/``B``/``P``)."""
    inp, out = inp or sys.stdin, out or sys.stderr
    p, labels, answers = np.empty(len(pairs)), [], []
    for i, pair in enumerate(pairs):
        a_first = correct_is_a(seed, pair)
        a, b = (pair.correct, pair.incorrect) if a_first else (pair.incorrect, pair.correct)
        out.write(
            f"\n=== pair {i + 1}/{len(pairs)} ({pair.id}) ===\nPROMPT:\n{_clip(pair.prompt, max_chars)}\n"
        )
        out.write(f"--- A ---\n{_clip(a, max_chars)}\n--- B ---\n{_clip(b, max_chars)}\n")
        while True:
            out.write("Which response is better? [A/B, P = pass, Q = quit]: ")
            out.flush()
            line = inp.readline()
            if not line:
                raise GeniesError(
                    f"human_eval: input ended after {i} of {len(pairs)} judgements; nothing stored"
                )
            answer = line.strip().upper()
            if answer in ("A", "B", "P"):
                break
            if answer == "Q":
                raise GeniesError(f"human_eval: stopped after {i} of {len(pairs)} judgements; nothing stored")
            out.write("please answer A, B, P or Q\n")
        label = "A" if a_first else "B"
        p[i] = 0.5 if answer == "P" else float(answer == label)
        labels.append(label)
        answers.append(answer)
    return p, labels, answers


@register_intervention("human_eval")
class HumanEval(Intervention):
    """Interactive terminal labelling, stored as an evaluation."""

    Config: ClassVar[type[InterventionConfig]] = HumanEvalConfig

    def requirements(self, config: InterventionConfig) -> Requirements:
        return Requirements(
            train_data=False, fit_model=False, score_model=False, result_neutral=frozenset({"max_chars"})
        )

    def fit(self, ctx: InterventionContext, train: Split, config: InterventionConfig) -> InterventionState:
        self.check_config(config)
        return InterventionState(meta={"intervention": self.name})

    def score_pairs(
        self,
        ctx: InterventionContext,
        state: InterventionState,
        pairs: Sequence[Pair],
        config: InterventionConfig,
    ) -> ScoredPairs:
        cfg = self.check_config(config)
        if state.meta.get("intervention") != self.name:
            raise StoreError("not a human_eval state")
        p, labels, answers = label_pairs(pairs, ctx.seed, max_chars=cfg.max_chars)
        return scored_pairs(pairs, p, annotator=cfg.annotator, correct_label=labels, answers=answers)
