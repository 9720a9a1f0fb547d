"""The forward engine: one object per loaded model that runs every forward pass genies needs.

::

    engine = ForwardEngine(lm)
    scores = engine.score([(prompt, response), ...])             # list[ResponseScore], request order
    acts = engine.extract(texts, sites=("resid", "heads"))       # {"resid": [n, L, D], "heads": [n, L, H, d]}

A call goes through four steps, each in its own module:

1. **tokenise** (``genies.models.lengths``, the same rules the planner uses without a model) and
   reject, or drop and count, texts longer than the model's context;
2. **batch** (``genies.models.batching``): identical requests are computed once, requests sharing a
   prompt form one token tree, trees are sorted by width and packed under a token budget;
3. **forward** (``genies.models.forward``): each batch is one flat row through the stock model with
   tree attention (no padding in linear layers), and hooks that read the sites;
4. **reduce** (``genies.models.reductions``): the log-probabilities of response tokens (the vocabulary
   head only where a token is scored), or the sites at each text's last token.

**Exactness.** Scores and activations do not depend on batch size, batch composition, padding side
or order: every token sees exactly its own prefix with its own position ids, and a response's
log-probs are summed in token order in float64 (differences are float rounding of the forward,
~1e-6 in float32). On CPU, attention runs on SDPA's math backend so that results do not depend on
the number of threads either (``deterministic=False`` keeps the fused kernel; see ``genies.models.kernels``). The first call of each path runs a self-check against the model's own unbatched
forward (the reference path) on two texts that share a prefix; if it disagrees, the engine warns
and uses the reference path. The result is remembered on the engine (one engine per loaded model).

**Paths.** Scoring: ``tree`` (default), ``cache`` (prompt + shared response prefix once, each
response's rest against a repeated KV cache through the model's own attention; the default for
configs with a sliding window, as in round 1), ``reference`` (one full-logit forward per request).
Extraction: ``tree`` (default), ``rows`` (right-padded rows through the model's own attention; used
when a model cannot run tree attention), ``reference`` (one text per forward, the model's own
``output_hidden_states`` and an ``o_proj`` hook).
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Hashable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from genies.errors import ConfigError, ModelError
from genies.models.batching import Budget, PromptGroup, build_layout, plan_batches, plan_prompt_groups
from genies.models.forward import (
    SITES,
    Sites,
    TreeAttentionUnsupported,
    TreeState,
    capture,
    decoder_of,
    find_sites,
    tree_attention,
)
from genies.models.lengths import encode_requests, encode_texts
from genies.models.reductions import ResponseScore, final_logit_softcap, head_logprobs, target_logprobs
from genies.models.templates import Text

if TYPE_CHECKING:
    import torch

    from genies.models.loading import LoadedModel

Strategy = Literal["auto", "tree", "cache"]
Overlength = Literal["error", "drop"]
Progress = Callable[[int], None]
_CPU_TREE_TOKENS = 1024  # tokens per forward on CPU: GEMMs are efficient and activations stay in cache
_CPU_ROW_TOKENS = 4096
_GPU_TOKENS = 65536
_PROBE = [("Hello there. ", "General Kenobi!"), ("Hello there. ", "General Grievous.")]
COUNTERS = (
    "forward_passes",
    "real_tokens",  # distinct tokens run through the model
    "padded_tokens",  # tokens run through the linear layers, padding included
    "scored_tokens",  # hidden states projected to the vocabulary
    "read_tokens",  # positions whose activations were read
    "attention_pairs",  # (query, key) pairs causal attention needs for the distinct tokens
    "attention_slots",  # (query, key) pairs computed, masked and padded ones included
    "dropped",  # over-length requests/texts dropped at the caller's request
)


class ForwardEngine:
    """Batching, the forward pass and the reductions for one loaded model (see the module docstring)."""

    def __init__(
        self, lm: LoadedModel, *, memory_budget_mb: int | None = None, deterministic: bool = True
    ) -> None:
        if getattr(lm, "kind", "causal_lm") != "causal_lm":
            raise ModelError(
                f"model {lm.name!r} is an encoder; the forward engine needs a causal language model"
            )
        if memory_budget_mb is not None and memory_budget_mb < 0:
            raise ConfigError(f"memory_budget_mb must be >= 0 (got {memory_budget_mb})")
        self.lm = lm
        self.memory_budget_mb = memory_budget_mb
        self.deterministic = deterministic
        self.counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self.self_checks: dict[str, bool] = {}  # "score:tree" etc. -> the path matched the reference
        self.last_path: str | None = None  # the path the last call used
        self._sites: Sites | None = None
        self._warned: set[str] = set()

    @contextlib.contextmanager
    def _kernels(self) -> Iterator[None]:
        """No autograd; on CPU with ``deterministic`` (the default), attention on SDPA's math backend,
        whose rounding does not depend on the thread count (``genies.models.kernels``)."""
        import torch

        from genies.models.kernels import deterministic_attention

        with torch.inference_mode(), deterministic_attention(self.lm.device, enabled=self.deterministic):
            yield

    # ------------------------------------------------------------ tokenisation

    def encode(self, requests: Sequence[tuple[str, str]]) -> list[tuple[list[int], list[int]]]:
        """(context ids, response ids) per request, tokenised exactly as upstream (no special tokens)."""
        return encode_requests(self.lm.tokenizer, requests)

    def fits(self, prompt: str, response: str) -> bool:
        """Upstream §1.5: ``tok(prompt + response + eos)`` with default special tokens fits the model."""
        tok = self.lm.tokenizer
        return len(tok(prompt + response + tok.eos_token)["input_ids"]) <= self.lm.max_length

    @property
    def sites(self) -> Sites:
        if self._sites is None:
            self._sites = find_sites(self.lm.model)
        return self._sites

    # ------------------------------------------------------------ scoring

    def score(
        self,
        requests: Sequence[tuple[str, str]],
        *,
        batch_size: int | None = None,
        progress: Progress | None = None,
        strategy: Strategy = "auto",
        overlength: Overlength = "error",
    ) -> list[ResponseScore]:
        """Score each ``(prompt, response)``: the summed log-prob of ``response + eos``; request order.

        ``overlength="drop"`` returns ``None`` for requests longer than the model's context (counted in
        ``counters["dropped"]``) instead of raising.
        """
        return self._score(requests, batch_size, progress, strategy, overlength, reference=False)

    def score_tokens(
        self, encoded: Sequence[tuple[Sequence[int], Sequence[int]]], *, batch_size: int | None = None
    ) -> list[float]:
        """Summed log-prob of each ``(context ids, target ids)`` pair of token lists (already tokenised;
        no length check beyond the model's context)."""
        todo = [(list(c), list(t)) for c, t in encoded]
        for i, (c, t) in enumerate(todo):
            if not c or not t:
                raise ConfigError(f"token request {i} needs a non-empty context and target")
        self._within_context([len(c) + len(t) for c, t in todo], "error", "token request", "shorten it")

        with self._kernels():
            path = self._scoring_path("auto")
            return self._score_encoded(todo, path, batch_size, None)

    def _score(self, requests, batch_size, progress, strategy, overlength, reference: bool) -> list:
        _check_batch_size(batch_size)
        _check_overlength(overlength)
        for i, req in enumerate(requests):
            if not (isinstance(req, tuple | list) and len(req) == 2 and all(isinstance(x, str) for x in req)):
                raise ConfigError(f"request {i} is not a (prompt, response) pair of strings")
        if not requests:
            return []
        encoded = self.encode(requests)
        keep = self._within_context(
            [len(c) + len(r) for c, r in encoded],
            overlength,
            "request",
            "drop over-length examples with fits() first",
        )
        todo = [encoded[i] for i in keep]

        with self._kernels():
            path = "reference" if reference else self._scoring_path(strategy)
            self.last_path = path
            sums = self._score_encoded(todo, path, batch_size, progress)
        out: list[ResponseScore | None] = [None] * len(requests)
        for i, s in zip(keep, sums, strict=True):
            ctx, resp = encoded[i]
            out[i] = ResponseScore(float(s), len(resp), len(ctx))
        return out

    def _scoring_path(self, strategy: Strategy) -> str:
        """The fast path to use if its self-check passes (``tree`` falls back to ``cache``), else the
        reference. Self-checks run once per engine and path."""
        if strategy not in ("auto", "tree", "cache"):
            raise ConfigError(f"unknown scoring strategy {strategy!r}; use 'auto', 'cache' or 'tree'")
        if strategy == "auto":
            strategy = "cache" if _sliding_window(self.lm.model.config) else "tree"
        for path in [strategy] + (["cache"] if strategy == "tree" else []):
            key = f"score:{path}"
            if key not in self.self_checks:
                self.self_checks[key] = self._self_check_scoring(path)
            if self.self_checks[key]:
                return path
        if "score" not in self._warned:
            self._warned.add("score")
            warnings.warn(
                f"fast scoring of {self._arch()} failed its self-check; using the slow reference path",
                stacklevel=4,
            )
        return "reference"

    def _self_check_scoring(self, strategy: str) -> bool:
        """Score two prefix-sharing probes on ``strategy`` and on the reference path; compare."""
        probe = self.encode(_PROBE)
        saved = dict(self.counters)
        try:
            fast = self._score_encoded(probe, strategy, None, None)
            ref = self._score_encoded(probe, "reference", None, None)
        except TreeAttentionUnsupported as exc:
            warnings.warn(f"{self._arch()}: {exc}; scoring without tree attention", stacklevel=5)
            return False
        finally:
            self.counters.update(saved)
        tol = _tolerance(self.lm.dtype)
        ok = all(math.isclose(f, r, rel_tol=tol, abs_tol=tol) for f, r in zip(fast, ref, strict=True))
        if not ok:
            warnings.warn(
                f"fast scoring ({strategy}) disagrees with {self._arch()}'s forward ({fast} vs {ref})",
                stacklevel=5,
            )
        return ok

    def _score_encoded(self, encoded, path: str, batch_size, progress) -> list[float]:
        """Summed log-probs of distinct requests (duplicates share the result), in request order."""
        first_of: dict[tuple[tuple[int, ...], tuple[int, ...]], int] = {}
        owner = [first_of.setdefault((tuple(c), tuple(r)), i) for i, (c, r) in enumerate(encoded)]
        weight = np.bincount(owner, minlength=len(encoded)) if encoded else np.zeros(0, int)
        distinct = sorted(set(owner))
        sums: dict[int, float] = {}
        if path == "reference":
            for i in distinct:
                sums[i] = self._score_one_reference(*encoded[i])
                _advance(progress, int(weight[i]))
        elif path == "cache":
            budget = self._budget(batch_size, "cache")
            window = _sliding_window(self.lm.model.config)
            todo = []
            for i in distinct:  # longer than the window: the model's own masking, one request at a time
                if window and len(encoded[i][0]) + len(encoded[i][1]) > window:
                    sums[i] = self._score_one_reference(*encoded[i])
                    _advance(progress, int(weight[i]))
                else:
                    todo.append(i)
            for batch in plan_prompt_groups([encoded[i] for i in todo], budget):
                for k, value in self._score_batch_cached(batch):
                    sums[todo[k]] = value
                _advance(progress, int(sum(weight[todo[k]] for g in batch for k, _ in g.items)))
        else:
            sums.update(
                self._score_tree([encoded[i] for i in distinct], distinct, batch_size, progress, weight)
            )
        return [sums[owner[i]] for i in range(len(encoded))]

    def _score_tree(self, encoded, index, batch_size, progress, weight) -> dict[int, float]:
        """Token trees (one per prompt) under a shared trunk, one flat row per batch."""
        import torch

        seqs = [ctx + resp[:-1] for ctx, resp in encoded]
        keys: list[Hashable] = [tuple(ctx) for ctx, _ in encoded]
        out: dict[int, float] = {}
        dev = self.lm.device
        for batch in plan_batches(seqs, keys, self._budget(batch_size, "tree")):
            layout = build_layout([seqs[j] for j in batch], [keys[j] for j in batch])
            pair_index: dict[tuple[int, int], int] = {}
            owns = []
            for nodes, j in zip(layout.nodes, batch, strict=True):
                ctx, resp = encoded[j]
                # response token k is predicted at the node of sequence position len(ctx) - 1 + k
                owns.append(
                    [
                        pair_index.setdefault((nodes[len(ctx) - 1 + k], tok), len(pair_index))
                        for k, tok in enumerate(resp)
                    ]
                )
            hidden, _ = self._run_tree(layout)
            cols = torch.tensor([node for node, _ in pair_index], device=dev)
            targets = torch.tensor([tok for _, tok in pair_index], device=dev)
            logp = self._logprobs(hidden.index_select(0, cols), targets).double().cpu().numpy()
            self.counters["scored_tokens"] += len(pair_index)
            for j, own in zip(batch, owns, strict=True):
                out[index[j]] = float(np.sum(logp[own]))  # in token order: never depends on the batch
            _advance(progress, int(sum(weight[index[j]] for j in batch)))
        return out

    def _logprobs(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """log p(target) for each row of ``hidden`` [n, D] (vocabulary head + float32 log-softmax)."""
        model = self.lm.model
        return head_logprobs(
            model.get_output_embeddings(), hidden, targets, final_logit_softcap(model.config)
        )

    def _score_one_reference(self, ctx: list[int], resp: list[int]) -> float:
        """One unbatched forward with full logits through the model's own forward (the oracle)."""
        import torch

        ids = torch.tensor([ctx + resp], device=self.lm.device)
        logits = self.lm.model(input_ids=ids).logits[0].float()
        n = ids.shape[1]
        self._count(n, n, scored=len(resp), pairs=n * (n + 1) // 2, slots=n * n)
        logits = logits[len(ctx) - 1 : -1]
        target = torch.tensor(resp, device=logits.device)
        return float(target_logprobs(logits, target).double().sum())

    # ------------------------------------------------------------ the KV-cache strategy

    def _forward_rows(self, ids: list[list[int]], past_mask, start: list[int], cache) -> torch.Tensor:
        """Right-padded forward of token rows after an optional KV cache; the last hidden states."""
        import torch

        dev = self.lm.device
        width = max(len(r) for r in ids)
        n = len(ids)
        tid = torch.full((n, width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((n, width), dtype=torch.long)
        for j, row in enumerate(ids):
            tid[j, : len(row)] = torch.tensor(row)
            mask[j, : len(row)] = 1
        pos = torch.tensor(start)[:, None] + torch.arange(width)[None, :]
        if past_mask is not None:
            mask = torch.cat([past_mask, mask], dim=1)
        base = decoder_of(self.lm.model)
        kw = {_cache_kw(base): cache} if cache is not None else {}
        out = base(
            input_ids=tid.to(dev),
            attention_mask=mask.to(dev),
            position_ids=pos.to(dev),
            use_cache=cache is not None,
            **kw,
        )
        past = 0 if past_mask is None else past_mask.shape[1]
        pairs = sum(len(r) * (len(r) + 1) // 2 + len(r) * s for r, s in zip(ids, start, strict=True))
        self._count(sum(len(r) for r in ids), n * width, pairs=pairs, slots=n * width * (past + width))
        return out.last_hidden_state

    def _score_batch_cached(self, batch: list[PromptGroup]) -> list[tuple[int, float]]:
        """Score one batch of prompt groups, computing each prompt and shared response prefix once.

        1. Each group's context is extended by the longest token prefix all its responses share; one
           forward runs all contexts and fills a KV cache.
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
        h_ctx = self._forward_rows(ext, None, [0] * len(ext), cache)
        past_mask = torch.zeros((len(ext), h_ctx.shape[1]), dtype=torch.long)
        for gi, e in enumerate(ext):
            past_mask[gi, : len(e)] = 1
        hidden: list[torch.Tensor] = []
        targets: list[int] = []

        def add(h: torch.Tensor, tgt: list[int]) -> list[int]:
            hidden.append(h)
            targets.extend(tgt)
            return list(range(len(targets) - len(tgt), len(targets)))

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
            h = self._forward_rows(ids, past_mask[sel], [len(ext[rows[j][0]]) for j in sub], sub_cache)
            for k, j in enumerate(sub):
                rem = rows[j][2]
                rest_idx[j] = add(h[k, : len(rem) - 1], rem[1:])
            del sub_cache, h
        del cache, h_ctx
        logp = self._logprobs(torch.cat(hidden), torch.tensor(targets, device=dev)).double().cpu().numpy()
        self.counters["scored_tokens"] += len(targets)
        return [
            (idx, float(np.sum(logp[shared_idx[gi] + [first_idx[j]] + rest_idx[j]])))
            for j, (gi, idx, _) in enumerate(rows)
        ]

    # ------------------------------------------------------------ extraction

    def extract(
        self,
        texts: Sequence[Text],
        sites: Sequence[str] = ("resid", "heads"),
        template: str | None = None,
        *,
        batch_size: int | None = None,
        progress: Progress | None = None,
        overlength: Overlength = "error",
        path: Literal["auto", "tree", "rows", "reference"] = "auto",
    ) -> dict[str, torch.Tensor]:
        """Activations at the last token of each text, float32 on the CPU.

        Returns ``{"resid": [n, L, D], "heads": [n, L, H, head_dim], "final": [n, D]}`` for the
        requested sites. ``texts`` are ``(prompt, response)`` pairs rendered through ``template``
        (``genies.models.templates``), or plain strings when ``template`` is None; they are tokenised
        with the tokenizer's default special tokens. With ``overlength="drop"``, texts longer than the
        context get NaN rows, ``"kept"`` (bool [n]) is added, and ``counters["dropped"]`` counts them.
        """
        import torch

        _check_batch_size(batch_size)
        _check_overlength(overlength)
        wanted = _check_sites(sites)
        if path not in ("auto", "tree", "rows", "reference"):
            raise ConfigError(f"unknown extraction path {path!r}; use 'auto', 'tree', 'rows' or 'reference'")
        encoded = encode_texts(self.lm.tokenizer, texts, template)
        for i, ids in enumerate(encoded):
            if not ids:
                raise ModelError(f"text {i} is empty: it has no tokens to read activations at")
        keep = self._within_context(
            [len(ids) for ids in encoded], overlength, "text", "drop it or shorten it"
        )
        sites_ = self.sites
        out = {s: torch.full((len(encoded), *sites_.shape(s)), math.nan) for s in wanted}
        if keep:
            groups = [t[0] if isinstance(t, tuple | list) else i for i, t in enumerate(texts)]
            todo = [encoded[i] for i in keep]
            with self._kernels():
                if path == "auto":
                    path = self._extraction_path()
                self.last_path = path
                got = self._extract_encoded(
                    todo, [groups[i] for i in keep], wanted, path, batch_size, progress
                )
            idx = torch.tensor(keep)
            for s in wanted:
                out[s][idx] = got[s]
        if overlength == "drop":
            kept = torch.zeros(len(encoded), dtype=torch.bool)
            kept[keep] = True
            out["kept"] = kept
        return out

    def _extraction_path(self) -> str:
        if "extract:tree" not in self.self_checks:
            self.self_checks["extract:tree"] = self._self_check_extraction("tree")
        if self.self_checks["extract:tree"]:
            return "tree"
        if "extract:rows" not in self.self_checks:
            self.self_checks["extract:rows"] = self._self_check_extraction("rows")
        return "rows" if self.self_checks["extract:rows"] else "reference"

    def _self_check_extraction(self, path: str) -> bool:
        """Extract every site of two prefix-sharing probes on ``path`` and on the reference; compare."""
        probe = encode_texts(self.lm.tokenizer, _PROBE)
        saved = dict(self.counters)
        try:
            fast = self._extract_encoded(probe, [0, 0], SITES, path, None, None)
            ref = self._extract_encoded(probe, [0, 0], SITES, "reference", None, None)
        except TreeAttentionUnsupported as exc:
            warnings.warn(f"{self._arch()}: {exc}; extracting without tree attention", stacklevel=5)
            return False
        finally:
            self.counters.update(saved)
        tol = _tolerance(self.lm.dtype)
        bad = [s for s in SITES if (fast[s] - ref[s]).abs().max() > tol * max(1.0, float(ref[s].abs().max()))]
        if bad:
            warnings.warn(
                f"fast extraction ({path}) disagrees with {self._arch()}'s forward at {', '.join(bad)}; "
                "using a slower path",
                stacklevel=5,
            )
        return not bad

    def _extract_encoded(
        self, encoded, groups, wanted, path, batch_size, progress
    ) -> dict[str, torch.Tensor]:
        import torch

        first_of: dict[tuple[int, ...], int] = {}
        owner = [first_of.setdefault(tuple(ids), i) for i, ids in enumerate(encoded)]
        distinct = sorted(set(owner))
        weight = np.bincount(owner, minlength=len(encoded))
        sites_ = self.sites
        res = {s: torch.empty((len(encoded), *sites_.shape(s))) for s in wanted}
        seqs = [encoded[i] for i in distinct]
        if path == "reference":
            batches = [[j] for j in range(len(seqs))]
        elif path == "rows":
            batches = _row_batches(seqs, self._budget(batch_size, "rows"))
        else:
            batches = plan_batches(seqs, [groups[i] for i in distinct], self._budget(batch_size, "tree"))
        for batch in batches:
            part = [seqs[j] for j in batch]
            if path == "tree":
                layout = build_layout(part, [groups[distinct[j]] for j in batch])
                _, bufs = self._run_tree(layout, wanted, [nodes[-1] for nodes in layout.nodes])
            elif path == "rows":
                bufs = self._run_rows(part, wanted)
            else:
                bufs = self._run_reference(part[0], wanted)
            self.counters["read_tokens"] += len(batch)
            for s in wanted:
                res[s][torch.tensor([distinct[j] for j in batch])] = bufs[s].cpu()
            _advance(progress, int(sum(weight[distinct[j]] for j in batch)))
        dup = [i for i in range(len(encoded)) if owner[i] != i]
        for s in wanted:
            if dup:
                res[s][dup] = res[s][[owner[i] for i in dup]]
        return res

    # ------------------------------------------------------------ forward passes

    def _run_tree(
        self, layout, wanted: Sequence[str] = (), reads: list[int] | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One forward over a layout's flat row; (last hidden states [N, D], captured sites)."""
        import torch

        dev, model = self.lm.device, self.lm.model
        state = TreeState.build(layout, dev)
        ids = torch.from_numpy(layout.tokens)[None].to(dev)
        pos = torch.from_numpy(layout.depth)[None].to(dev)
        hooks = (
            capture(
                self.sites,
                wanted,
                torch.zeros(len(reads), dtype=torch.long, device=dev),
                torch.tensor(reads, device=dev),
            )
            if wanted
            else contextlib.nullcontext({})
        )
        with tree_attention(model, state), hooks as bufs:
            hidden = decoder_of(model)(input_ids=ids, position_ids=pos, use_cache=False).last_hidden_state
        n_layers = int(getattr(_text_config(model.config), "num_hidden_layers", 0) or 0)
        if state.calls == 0 or (n_layers and state.calls != n_layers):
            raise TreeAttentionUnsupported(
                f"its attention did not go through transformers' attention interface ({state.calls} calls)"
            )
        self._count(layout.n_tokens, layout.n_tokens, pairs=layout.attention_pairs(), slots=state.slots)
        return hidden[0], bufs

    def _run_rows(self, seqs: list[list[int]], wanted: Sequence[str]) -> dict[str, torch.Tensor]:
        """Right-padded rows through the model's own attention; sites at each row's last token."""
        import torch

        dev = self.lm.device
        n, width = len(seqs), max(len(s) for s in seqs)
        ids = torch.full((n, width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((n, width), dtype=torch.long)
        for j, s in enumerate(seqs):
            ids[j, : len(s)] = torch.tensor(s)
            mask[j, : len(s)] = 1
        rows = torch.arange(n, device=dev)
        cols = torch.tensor([len(s) - 1 for s in seqs], device=dev)
        pos = torch.arange(width)[None].expand(n, width)
        with capture(self.sites, wanted, rows, cols) as bufs:
            decoder_of(self.lm.model)(
                input_ids=ids.to(dev), attention_mask=mask.to(dev), position_ids=pos.to(dev), use_cache=False
            )
        pairs = sum(len(s) * (len(s) + 1) // 2 for s in seqs)
        self._count(sum(len(s) for s in seqs), n * width, pairs=pairs, slots=n * width * width)
        return bufs

    def _run_reference(self, seq: list[int], wanted: Sequence[str]) -> dict[str, torch.Tensor]:
        """The oracle: one unpadded text through the model's own forward; ``output_hidden_states`` for
        the residual stream and the final norm, an ``o_proj`` pre-hook only for the heads."""
        import torch

        dev = self.lm.device
        ids = torch.tensor([seq], device=dev)
        last = torch.tensor([len(seq) - 1], device=dev)
        heads = [s for s in wanted if s == "heads"]
        with capture(self.sites, heads, torch.zeros(1, dtype=torch.long, device=dev), last) as bufs:
            out = decoder_of(self.lm.model)(input_ids=ids, output_hidden_states=True, use_cache=False)
        hs = out.hidden_states
        n_layers = len(self.sites.layers)
        res = dict(bufs)
        if "resid" in wanted:
            res["resid"] = torch.stack([hs[i][0, -1] for i in range(n_layers)])[None].float()
        if "final" in wanted:
            res["final"] = hs[n_layers][0, -1][None].float()
        n = len(seq)
        self._count(n, n, pairs=n * (n + 1) // 2, slots=n * n)
        return res

    # ------------------------------------------------------------ helpers

    def _budget(self, batch_size: int | None, path: str) -> Budget:
        """Sequences and tokens per forward pass, from ``batch_size`` and a memory budget."""
        import torch

        cfg = _text_config(self.lm.model.config)
        hidden = int(getattr(cfg, "hidden_size", 1024))
        inter = int(getattr(cfg, "intermediate_size", 4 * hidden))
        layers = int(getattr(cfg, "num_hidden_layers", 24))
        heads = int(getattr(cfg, "num_attention_heads", 16))
        kv_heads = int(getattr(cfg, "num_key_value_heads", heads) or heads)
        head_dim = int(getattr(cfg, "head_dim", None) or hidden // heads)
        nbytes = torch.finfo(self.lm.dtype).bits // 8
        # live activations of one layer per token; the KV-cache path also keeps every layer's K/V
        per_token = nbytes * (12 * hidden + 4 * inter) + 4 * 2048
        if path == "cache":
            per_token += nbytes * 2 * layers * kv_heads * head_dim
        cuda = self.lm.device.type == "cuda"
        if self.memory_budget_mb is not None:
            budget = self.memory_budget_mb * 2**20
        elif cuda:
            free, _ = torch.cuda.mem_get_info(self.lm.device)
            budget = int(free * 0.5)
        else:
            budget = 1 << 30
        cap = _GPU_TOKENS if cuda else (_CPU_TREE_TOKENS if path == "tree" else _CPU_ROW_TOKENS)
        max_tokens = max(256, min(budget // per_token, cap))
        default_rows = {"tree": 1 << 16, "rows": 64, "cache": 64}[path] * (
            4 if cuda and path != "tree" else 1
        )
        return Budget(batch_size if batch_size is not None else default_rows, max_tokens)

    def _within_context(self, lengths: list[int], overlength: Overlength, what: str, hint: str) -> list[int]:
        """Indices that fit the context; the first over-length one raises unless dropping."""
        limit = self.lm.max_length
        keep = []
        for i, n in enumerate(lengths):
            if n <= limit:
                keep.append(i)
            elif overlength == "error":
                raise ModelError(f"{what} {i} has {n} tokens, more than the model's {limit}", hint=hint)
        self.counters["dropped"] += len(lengths) - len(keep)
        return keep

    @property
    def _pad_id(self) -> int:
        tok = self.lm.tokenizer
        return tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id

    def _count(
        self, real: int, padded: int, *, scored: int = 0, pairs: int = 0, slots: int | None = None
    ) -> None:
        c = self.counters
        c["forward_passes"] += 1
        c["real_tokens"] += real
        c["padded_tokens"] += padded
        c["scored_tokens"] += scored
        c["attention_pairs"] += pairs
        c["attention_slots"] += slots

    def _arch(self) -> str:
        return type(self.lm.model).__name__


def _text_config(config: Any) -> Any:
    return getattr(config, "text_config", None) or config


def _sliding_window(config: Any) -> int | None:
    return getattr(_text_config(config), "sliding_window", None)


def _cache_kw(base: Any) -> str:
    """transformers 5 renamed ``past_key_values`` to ``cache``; support both."""
    import inspect

    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def _tolerance(dtype: Any) -> float:
    """Self-check tolerance: float rounding of a forward in this dtype (nats, or relative to the scale)."""
    import torch

    return 1e-3 if dtype == torch.float32 else 5e-2


def _advance(progress: Progress | None, n: int) -> None:
    if progress is not None and n:
        progress(n)


def _check_batch_size(batch_size: int | None) -> None:
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise ConfigError(f"batch_size must be an integer >= 1 (got {batch_size!r})")


def _check_overlength(overlength: str) -> None:
    if overlength not in ("error", "drop"):
        raise ConfigError(f"overlength must be 'error' or 'drop' (got {overlength!r})")


def _check_sites(sites: Sequence[str]) -> tuple[str, ...]:
    if isinstance(sites, str):
        sites = (sites,)
    wanted = tuple(dict.fromkeys(sites))
    bad = [s for s in wanted if s not in SITES]
    if bad or not wanted:
        raise ConfigError(
            f"unknown activation site {bad[0] if bad else '(none)'!r}; choose from {', '.join(SITES)}"
        )
    return wanted


def _row_batches(seqs: list[list[int]], budget: Budget) -> list[list[int]]:
    """Length-sorted batches of rows: rows x (longest row) <= the token budget."""
    order = sorted(range(len(seqs)), key=lambda j: (-len(seqs[j]), j))
    batches: list[list[int]] = []
    for j in order:
        if batches and len(batches[-1]) < budget.max_sequences:
            width = len(seqs[batches[-1][0]])
            if (len(batches[-1]) + 1) * width <= budget.max_tokens:
                batches[-1].append(j)
                continue
        batches.append([j])
    return batches
