"""Scoring engine: log-probability of a response given a prompt, exact and fast.

What is scored (upstream §4.1, exactly): the summed log-probability of ``tok(response + eos)`` given
``tok(prompt)``, both tokenised separately with ``add_special_tokens=False`` (no BOS; the literal
eos string maps to the eos id). An empty prompt would leave the first response token without any
context (upstream then reads a padding position); we use the BOS token (else EOS) as a one-token
context instead, and report ``prompt_tokens=1``.

How it is made fast without changing results:

* requests are grouped by prompt, and each prompt with its responses becomes one *token tree*
  (prefix sharing): the prompt and every response prefix that several responses share (e.g. two
  code answers that differ near the end, or the same preferred answer in three pairs) are computed
  once. A tree is one row of the batch; each node gets its depth as position id and a 4-D attention
  mask lets it see exactly its ancestors, so its hidden state is the one it has in the plain
  sequence ``prompt + response``. Duplicate requests are scored once. (``strategy="cache"``
  instead runs each prompt plus the prefix all its responses share once, and the rest of each
  response as its own row against a repeated KV cache: less attention work, no deeper sharing; it
  is the default for sliding-window models, whose own masks a ready 4-D mask would bypass, and
  requests longer than the window use the reference path);
* the vocabulary projection (``lm_head``), which dominates small models, is applied only to the
  hidden states that predict response tokens, and the log-softmax runs in float32 chunks;
* trees are sorted by size so padding stays small, and batches are bounded by a token budget
  derived from a memory budget (or an explicit ``batch_size`` = responses per batch);
* everything runs under ``torch.inference_mode``; padding is on the right and masked, and sums run
  in token order in float64, so scores do not depend on batch size, batch composition, padding
  side or request order (up to float rounding of the forward, ~1e-5 nats in float32).

``Scorer(lm, reference=True)`` (or :func:`score_reference`) is the naive oracle used by tests and the
benchmark: one unbatched forward per request with full-vocabulary logits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from genies.errors import ConfigError, ModelError

if TYPE_CHECKING:
    import torch

    from genies.models.loading import LoadedModel

ScoringMethod = Literal["upstream", "mean", "sum"]
SCORING_METHODS: tuple[str, ...] = ("upstream", "mean", "sum")
_LM_HEAD_CHUNK = 512  # rows of hidden states projected to the vocabulary at once (bounds memory)


@dataclass(frozen=True)
class ResponseScore:
    """Summed log-prob (nats) of a response's ``n_tokens`` tokens (incl. EOS) after ``prompt_tokens``."""

    logprob_sum: float
    n_tokens: int
    prompt_tokens: int


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -x))


def pair_p_correct(
    correct: Sequence[ResponseScore], incorrect: Sequence[ResponseScore], method: ScoringMethod = "upstream"
) -> np.ndarray:
    """P(correct preferred) per pair.

    * ``upstream``: softmax of the two summed scores divided by the shared denominator L−1, where L
      is the padded pair length (prompt + longer response): ``σ((S_c − S_w)/(L−1))``.
    * ``mean``: per-token mean log-probs, ``σ(S_c/n_c − S_w/n_w)``.
    * ``sum``: summed log-probs without the temperature, ``σ(S_c − S_w)``.
    """
    if len(correct) != len(incorrect):
        raise ValueError(f"{len(correct)} correct vs {len(incorrect)} incorrect scores")
    if method not in SCORING_METHODS:
        raise ConfigError(f"unknown scoring method {method!r}; choose from {', '.join(SCORING_METHODS)}")
    if not correct:
        return np.zeros(0, dtype=np.float64)
    sc = np.array([s.logprob_sum for s in correct], dtype=np.float64)
    sw = np.array([s.logprob_sum for s in incorrect], dtype=np.float64)
    if method == "sum":
        return _sigmoid(sc - sw)
    if method == "mean":
        nc = np.array([s.n_tokens for s in correct], dtype=np.float64)
        nw = np.array([s.n_tokens for s in incorrect], dtype=np.float64)
        return _sigmoid(sc / nc - sw / nw)
    length = np.array(
        [
            max(c.prompt_tokens + c.n_tokens, w.prompt_tokens + w.n_tokens)
            for c, w in zip(correct, incorrect, strict=True)
        ],
        dtype=np.float64,
    )
    return _sigmoid((sc - sw) / np.maximum(length - 1.0, 1.0))


@dataclass
class _Group:
    """One prompt and (some of) its responses: the unit that shares a KV cache."""

    context: list[int]
    items: list[tuple[int, list[int]]]  # (request index, response ids)

    @property
    def cost(self) -> int:
        return len(self.context) + max(len(r) for _, r in self.items)


class _Tree:
    """One prompt and some of its responses as a token tree: every distinct prefix appears once.

    Nodes are laid out prompt first, then each response's input tokens (all but its last, which is
    only a target) where they are not already in the tree. A node's position id is its depth and it
    attends exactly to its ancestors, so its hidden state equals that of the same token in the plain
    sequence ``prompt + response`` — the tree computes the prompt and shared response prefixes once.
    """

    def __init__(self, context: list[int], items: list[tuple[int, list[int]]]) -> None:
        self.items = items
        self.tokens: list[int] = list(context)
        self.parent: list[int] = [i - 1 for i in range(len(context))]
        self.depth: list[int] = list(range(len(context)))
        children: dict[tuple[int, int], int] = {}
        # scored (node, target) pairs, deduplicated; each response lists its pairs in token order
        self.pairs: list[tuple[int, int]] = []
        pair_index: dict[tuple[int, int], int] = {}
        self.response_pairs: list[list[int]] = []
        for _, resp in items:
            node = len(context) - 1
            own = []
            for t, tok in enumerate(resp):
                own.append(pair_index.setdefault((node, tok), len(pair_index)))
                if len(pair_index) > len(self.pairs):
                    self.pairs.append((node, tok))
                if t == len(resp) - 1:
                    break
                nxt = children.get((node, tok))
                if nxt is None:
                    nxt = children[(node, tok)] = len(self.tokens)
                    self.tokens.append(tok)
                    self.parent.append(node)
                    self.depth.append(self.depth[node] + 1)
                node = nxt
            self.response_pairs.append(own)

    @property
    def width(self) -> int:
        return len(self.tokens)

    def allowed(self, width: int):
        """Boolean [width, width] attention pattern: ancestors and self (padding sees only itself)."""
        import torch

        n = self.width
        allow = torch.zeros((width, width), dtype=torch.bool)
        n_ctx = next((i for i, p in enumerate(self.parent) if i > 0 and p != i - 1), n)
        allow[:n_ctx, :n_ctx] = torch.ones((n_ctx, n_ctx), dtype=torch.bool).tril()
        for i in range(n_ctx, n):
            allow[i] = allow[self.parent[i]]
            allow[i, i] = True
        idx = torch.arange(n, width)
        allow[idx, idx] = True
        return allow


class Scorer:
    """Scores ``(prompt, response)`` requests with a loaded causal LM (see module docstring)."""

    def __init__(
        self,
        lm: LoadedModel,
        *,
        batch_size: int | None = None,
        progress: bool = False,
        reference: bool = False,
        memory_budget_mb: int | None = None,
        strategy: Literal["auto", "cache", "tree"] = "auto",
    ) -> None:
        if getattr(lm, "kind", "causal_lm") != "causal_lm":
            raise ModelError(f"model {lm.name!r} is an encoder; scoring needs a causal language model")
        if strategy not in ("auto", "cache", "tree"):
            raise ConfigError(f"unknown scoring strategy {strategy!r}; use 'auto', 'cache' or 'tree'")
        if batch_size is not None and batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1 (got {batch_size})")
        self.lm = lm
        self.batch_size = batch_size
        self.progress = progress
        self.reference = reference
        self.memory_budget_mb = memory_budget_mb
        if strategy == "auto":
            # token trees pass a ready 4-D mask, which bypasses a model's own sliding-window masks
            cfg = lm.model.config
            window = getattr(getattr(cfg, "text_config", None) or cfg, "sliding_window", None)
            strategy = "cache" if window else "tree"
        self.strategy = strategy
        self.forward_passes = 0
        self.stats = {"real_tokens": 0, "padded_tokens": 0, "scored_tokens": 0}
        tok = lm.tokenizer
        if tok.eos_token is None or tok.eos_token_id is None:
            raise ModelError(f"the tokenizer of {lm.name!r} has no EOS token; upstream scoring appends EOS")
        self.eos = tok.eos_token
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        bos = tok.bos_token_id
        self._empty_context = [bos if bos is not None else tok.eos_token_id]
        self._checked = False

    # ------------------------------------------------------------ tokenisation

    def fits(self, prompt: str, response: str) -> bool:
        """Upstream §1.5: ``tok(prompt + response + eos)`` with default special tokens fits the model."""
        return len(self.lm.tokenizer(prompt + response + self.eos)["input_ids"]) <= self.lm.max_length

    def encode(self, requests: Sequence[tuple[str, str]]) -> list[tuple[list[int], list[int]]]:
        """(context ids, response ids) per request, tokenised exactly as upstream (no special tokens)."""
        tok = self.lm.tokenizer
        prompts = sorted({p for p, _ in requests})
        ptoks = (
            dict(zip(prompts, tok(prompts, add_special_tokens=False)["input_ids"], strict=True))
            if prompts
            else {}
        )
        rtoks = (
            tok([r + self.eos for _, r in requests], add_special_tokens=False)["input_ids"]
            if requests
            else []
        )
        out = []
        for (p, _), r in zip(requests, rtoks, strict=True):
            ctx = list(ptoks[p]) or list(self._empty_context)
            out.append((ctx, list(r)))
        return out

    # ------------------------------------------------------------ public API

    def score(self, requests: Sequence[tuple[str, str]]) -> list[ResponseScore]:
        """Score each ``(prompt, response)``; the result is in request order."""
        for i, req in enumerate(requests):
            if not (isinstance(req, tuple | list) and len(req) == 2 and all(isinstance(x, str) for x in req)):
                raise ConfigError(f"request {i} is not a (prompt, response) pair of strings")
        if not requests:
            return []
        encoded = self.encode(requests)
        for i, (ctx, resp) in enumerate(encoded):
            if len(ctx) + len(resp) > self.lm.max_length:
                raise ModelError(
                    f"request {i} has {len(ctx) + len(resp)} tokens, more than the model's {self.lm.max_length}",
                    hint="drop over-length examples with Scorer.fits first",
                )
        import torch

        with torch.inference_mode():
            if not self.reference:
                self._self_check()  # may switch to the reference path
            if self.reference:
                sums = [self._score_one_reference(ctx, resp) for ctx, resp in self._progress(encoded)]
            else:
                sums = self._score_fast(encoded)
        return [
            ResponseScore(float(s), len(resp), len(ctx)) for s, (ctx, resp) in zip(sums, encoded, strict=True)
        ]

    # ------------------------------------------------------------ reference path

    def _score_one_reference(self, ctx: list[int], resp: list[int]) -> float:
        """One unbatched forward with full logits through the model's own forward (the oracle)."""
        import torch

        ids = torch.tensor([ctx + resp], device=self.lm.device)
        logits = self.lm.model(input_ids=ids).logits[0].float()
        self.forward_passes += 1
        self.stats["real_tokens"] += ids.shape[1]
        self.stats["padded_tokens"] += ids.shape[1]
        self.stats["scored_tokens"] += len(resp)
        logits = logits[len(ctx) - 1 : -1]
        target = torch.tensor(resp, device=logits.device)
        return float(_target_logprobs(logits, target).double().sum())

    # ------------------------------------------------------------ fast path

    def _self_check(self) -> None:
        """The fast path must match the model's own forward, else the reference path is used.

        Checked once per model and strategy (remembered in ``lm.info``) on two responses that share
        a prefix, so tree branching / cache repetition is exercised too.
        """
        if self._checked:
            return
        self._checked = True
        key = f"fast_scoring_ok[{self.strategy}]"
        if key in self.lm.info:
            self.reference = not self.lm.info[key]
            return
        probe = self.encode([("Hello there. ", "General Kenobi!"), ("Hello there. ", "General Grievous.")])
        fast = self._score_fast(probe)
        ref = [self._score_one_reference(*p) for p in probe]
        ok = all(math.isclose(f, r, rel_tol=1e-3, abs_tol=1e-3) for f, r in zip(fast, ref, strict=True))
        self.lm.info[key] = ok
        if not ok:
            import warnings

            warnings.warn(
                f"fast scoring disagrees with {type(self.lm.model).__name__}'s forward ({fast} vs {ref}); "
                "using the slow reference path",
                stacklevel=3,
            )
            self.reference = True
        self.forward_passes = 0
        self.stats = dict.fromkeys(self.stats, 0)

    def _budget(self) -> tuple[int, int]:
        """(max responses per batch, max tokens per batch) from batch_size or a memory budget."""
        import torch

        cfg = self.lm.model.config
        cfg = getattr(cfg, "text_config", None) or cfg
        hidden = int(getattr(cfg, "hidden_size", 1024))
        inter = int(getattr(cfg, "intermediate_size", 4 * hidden))
        layers = int(getattr(cfg, "num_hidden_layers", 24))
        heads = int(getattr(cfg, "num_attention_heads", 16))
        kv_heads = int(getattr(cfg, "num_key_value_heads", heads) or heads)
        head_dim = int(getattr(cfg, "head_dim", None) or hidden // heads)
        nbytes = torch.finfo(self.lm.dtype).bits // 8
        # live activations of one layer, the K/V cache of all layers and an attention-mask row, per token
        per_token = nbytes * (12 * hidden + 4 * inter + 2 * layers * kv_heads * head_dim) + 4 * 2048
        if self.memory_budget_mb is not None:
            budget = self.memory_budget_mb * 2**20
        elif self.lm.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.lm.device)
            budget = int(free * 0.5)
        else:
            budget = 1 << 30
        max_tokens = max(256, min(budget // per_token, 65536 if self.lm.device.type == "cuda" else 4096))
        max_rows = (
            self.batch_size if self.batch_size is not None else (256 if self.lm.device.type == "cuda" else 64)
        )
        return max_rows, max_tokens

    def _batches(self, encoded: list[tuple[list[int], list[int]]]) -> list[list[list[_Tree]]]:
        """Batches of rows of token trees: one tree per prompt (split if it has more responses than a
        batch allows); trees are packed first-fit by decreasing size into rows as wide as the batch's
        widest tree, so short prompts share a row instead of being padded (batches -> rows -> trees)."""
        by_prompt: dict[tuple[int, ...], list[tuple[int, list[int]]]] = {}
        for i, (ctx, resp) in enumerate(encoded):
            by_prompt.setdefault(tuple(ctx), []).append((i, resp))
        max_rows, max_tokens = self._budget()
        trees = [
            _Tree(list(ctx), items[k : k + max_rows])
            for ctx, items in by_prompt.items()
            for k in range(0, len(items), max_rows)
        ]
        trees.sort(key=lambda t: (-t.width, t.items[0][0]))
        batches: list[list[list[_Tree]]] = []
        rows: list[list[_Tree]] = []
        used: list[int] = []
        cap = responses = 0
        for tree in trees:
            n = len(tree.items)
            if rows:
                fit = next((r for r in range(len(rows)) if used[r] + tree.width <= cap), None)
                if responses + n > max_rows or (fit is None and (len(rows) + 1) * cap > max_tokens):
                    batches.append(rows)
                    rows, used = [], []
                elif fit is not None:
                    rows[fit].append(tree)
                    used[fit] += tree.width
                    responses += n
                    continue
            if not rows:
                cap, responses = tree.width, 0
            rows.append([tree])
            used.append(tree.width)
            responses += n
        if rows:
            batches.append(rows)
        return batches

    def _batches_cached(self, encoded: list[tuple[list[int], list[int]]]) -> list[list[_Group]]:
        """Group by prompt, sort by prompt length, and cut into batches under the row and token limits."""
        by_prompt: dict[tuple[int, ...], list[tuple[int, list[int]]]] = {}
        for i, (ctx, resp) in enumerate(encoded):
            by_prompt.setdefault(tuple(ctx), []).append((i, resp))
        groups = [
            _Group(list(ctx), sorted(items, key=lambda it: (-len(it[1]), it[0])))
            for ctx, items in by_prompt.items()
        ]
        groups.sort(key=lambda g: (-len(g.context), -g.cost, g.items[0][0]))
        max_rows, max_tokens = self._budget()
        batches: list[list[_Group]] = []
        cur: list[_Group] = []
        rows = cost = 0
        for group in groups:
            items = group.items
            while items:
                take = items[: max(1, max_rows - rows)]
                take_cost = len(take) * (len(group.context) + len(take[0][1]))
                if cur and (rows + len(take) > max_rows or cost + take_cost > max_tokens):
                    batches.append(cur)
                    cur, rows, cost = [], 0, 0
                    continue
                cur.append(_Group(group.context, take))
                rows += len(take)
                cost += take_cost
                items = items[len(take) :]
        if cur:
            batches.append(cur)
        return batches

    def _progress(self, items):
        if not self.progress:
            return items
        from rich.progress import track

        return track(items, description="scoring", transient=True)

    def _score_fast(self, encoded: list[tuple[list[int], list[int]]]) -> list[float]:
        """Score distinct requests once (duplicates share the result), batch by batch."""
        first_of: dict[tuple[tuple[int, ...], tuple[int, ...]], int] = {}
        owner = [first_of.setdefault((tuple(c), tuple(r)), i) for i, (c, r) in enumerate(encoded)]
        distinct = sorted(set(owner))
        sums = dict.fromkeys(distinct, 0.0)
        cfg = self.lm.model.config
        window = getattr(getattr(cfg, "text_config", None) or cfg, "sliding_window", None)
        if window:  # longer requests would need the model's sliding-window masking: use the oracle
            for i in [i for i in distinct if len(encoded[i][0]) + len(encoded[i][1]) > window]:
                sums[i] = self._score_one_reference(*encoded[i])
                distinct.remove(i)
        todo = [encoded[i] for i in distinct]
        if self.strategy == "tree":
            batches, score = self._batches(todo), self._score_batch
        else:
            batches, score = self._batches_cached(todo), self._score_batch_cached
        for batch in self._progress(batches):
            for k, value in score(batch):
                sums[distinct[k]] = value
        return [sums[owner[i]] for i in range(len(encoded))]

    def _heads(self):
        """(decoder without the vocabulary head, the head); the cache is filled in place by the decoder."""
        model = self.lm.model
        base = (
            model.get_decoder() if hasattr(model, "get_decoder") else getattr(model, model.base_model_prefix)
        )
        return base, model.get_output_embeddings()

    @property
    def _cache_kw(self) -> str:
        """transformers 5 renamed ``past_key_values`` to ``cache``; support both."""
        import inspect

        base, _ = self._heads()
        return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"

    def _logprobs(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """log p(target) for each row of ``hidden``: vocabulary projection + float32 log-softmax, chunked."""
        import torch

        _, lm_head = self._heads()
        cfg = self.lm.model.config
        cap = getattr(cfg, "final_logit_softcapping", None) or getattr(
            getattr(cfg, "text_config", None), "final_logit_softcapping", None
        )
        out = []
        for start in range(0, hidden.shape[0], _LM_HEAD_CHUNK):
            logits = lm_head(hidden[start : start + _LM_HEAD_CHUNK]).float()
            if cap:
                logits = torch.tanh(logits / cap) * cap
            out.append(_target_logprobs(logits, targets[start : start + _LM_HEAD_CHUNK]))
        return torch.cat(out)

    def _forward(
        self, ids: list[list[int]], past_mask: torch.Tensor | None, start: list[int], cache
    ) -> torch.Tensor:
        """Right-padded forward of token rows after an optional cache; returns the last hidden states."""
        import torch

        dev = self.lm.device
        width = max(len(r) for r in ids)
        n = len(ids)
        tid = torch.full((n, width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((n, width), dtype=torch.long)
        for j, row in enumerate(ids):
            tid[j, : len(row)] = torch.tensor(row)
            mask[j, : len(row)] = 1
        pos = torch.tensor(start)[:, None] + torch.arange(width)[None, :]
        if past_mask is not None:
            mask = torch.cat([past_mask, mask], dim=1)
        base, _ = self._heads()
        out = base(
            input_ids=tid.to(dev),
            attention_mask=mask.to(dev),
            position_ids=pos.to(dev),
            use_cache=True,
            **{self._cache_kw: cache},
        )
        self.forward_passes += 1
        self.stats["padded_tokens"] += n * width
        self.stats["real_tokens"] += sum(len(r) for r in ids)
        return out.last_hidden_state

    def _score_batch_cached(self, batch: list[_Group]) -> list[tuple[int, float]]:
        """Score one batch of prompt groups exactly, computing every distinct prefix once.

        1. Each group's context is extended by the longest token prefix that all its responses share
           (e.g. two code answers that differ only near the end); one forward runs all contexts and
           fills a KV cache.
        2. The remaining response tokens run against that cache (rows repeated per response), in
           sub-batches of similar length so padding stays small.
        3. Only hidden states that predict a scored token go through the vocabulary head.
        """
        import copy

        import torch
        from transformers import DynamicCache

        dev = self.lm.device
        shared: list[list[int]] = []
        for g in batch:
            resps = [r for _, r in g.items]
            common = 0
            limit = min(len(r) for r in resps) - 1  # every response keeps >= 1 token of its own
            while common < limit and all(r[common] == resps[0][common] for r in resps):
                common += 1
            shared.append(resps[0][:common])
        ext = [g.context + c for g, c in zip(batch, shared, strict=True)]
        cache = DynamicCache(config=self.lm.model.config)
        h_ctx = self._forward(ext, None, [0] * len(ext), cache)
        lp = h_ctx.shape[1]
        past_mask = torch.zeros((len(ext), lp), dtype=torch.long)
        for gi, e in enumerate(ext):
            past_mask[gi, : len(e)] = 1

        hidden: list[torch.Tensor] = []
        targets: list[int] = []
        n_flat = 0

        def add(h: torch.Tensor, tgt: list[int]) -> list[int]:
            nonlocal n_flat
            hidden.append(h)
            targets.extend(tgt)
            n_flat += len(tgt)
            return list(range(n_flat - len(tgt), n_flat))

        # shared prefix tokens: predicted by context positions len(ctx)-1 ... len(ext)-2
        shared_idx = []
        for gi, (g, c) in enumerate(zip(batch, shared, strict=True)):
            lo = len(g.context) - 1
            shared_idx.append(add(h_ctx[gi, lo : lo + len(c)], c) if c else [])
        rows = [(gi, idx, resp[len(shared[gi]) :]) for gi, g in enumerate(batch) for idx, resp in g.items]
        # each row's first own token: predicted by the last extended-context position
        first_idx = [add(h_ctx[gi, len(ext[gi]) - 1][None], [rem[0]])[0] for gi, _, rem in rows]
        rest_idx: list[list[int]] = [[] for _ in rows]
        order = sorted(
            (j for j, (_, _, rem) in enumerate(rows) if len(rem) > 1), key=lambda j: -len(rows[j][2])
        )
        subs: list[list[int]] = []
        for j in order:  # longest first; cut where padding would exceed a quarter of the sub-batch
            n = len(rows[j][2]) - 1
            if subs:
                longest = len(rows[subs[-1][0]][2]) - 1
                real = sum(len(rows[k][2]) - 1 for k in subs[-1]) + n
                if real >= 0.75 * longest * (len(subs[-1]) + 1):
                    subs[-1].append(j)
                    continue
            subs.append([j])
        for si, sub in enumerate(subs):
            sel = torch.tensor([rows[j][0] for j in sub])
            sub_cache = cache if si == len(subs) - 1 else copy.deepcopy(cache)
            sub_cache.reorder_cache(sel.to(dev))
            ids = [rows[j][2][:-1] for j in sub]
            h = self._forward(ids, past_mask[sel], [len(ext[rows[j][0]]) for j in sub], sub_cache)
            for k, j in enumerate(sub):
                rem = rows[j][2]
                rest_idx[j] = add(h[k, : len(rem) - 1], rem[1:])
            del sub_cache, h
        del cache, h_ctx
        logp = self._logprobs(torch.cat(hidden), torch.tensor(targets, device=dev)).double().cpu().numpy()
        self.stats["scored_tokens"] += len(targets)
        # each response's sum over its tokens in order, so the sum never depends on the batch
        return [
            (idx, float(np.sum(logp[shared_idx[gi] + [first_idx[j]] + rest_idx[j]])))
            for j, (gi, idx, _) in enumerate(rows)
        ]

    def _score_batch(self, batch: list[list[_Tree]]) -> list[tuple[int, float]]:
        """One forward over the batch's rows of token trees; the vocabulary head only where a token is scored."""
        import torch

        dev, dtype = self.lm.device, self.lm.dtype
        widths = [sum(t.width for t in row) for row in batch]
        width = max(widths)
        n = len(batch)
        ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        pos = torch.zeros((n, width), dtype=torch.long)
        allow = torch.zeros((n, width, width), dtype=torch.bool)
        allow[:, torch.arange(width), torch.arange(width)] = True  # padding attends to itself only
        placed = []  # (row, offset, tree)
        for b, row in enumerate(batch):
            off = 0
            for tree in row:
                ids[b, off : off + tree.width] = torch.tensor(tree.tokens)
                pos[b, off : off + tree.width] = torch.tensor(tree.depth)
                allow[b, off : off + tree.width, off : off + tree.width] = tree.allowed(tree.width)
                placed.append((b, off, tree))
                off += tree.width
        mask = torch.zeros((n, 1, width, width), dtype=dtype).masked_fill_(
            ~allow[:, None], torch.finfo(dtype).min
        )
        del allow
        base, _ = self._heads()
        hidden = base(
            input_ids=ids.to(dev), attention_mask=mask.to(dev), position_ids=pos.to(dev), use_cache=False
        )
        hidden = hidden.last_hidden_state
        self.forward_passes += 1
        self.stats["padded_tokens"] += n * width
        self.stats["real_tokens"] += sum(widths)
        rows, cols, targets, starts = [], [], [], []
        for b, off, tree in placed:
            starts.append(len(targets))
            for node, tok in tree.pairs:
                rows.append(b)
                cols.append(off + node)
                targets.append(tok)
        self.stats["scored_tokens"] += len(targets)
        sel = hidden[torch.tensor(rows, device=dev), torch.tensor(cols, device=dev)]
        del hidden
        logp = self._logprobs(sel, torch.tensor(targets, device=dev)).double().cpu().numpy()
        out = []
        for (_, _, tree), start in zip(placed, starts, strict=True):
            for (idx, _), own in zip(tree.items, tree.response_pairs, strict=True):
                # summed in token order, so a response's score never depends on its batch
                out.append((idx, float(np.sum(logp[[start + k for k in own]]))))
        return out


def _target_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log-softmax at the targets, from float32 logits.

    ``logit − logsumexp`` rather than ``log_softmax``: on CPU, torch's float32 log_softmax kernel is
    off by ~2e-5 nats per token (its normaliser accumulates 49k exponentials in float32), while
    logsumexp stays within ~1e-7 of a float64 computation, and only the target column is needed.
    """
    import torch

    logits = logits.float()
    return logits.gather(1, targets[:, None])[:, 0] - torch.logsumexp(logits, dim=-1)


def score_reference(lm: LoadedModel, requests: Sequence[tuple[str, str]]) -> list[ResponseScore]:
    """The naive oracle: one unbatched full-logit forward per request."""
    return Scorer(lm, reference=True).score(requests)
