"""A pairwise (Bradley–Terry) reward model on a causal LM's backbone, and its resumable training loop.

Used by ``lora_fine_tune``, ``prompt_tuning`` and ``full_fine_tune`` (upstream-reference §4.3–§4.5,
with the §5.6 fix). The reward of a text is a scalar head ``w · h`` on the backbone's final (normed)
hidden state ``h`` at an explicit position: the **last real token**, which is the appended EOS of
``prompt ⊕ response + EOS`` (tokenised as upstream's scorer, no special tokens). Sequences are
right-padded and the attention mask is built from true lengths, so with causal attention a reward
never depends on padding or on the other sequences of its batch (upstream pooled at "first pad id
− 1", which with pad == EOS and left padding moved with the batch's longest row).

* ``reward_head="linear"`` (default, upstream): the head above. ``"logprob"``: the reward is the
  model's own judgement, ``β · Σ log p(response + EOS | prompt)`` through the (adapted) LM head, with
  a trained scalar β (init ``logprob_scale_init``, 0.1). Before the first step it ranks pairs exactly
  as ``zero_shot`` does, so training starts from the model's knowledge instead of a random head
  (``logprob_rewards``).
* ``num_labels=1``: one scalar per text. Upstream's two-logit head with the loss averaged over both
  columns is the same model in expectation (§5.6); the loss is upstream's ``−log σ(r_c − r_r)``.
* The backbone (``model.base_model``: ``LlamaModel`` of a ``LlamaForCausalLM``) is called directly,
  so the vocabulary projection is never computed; LoRA layers injected into its modules are used.
* p(correct) = σ(r_correct − r_incorrect), in float32.

``train_reward_model`` is a plain loop (AdamW, constant LR, gradient clipping as upstream §3.8) rather
than the HF Trainer because resume-after-kill must end with bit-identical weights: every random choice
(batch order, dropout) derives from ``(seed, micro-batch index)``, and a checkpoint is one safetensors
file (parameters, AdamW moments, step, log in its metadata) written atomically — no pickle.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from genies.errors import ConfigError
from genies.hashing import content_hash
from genies.io import atomic_path
from genies.models.kernels import deterministic_attention, thread_invariant_backward

if TYPE_CHECKING:
    import torch

    from genies.api.context import InterventionContext
    from genies.data.schema import Pair

CHECKPOINT_FILE = "reward-checkpoint.safetensors"
LOG_FILE = "train_log.jsonl"
Tokens = list[int]
# rewards of token sequences [n], given each one's first response position (its prompt's length)
RewardFn = Callable[[Sequence[Tokens], Sequence[int]], "torch.Tensor"]


class EncodedPair(NamedTuple):
    """One training/scoring pair as token ids: ``tok(prompt) ⊕ tok(response + EOS)`` for each side."""

    chosen: Tokens
    rejected: Tokens
    start: int  # the prompt's length = the first response token, the same on both sides

    @property
    def seqs(self) -> tuple[Tokens, Tokens]:
        return self.chosen, self.rejected


# ---------------------------------------------------------------- tokens and rewards


def encode_pairs(ctx: InterventionContext, pairs: Sequence[Pair]) -> list[EncodedPair]:
    """The pairs tokenised as upstream's scorer does (§4.1): ``tok(prompt) ⊕ tok(response + EOS)``."""
    requests = [(p.prompt, r) for p in pairs for r in (p.correct, p.incorrect)]
    enc = ctx.engine.encode(requests)
    seqs = [list(a) + list(b) for a, b in enc]
    return [EncodedPair(seqs[2 * i], seqs[2 * i + 1], len(enc[2 * i][0])) for i in range(len(pairs))]


def flatten(part: Sequence[EncodedPair]) -> tuple[list[Tokens], list[int]]:
    """A forward's sequences (chosen, rejected interleaved) and their response starts."""
    return [s for pair in part for s in pair.seqs], [pair.start for pair in part for _ in range(2)]


def backbone_of(model: Any) -> Any:
    """The transformer under a causal LM (``base_model_prefix``), without its vocabulary head."""
    base = getattr(model, "base_model", None)
    return base if base is not None and base is not model else model


def hidden_states(
    backbone: Any, seqs: Sequence[Tokens], device: Any, *, prefix: torch.Tensor | None = None
) -> tuple[torch.Tensor, int]:
    """The backbone's final hidden states ``[n, V + T, D]`` of right-padded ``seqs``, and ``V``.

    ``prefix`` (prompt tuning) is ``[V, D]`` virtual-token embeddings put in front of every
    sequence (V = 0 without one). The mask comes from true lengths and attention is causal, so
    row i's states at its real positions never depend on the other rows or on padding.
    """
    import torch

    lengths = torch.tensor([len(s) for s in seqs], device=device)
    width = int(lengths.max())
    ids = torch.zeros(len(seqs), width, dtype=torch.long, device=device)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    mask = (torch.arange(width, device=device)[None, :] < lengths[:, None]).long()  # [n, T]
    with deterministic_attention(device):  # thread-invariant on CPU (genies.models.kernels)
        if prefix is None:
            out = backbone(input_ids=ids, attention_mask=mask, use_cache=False)
            return out.last_hidden_state, 0
        emb = backbone.get_input_embeddings()(ids)  # [n, T, D]
        pre = prefix.to(emb.dtype)[None].expand(len(seqs), -1, -1)  # [n, V, D]
        ones = torch.ones(len(seqs), pre.shape[1], dtype=mask.dtype, device=device)
        mask = torch.cat([ones, mask], 1)
        out = backbone(inputs_embeds=torch.cat([pre, emb], 1), attention_mask=mask, use_cache=False)
        return out.last_hidden_state, int(pre.shape[1])


def rewards(
    backbone: Any,
    head: torch.Tensor,
    seqs: Sequence[Tokens],
    *,
    prefix: torch.Tensor | None = None,
) -> torch.Tensor:
    """Float32 rewards ``[n]`` of token sequences: ``head [D] · h`` at each one's last real token."""
    import torch

    hidden, v = hidden_states(backbone, seqs, head.device, prefix=prefix)  # [n, V + T, D]
    last = torch.tensor([len(s) - 1 + v for s in seqs], device=head.device)
    h = hidden[torch.arange(len(seqs), device=head.device), last].float()  # [n, D]
    return h @ head.float()


def logprob_rewards(
    backbone: Any,
    lm_head: Any,
    scale: torch.Tensor,
    seqs: Sequence[Tokens],
    starts: Sequence[int],
    *,
    prefix: torch.Tensor | None = None,
    softcap: float | None = None,
) -> torch.Tensor:
    """Float32 rewards ``[n]``: ``β · Σ_t log p(x_t | x_<t)`` over each sequence's response tokens.

    ``scale`` is β ``[1]``; ``starts[i]`` is sequence i's first response token, so the sum runs over
    ``response + EOS`` given the prompt: the quantity ``zero_shot`` compares (upstream §4.1; a token
    at position 0 has no context and is not scored, as upstream). Only those positions go through the
    vocabulary projection, in float32 (``genies.models.reductions.head_logprobs``).
    """
    import torch

    from genies.models.reductions import head_logprobs

    device = scale.device
    hidden, v = hidden_states(backbone, seqs, device, prefix=prefix)  # [n, V + T, D]
    rows, pos, targets = [], [], []
    for i, (s, st) in enumerate(zip(seqs, starts, strict=True)):
        ts = range(max(st, 1), len(s))  # predicted tokens; position t-1 (+V) predicts x_t
        rows += [i] * len(ts)
        pos += [t - 1 + v for t in ts]
        targets += [s[t] for t in ts]
    rows_t = torch.tensor(rows, dtype=torch.long, device=device)
    h = hidden[rows_t, torch.tensor(pos, dtype=torch.long, device=device)]  # [N, D]
    lp = head_logprobs(lm_head, h, torch.tensor(targets, dtype=torch.long, device=device), softcap)  # [N]
    sums = torch.zeros(len(seqs), dtype=torch.float32, device=device).index_add(0, rows_t, lp)
    return sums * scale.float()


def p_correct(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> np.ndarray:
    """σ(r_c − r_r) in float32, as float64 numbers for the metrics."""
    import torch

    return torch.sigmoid(r_chosen.float() - r_rejected.float()).double().cpu().numpy()


def score_encoded(
    reward_fn: RewardFn,
    encoded: Sequence[EncodedPair],
    *,
    batch_size: int,
    advance: Callable[[int], None] = lambda n: None,
) -> np.ndarray:
    """p(correct) of every encoded pair (``batch_size`` pairs per forward; never changes a number
    beyond float rounding)."""
    import torch

    out: list[np.ndarray] = []
    with torch.no_grad():
        for start in range(0, len(encoded), batch_size):
            chunk = encoded[start : start + batch_size]
            r = reward_fn(*flatten(chunk))  # chosen, rejected interleaved
            out.append(p_correct(r[0::2], r[1::2]))
            advance(len(chunk))
    return np.concatenate(out) if out else np.zeros(0)


def init_head(dim: int, seed: int) -> torch.Tensor:
    """The scalar head ``[D]``: N(0, 0.02²) like a HF sequence-classification ``score`` layer, seeded."""
    import torch

    g = torch.Generator().manual_seed(int(seed) & 0x7FFFFFFFFFFFFFFF)
    return torch.randn(dim, generator=g) * 0.02


# ---------------------------------------------------------------- training


@dataclass(frozen=True)
class TrainSettings:
    num_train_steps: int
    learning_rate: float
    batch_size: int
    grad_accum: int = 1
    max_grad_norm: float | None = 0.3
    weight_decay: float = 0.0
    log_every: int = 10
    checkpoint_every: int = 10
    forward_pairs: int | None = None  # pairs per forward inside a micro-batch (None: all of them)


@dataclass
class TrainResult:
    log: list[dict[str, Any]] = field(default_factory=list)
    resumed_from: int = 0
    seconds: float = 0.0
    tokens: int = 0


def _u64(*parts: Any) -> int:
    return int(content_hash(list(parts), 16), 16)


class _Perms:
    """Pair positions of micro-batches: consecutive slices of an endless stream of seeded epoch
    permutations, so any micro-batch is computable on its own (resume needs no RNG state)."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self._cache = n, seed, {}

    def batch(self, index: int, size: int) -> list[int]:
        out = []
        for t in range(index * size, (index + 1) * size):
            epoch, pos = divmod(t, self.n)
            if epoch not in self._cache:
                self._cache = {
                    epoch: np.random.default_rng([self.seed & 0xFFFFFFFF, epoch]).permutation(self.n)
                }
            out.append(int(self._cache[epoch][pos]))
        return out


def _save_checkpoint(
    path: Path, params: dict[str, torch.Tensor], opt: Any, names: list[str], meta: dict
) -> None:
    from safetensors.torch import save_file

    tensors = {f"p.{k}": v.detach().contiguous().cpu().clone() for k, v in params.items()}
    state = opt.state_dict()["state"]
    for i, name in enumerate(names):
        for k, v in state.get(i, {}).items():
            tensors[f"o.{name}.{k}"] = v.detach().contiguous().cpu().clone().reshape(v.shape)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"genies": json.dumps(meta)})


def _load_checkpoint(path: Path, fingerprint: str) -> tuple[dict[str, torch.Tensor], dict] | None:
    from safetensors import safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), "pt") as f:
            meta = json.loads((f.metadata() or {})["genies"])
        tensors = load_file(str(path))
    except (OSError, ValueError, KeyError, RuntimeError):
        return None  # absent, truncated or foreign: start over
    return (tensors, meta) if meta.get("fingerprint") == fingerprint else None


@contextlib.contextmanager
def seeded_torch(seed: int) -> Iterator[None]:
    """Run the block with torch's global RNG seeded, restoring the caller's RNG state afterwards."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed & 0x7FFFFFFFFFFFFFFF)
        yield


def train_reward_model(
    ctx: InterventionContext,
    params: dict[str, torch.Tensor],
    reward_fn: RewardFn,
    encoded: Sequence[EncodedPair],
    settings: TrainSettings,
    *,
    fingerprint: str,
    what: str = "training",
) -> TrainResult:
    """Train ``params`` (name → leaf tensor with ``requires_grad``) on the Bradley–Terry loss.

    One optimizer step = ``grad_accum`` micro-batches of ``batch_size`` pairs. Every
    ``checkpoint_every`` steps the parameters, AdamW moments and log go to ``ctx.checkpoint_dir``; a
    checkpoint with the same ``fingerprint`` (config + data + seed) is resumed from, giving the same
    final weights as an uninterrupted run. Every ``log_every`` steps the mean loss and source
    accuracy (chosen reward > rejected, ties ½) over those steps are logged.
    """
    import torch

    if not encoded:
        raise ConfigError("no training pairs: the training split is empty after length filtering")
    names = list(params)
    device = params[names[0]].device
    opt = torch.optim.AdamW(
        [params[n] for n in names], lr=settings.learning_rate, weight_decay=settings.weight_decay
    )
    result = TrainResult()
    start = 0
    window: list[tuple[float, float]] = []
    ckpt = ctx.checkpoint_dir / CHECKPOINT_FILE
    loaded = _load_checkpoint(ckpt, fingerprint)
    if loaded is not None:
        tensors, meta = loaded
        with torch.no_grad():
            for n in names:
                params[n].copy_(tensors[f"p.{n}"])
        state = {
            i: {k.rsplit(".", 1)[1]: v for k, v in tensors.items() if k.startswith(f"o.{n}.")}
            for i, n in enumerate(names)
        }
        state = {i: s for i, s in state.items() if s}
        sd = opt.state_dict()
        opt.load_state_dict({"state": state, "param_groups": sd["param_groups"]})
        start, result.log = int(meta["step"]), list(meta["log"])
        window = [tuple(w) for w in meta.get("window", [])]
        result.resumed_from = start
        ctx.log(f"{what}: resuming from step {start} of {settings.num_train_steps}")
    # the JSONL log holds exactly the entries of the steps the weights have seen (a kill between a log
    # line and the next checkpoint would otherwise leave lines that the resumed run writes again)
    log_path = ctx.checkpoint_dir / LOG_FILE
    log_path.write_text("".join(json.dumps(e) + "\n" for e in result.log), encoding="utf-8")
    perms = _Perms(len(encoded), _u64(ctx.seed, "reward-batches"))
    t0 = time.perf_counter()
    with ctx.progress(settings.num_train_steps, what) as advance:
        advance(start)
        for step in range(start, settings.num_train_steps):
            opt.zero_grad(set_to_none=True)
            losses, accs = 0.0, 0.0
            for a in range(settings.grad_accum):
                m = step * settings.grad_accum + a
                chunk = [encoded[i] for i in perms.batch(m, settings.batch_size)]
                result.tokens += sum(len(s) for pair in chunk for s in pair.seqs)
                for seed, part in _forwards(
                    chunk, settings.forward_pairs, _u64(ctx.seed, "reward-dropout", m)
                ):
                    with seeded_torch(seed):
                        r = reward_fn(*flatten(part))
                    diff = r[0::2] - r[1::2]
                    loss = -torch.nn.functional.logsigmoid(diff).mean()
                    frac = len(part) / len(chunk)  # this forward's share of the micro-batch mean
                    with thread_invariant_backward(device):
                        (loss * frac / settings.grad_accum).backward()  # frac 1.0: exactly as before
                    losses += float(loss.detach()) * frac / settings.grad_accum
                    acc = float(((diff > 0).float() + 0.5 * (diff == 0).float()).mean())
                    accs += acc * frac / settings.grad_accum
            if settings.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_([params[n] for n in names], settings.max_grad_norm)
            opt.step()
            window.append((losses, accs))
            done = step + 1
            if done % settings.log_every == 0 or done == settings.num_train_steps:
                entry = {
                    "step": done,
                    "loss": float(np.mean([w[0] for w in window])),
                    "source_accuracy": float(np.mean([w[1] for w in window])),
                    "lr": settings.learning_rate,
                }
                result.log.append(entry)
                window = []
                _append_jsonl(log_path, entry)
            if done % settings.checkpoint_every == 0 and done < settings.num_train_steps:
                meta = {"fingerprint": fingerprint, "step": done, "log": result.log, "window": window}
                _save_checkpoint(ckpt, params, opt, names, meta)
            advance(1)
    result.seconds = time.perf_counter() - t0
    if not all(math.isfinite(e["loss"]) for e in result.log):
        raise ConfigError(f"{what} diverged (non-finite loss); lower learning_rate")
    return result


def _forwards(
    chunk: list[EncodedPair], forward_pairs: int | None, seed: int
) -> list[tuple[int, list[EncodedPair]]]:
    """A micro-batch's forward passes as ``(dropout seed, pairs)``.

    ``forward_pairs`` None (or ≥ the micro-batch): one forward of every pair, padded to the longest
    sequence, as upstream. Smaller: the pairs sorted by length (stable) and cut into forwards of at
    most ``forward_pairs`` pairs whose gradients are summed with their share of the mean, so the
    loss is the same function; peak activation memory and padding shrink with the forward, at the
    price of smaller matmuls. Each forward's dropout is seeded from the micro-batch's seed and its
    position, so a run is still reproducible (its masks differ from the one-forward run's).
    """
    if forward_pairs is None or forward_pairs >= len(chunk):
        return [(seed, chunk)]
    order = sorted(range(len(chunk)), key=lambda i: max(len(chunk[i][0]), len(chunk[i][1])))
    ranked = [chunk[i] for i in order]
    starts = range(0, len(ranked), forward_pairs)
    return [(_u64(seed, k), ranked[s : s + forward_pairs]) for k, s in enumerate(starts)]


def _append_jsonl(path: Path, entry: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")
