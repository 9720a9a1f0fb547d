"""Test doubles for the representation interventions: a context whose activations are synthetic.

Every text gets reproducible Gaussian noise (seeded by its sha256) plus, for the preferred response, a
fixed random direction planted at one unit of each site. A method must find it: the planted-direction
tests assert >= 95% accuracy on held-out pairs.
"""

from __future__ import annotations

import contextlib
import hashlib

import numpy as np
import torch

from genies.data.schema import Example, Split
from genies.models.templates import render

L, H, D_HEAD, D = 4, 3, 8, 16
PLANT_LAYER, PLANT_HEAD = 2, 1


def make_split(n: int, *, offset: int = 0, n_responses: int = 2, name: str = "train") -> Split:
    examples = []
    for i in range(n):
        k = i + offset
        responses = [(f"good answer {k}", 1.0)] + [
            (f"bad answer {k}.{j}", 0.0) for j in range(n_responses - 1)
        ]
        examples.append(Example(prompt=f"Question {k}?\n", responses=tuple(responses), index=i))
    return Split(name, examples, "planted")


class PlantedContext:
    """``ctx.activations`` over synthetic activations; counts calls. ``strength`` scales the plant."""

    def __init__(self, *, seed: int = 0, strength: float = 3.0, noise: float = 1.0, ccs_sign: float = 1.0):
        self.seed, self.strength, self.noise, self.ccs_sign = seed, strength, noise, ccs_sign
        g = np.random.default_rng(1234)
        self.dir_head = g.standard_normal(D_HEAD)
        self.dir_head /= np.linalg.norm(self.dir_head)
        self.dir_resid = g.standard_normal(D)
        self.dir_resid /= np.linalg.norm(self.dir_resid)
        self.calls = 0
        self.logs: list[str] = []

    def _one(self, prompt: str, response: str, template: str | None) -> dict[str, np.ndarray]:
        text = render(template, prompt, response)
        rng = np.random.default_rng(int(hashlib.sha256(text.encode()).hexdigest()[:8], 16))
        heads = self.noise * rng.standard_normal((L, H, D_HEAD))
        resid = self.noise * rng.standard_normal((L, D))
        final = self.noise * rng.standard_normal(D)
        good = response.startswith("good")
        yes = template is not None and template.endswith("Yes")
        no = template is not None and template.endswith("No")
        if good:
            heads[PLANT_LAYER, PLANT_HEAD] += self.strength * self.dir_head
            resid[PLANT_LAYER] += self.strength * self.dir_resid
        if yes or no:
            # CCS / CRA: "truth" of the statement "this response is good" is +/- the direction.
            truth = (1.0 if good else -1.0) * (1.0 if yes else -1.0) * self.ccs_sign
            final += self.strength * truth * self.dir_resid
            if no:  # CRA reads yes − no; the plant lives in the Yes variant only
                heads[PLANT_LAYER, PLANT_HEAD] -= self.strength * self.dir_head * float(good)
        return {"heads": heads, "resid": resid, "final": final}

    def activations(self, texts, sites, template=None):
        self.calls += 1
        rows = [self._one(p, r, template) for p, r in texts]
        return {s: torch.tensor(np.stack([row[s] for row in rows]), dtype=torch.float32) for s in sites}

    @contextlib.contextmanager
    def progress(self, total, description):
        yield lambda n=1: None

    def log(self, msg):
        self.logs.append(msg)


def accuracy(scored) -> float:
    p = np.asarray(scored.p_correct)
    return float(np.mean((p > 0.5) + 0.5 * (p == 0.5)))
