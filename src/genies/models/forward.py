"""The forward pass: tree attention plugged into a stock transformers model, and hooks that read sites.

**Tree attention.** A batch is one flat row of distinct tree nodes (``genies.models.batching``). The
model runs unchanged, except that while :func:`tree_attention` is active its attention modules call
:func:`_tree_attention_forward` (registered with transformers' ``AttentionInterface`` as
``"genies_tree"``; transformers then builds no mask at all). That function computes, per layer::

    trunk:   q[:T]     attends k[:T] causally                          (one SDPA call, is_causal)
    trees:   q[seg]    attends k[ancestors of seg]  under a mask          (one SDPA call per bucket)

where a tree whose responses are long is cut into its chain (the prompt and the prefix all its
responses share) and the subtrees below it, each attending to [trunk ; chain ; its own ancestors]
only (a tree of short responses stays whole: one gather beats several). Segments of similar size
form a bucket, padded to its largest: queries ``[n, H, sq, d]``, gathered keys ``[n, KV, sk, d]``
(grouped-query heads are not repeated), an additive mask ``[n, 1, sq, sk]`` built once per forward
(per sliding window) and reused by every layer. So two long responses to one prompt never attend
across each other, linear layers see no padding, and a sliding-window layer (Gemma-3) gets its
window from the node depths. Position ids are node depths, so rotary embeddings are the plain
sequence's. The model's modules are never replaced: adapters (peft) and hooks see the usual module
tree.

**Sites** (upstream §4.0): ``resid`` = the input of each decoder layer (``hidden_states[0..L-1]``),
``heads`` = the input of each attention output projection (``o_proj`` / ``dense``), reshaped to
``[query heads, head_dim]``, ``final`` = the final norm's output (``hidden_states[L]``). Hooks gather
only the rows that are read (one per text), so nothing of size ``[N, L, D]`` is ever kept.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from genies.errors import ModelError

if TYPE_CHECKING:
    import torch

    from genies.models.batching import Layout

ATTN_NAME = "genies_tree"
SITES = ("resid", "heads", "final")
_BUCKET_SLACK = 1.125  # a bucket's padded size may exceed its trees' total width by 1/8
_BUCKET_SMALL_WASTE = 1 << 15  # padded (query, key) slots a bucket may waste regardless of the slack
_BUCKET_MAX_MASK = 1 << 24  # mask elements per bucket (bounds the mask's and SDPA's scratch memory)
_ACTIVE: contextvars.ContextVar[TreeState | None] = contextvars.ContextVar("genies_tree_state", default=None)


class TreeAttentionUnsupported(ModelError):
    """The model cannot run with tree attention (the engine then uses a path without it)."""


# ---------------------------------------------------------------- per-forward attention state


@dataclass
class _Bucket:
    """Attention segments of similar size, padded to ``sq`` queries and ``sk`` keys each."""

    n: int
    sq: int
    sk: int
    q_gather: torch.Tensor  # long [n * sq]: the node of each query slot (padding repeats a real one)
    dest: torch.Tensor  # long [n * sq]: where each query slot's output goes (padding -> scratch row N)
    k_gather: torch.Tensor  # long [n * sk]: the node of each key slot
    allow: torch.Tensor  # bool [n, sq, sk]: ancestors (no window)
    qdepth: torch.Tensor  # long [n, sq]
    kdepth: torch.Tensor  # long [n, sk]


@dataclass
class TreeState:
    """Everything the attention function needs for one forward pass over a layout.

    Each tree is cut into segments (``TokenTree.segments``): its chain, and each subtree below it.
    A segment's queries attend to the trunk, the chain and their own ancestors; segments of similar
    size share one SDPA call (a bucket). The trunk attends to itself causally.
    """

    n_tokens: int
    trunk: int
    buckets: list[_Bucket]
    calls: int = 0
    _masks: dict[tuple, list[torch.Tensor]] = field(default_factory=dict)
    _trunk_masks: dict[tuple, torch.Tensor] = field(default_factory=dict)

    @classmethod
    def build(cls, layout: Layout, device: torch.device) -> TreeState:
        import numpy as np

        t, n_tok = layout.trunk, layout.n_tokens
        trunk = np.arange(t, dtype=np.int64)
        segs = []  # (query nodes, key nodes incl. the trunk, allow) in flat-row indices
        for span in layout.trees:
            for q, k, a in span.tree.segments(t):
                segs.append(
                    (
                        span.offset + q,
                        np.concatenate([trunk, span.offset + k]),
                        np.pad(a, ((0, 0), (t, 0)), constant_values=True),
                    )
                )
        segs.sort(key=lambda g: (-len(g[1]), -len(g[0])))
        groups: list[list] = []
        for seg in segs:  # most keys first: a bucket's first segment sets its key width
            if groups:
                g = groups[-1]
                sq, sk = max(len(seg[0]), max(len(x[0]) for x in g)), len(g[0][1])
                need = sum(len(x[0]) * len(x[1]) for x in g) + len(seg[0]) * len(seg[1])
                padded = (len(g) + 1) * sq * sk
                small = padded - need <= _BUCKET_SMALL_WASTE  # tiny segments: fewer calls beat less padding
                if (padded <= _BUCKET_SLACK * need or small) and padded <= _BUCKET_MAX_MASK:
                    g.append(seg)
                    continue
            groups.append([seg])
        return cls(n_tok, t, [_bucket(g, layout.depth, n_tok, device) for g in groups])

    @property
    def slots(self) -> int:
        """(query, key) pairs one layer computes: the trunk's causal half and every bucket's padded box."""
        return self.trunk * (self.trunk + 1) // 2 + sum(b.n * b.sq * b.sk for b in self.buckets)

    def masks(self, window: int | None, dtype: torch.dtype) -> list[torch.Tensor]:
        """Per bucket, the additive [n, 1, sq, sk] mask (0 or -inf; converted once per forward, not per
        layer); a sliding window keeps only keys with a depth gap < window."""
        import torch

        if (window, dtype) not in self._masks:
            out = []
            for b in self.buckets:
                allow = b.allow
                if window is not None:
                    allow = allow & ((b.qdepth[:, :, None] - b.kdepth[:, None, :]) < window)
                    allow[:, :, 0] |= ~allow.any(dim=2)  # padding rows keep one key
                mask = torch.zeros(allow.shape, dtype=dtype, device=allow.device).masked_fill_(
                    ~allow, float("-inf")
                )
                out.append(mask[:, None])
            self._masks[(window, dtype)] = out
        return self._masks[(window, dtype)]

    def trunk_mask(self, window: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        import torch

        if (window, dtype) not in self._trunk_masks:
            i = torch.arange(self.trunk, device=device)
            gap = i[:, None] - i[None, :]
            allow = (gap >= 0) & (gap < window)
            mask = torch.zeros(allow.shape, dtype=dtype, device=device).masked_fill_(~allow, float("-inf"))
            self._trunk_masks[(window, dtype)] = mask[None, None]
        return self._trunk_masks[(window, dtype)]

    def attend(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        scale: float | None,
        window: int | None,
    ) -> torch.Tensor:
        """query [1, H, N, d], key/value [1, KV, N, d] -> attention output [1, N, H, d].

        q/k/v are copied once per layer to token-major ``[N, heads, d]`` (rotary embeddings leave them
        head-major), so each bucket gathers whole contiguous rows; grouped-query heads go to SDPA as
        they are (``enable_gqa``).
        """
        import torch.nn.functional as F

        _, h, n_tok, d = query.shape
        kv = key.shape[1]
        gqa = h != kv
        qn, kn, vn = (x[0].transpose(0, 1).contiguous() for x in (query, key, value))  # [N, heads, d]
        out = query.new_empty((n_tok + 1, h, d))  # the last row is scratch for padding slots
        t = self.trunk
        if t:
            qt, kt, vt = (x[:t].transpose(0, 1)[None] for x in (qn, kn, vn))  # [1, heads, T, d]
            if window is not None and t > window:
                mask = self.trunk_mask(window, query.dtype, query.device)
                o = F.scaled_dot_product_attention(qt, kt, vt, attn_mask=mask, scale=scale, enable_gqa=gqa)
            else:
                o = F.scaled_dot_product_attention(qt, kt, vt, is_causal=True, scale=scale, enable_gqa=gqa)
            out[:t] = o[0].transpose(0, 1)
        for b, mask in zip(self.buckets, self.masks(window, query.dtype), strict=True):
            qb = _heads_first(qn.index_select(0, b.q_gather), b.n, b.sq)  # [n, H, sq, d]
            kb = _heads_first(kn.index_select(0, b.k_gather), b.n, b.sk)  # [n, KV, sk, d]
            vb = _heads_first(vn.index_select(0, b.k_gather), b.n, b.sk)
            o = F.scaled_dot_product_attention(qb, kb, vb, attn_mask=mask, scale=scale, enable_gqa=gqa)
            out.index_copy_(0, b.dest, o.transpose(1, 2).reshape(b.n * b.sq, h, d))
        return out[:n_tok][None]


def _heads_first(rows: torch.Tensor, n: int, s: int) -> torch.Tensor:
    """Gathered rows [n * s, heads, d] -> contiguous [n, heads, s, d] (SDPA's fast layout)."""
    return rows.view(n, s, rows.shape[1], rows.shape[2]).transpose(1, 2).contiguous()


def _bucket(segs: list, depth, n_tok: int, device: torch.device) -> _Bucket:
    """Pad a group of segments into one bucket's index and mask tensors."""
    import numpy as np
    import torch

    n = len(segs)
    sq, sk = max(len(q) for q, _, _ in segs), max(len(k) for _, k, _ in segs)
    q_gather = np.empty((n, sq), dtype=np.int64)
    dest = np.full((n, sq), n_tok, dtype=np.int64)
    k_gather = np.empty((n, sk), dtype=np.int64)
    allow = np.zeros((n, sq, sk), dtype=bool)
    for b, (q, k, a) in enumerate(segs):
        q_gather[b, : len(q)], q_gather[b, len(q) :] = q, q[0]
        dest[b, : len(q)] = q
        k_gather[b, : len(k)], k_gather[b, len(k) :] = k, k[0]
        allow[b, : len(q), : len(k)] = a
        allow[b, len(q) :, 0] = True  # padding queries see one key (their output is discarded)
    tensors = [
        torch.from_numpy(x).to(device)
        for x in (q_gather.reshape(-1), dest.reshape(-1), k_gather.reshape(-1), allow)
    ]
    qdepth = torch.from_numpy(depth[q_gather]).to(device)
    kdepth = torch.from_numpy(depth[k_gather]).to(device)
    return _Bucket(n, sq, sk, *tensors, qdepth, kdepth)


def _tree_attention_forward(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' attention-function signature; active only inside :func:`tree_attention`."""
    state = _ACTIVE.get()
    if state is None:
        raise RuntimeError("genies tree attention called outside genies.models.forward.tree_attention")
    if kwargs.get("softcap") is not None:
        raise TreeAttentionUnsupported("tree attention does not implement attention-logit softcapping")
    if query.shape[0] != 1 or query.shape[2] != state.n_tokens:
        raise TreeAttentionUnsupported(f"tree attention got queries of shape {tuple(query.shape)}")
    window = kwargs.get("sliding_window", getattr(module, "sliding_window", None))
    state.calls += 1
    return state.attend(query, key, value, scaling, window), None


def _register() -> None:
    from transformers import AttentionInterface

    if ATTN_NAME not in AttentionInterface._global_mapping:
        AttentionInterface.register(ATTN_NAME, _tree_attention_forward)


@contextlib.contextmanager
def tree_attention(model: Any, state: TreeState) -> Iterator[None]:
    """Run ``model``'s attention as tree attention over ``state`` inside the block, then restore it.

    Every config object of the model's modules gets the implementation name (modules read it at call
    time); the previous values are put back on exit, even after an error.
    """
    from transformers import PretrainedConfig

    _register()
    configs = {
        id(m.config): m.config
        for m in model.modules()
        if isinstance(getattr(m, "config", None), PretrainedConfig)
    }
    attr = "_attn_implementation_internal"
    saved = {k: getattr(c, attr, None) for k, c in configs.items()}
    token = _ACTIVE.set(state)
    try:
        for c in configs.values():
            setattr(c, attr, ATTN_NAME)
        yield
    finally:
        for k, c in configs.items():
            setattr(c, attr, saved[k])
        _ACTIVE.reset(token)


# ---------------------------------------------------------------- model structure and sites


def decoder_of(model: Any) -> Any:
    """The decoder stack without the vocabulary head (its forward returns ``last_hidden_state``)."""
    if hasattr(model, "get_decoder"):
        with contextlib.suppress(AttributeError, NotImplementedError):
            dec = model.get_decoder()
            if dec is not None:
                return dec
    prefix = getattr(model, "base_model_prefix", "")
    if prefix and hasattr(model, prefix):
        return getattr(model, prefix)
    raise ModelError(f"cannot find the decoder of {type(model).__name__}")


def _first(obj: Any, names: Sequence[str]) -> Any:
    for name in names:
        value = getattr(obj, name, None)
        if value is not None:
            return value
    return None


@dataclass
class Sites:
    """Where the hooked modules of a decoder-only model are, and the shapes they give."""

    arch: str
    layers: list[Any]  # decoder layers: a forward pre-hook reads the residual stream
    out_proj: list[Any]  # per layer, the attention output projection: its input is the heads
    final_norm: Any
    n_heads: int
    head_dim: int
    hidden: int

    def shape(self, site: str) -> tuple[int, ...]:
        """Per-text shape of a site."""
        n_layers = len(self.layers)
        return {
            "resid": (n_layers, self.hidden),
            "heads": (n_layers, self.n_heads, self.head_dim),
            "final": (self.hidden,),
        }[site]


def find_sites(model: Any) -> Sites:
    """Locate decoder layers, attention output projections and the final norm (LLaMA/Gemma/GPT-NeoX
    naming, also under peft wrappers); one line naming the architecture if they are not there."""
    arch = type(model).__name__
    if hasattr(model, "get_base_model"):  # a peft wrapper: name the wrapped architecture
        with contextlib.suppress(AttributeError, TypeError):
            arch = type(model.get_base_model()).__name__
    hint = "activation sites are found in LLaMA-, Gemma- and GPT-NeoX-style decoders"
    try:
        dec = decoder_of(model)
    except ModelError as exc:
        raise ModelError(f"{arch}: {exc}; {hint}") from exc
    layers = _first(dec, ("layers", "h", "blocks"))
    if layers is None or not hasattr(layers, "__len__") or not len(layers):
        raise ModelError(f"{arch}: no decoder layers found (looked for .layers/.h/.blocks); {hint}")
    layers = list(layers)
    projs = []
    for layer in layers:
        attn = _first(layer, ("self_attn", "attention", "attn"))
        proj = _first(attn, ("o_proj", "dense", "out_proj", "c_proj")) if attn is not None else None
        if proj is None:
            raise ModelError(f"{arch}: no attention output projection (o_proj/dense) in its layers; {hint}")
        projs.append(proj)
    norm = _first(dec, ("norm", "final_layer_norm", "ln_f", "final_layernorm"))
    if norm is None:
        raise ModelError(f"{arch}: no final norm (norm/final_layer_norm/ln_f) found; {hint}")
    cfg = model.config
    cfg = getattr(cfg, "text_config", None) or cfg
    n_heads = int(getattr(cfg, "num_attention_heads", 0) or 0)
    width = getattr(projs[0], "in_features", None) or projs[0].weight.shape[1]
    if n_heads <= 0 or width % n_heads:
        raise ModelError(f"{arch}: cannot split the attention output ({width} wide) into {n_heads} heads")
    return Sites(arch, layers, projs, norm, n_heads, width // n_heads, int(cfg.hidden_size))


@contextlib.contextmanager
def capture(
    sites: Sites, wanted: Sequence[str], rows: torch.Tensor, cols: torch.Tensor
) -> Iterator[dict[str, torch.Tensor]]:
    """Hooks that copy the wanted sites at positions ``(rows[i], cols[i])`` into float32 buffers.

    Yields ``{site: tensor}`` (filled by the forward pass run inside the block): ``resid`` [n, L, D],
    ``heads`` [n, L, H, head_dim], ``final`` [n, D]. The hooks are removed on exit.
    """
    import torch

    n = int(rows.shape[0])
    dev = rows.device
    bufs: dict[str, torch.Tensor] = {
        s: torch.empty((n, *sites.shape(s)), dtype=torch.float32, device=dev) for s in wanted
    }
    handles = []

    def pick(x: torch.Tensor) -> torch.Tensor:
        return x[rows, cols].float()  # [n, width]

    if "resid" in bufs:
        for i, layer in enumerate(sites.layers):

            def pre(_mod, args, kwargs, i=i):
                h = args[0] if args else kwargs["hidden_states"]
                bufs["resid"][:, i] = pick(h)

            handles.append(layer.register_forward_pre_hook(pre, with_kwargs=True))
    if "heads" in bufs:
        for i, proj in enumerate(sites.out_proj):

            def pre_heads(_mod, args, kwargs, i=i):
                x = args[0] if args else kwargs["input"]
                bufs["heads"][:, i] = pick(x).view(n, sites.n_heads, sites.head_dim)

            handles.append(proj.register_forward_pre_hook(pre_heads, with_kwargs=True))
    if "final" in bufs:

        def post(_mod, _args, output):
            bufs["final"][:] = pick(output[0] if isinstance(output, tuple) else output)

        handles.append(sites.final_norm.register_forward_hook(post))
    try:
        yield bufs
    finally:
        for h in handles:
            h.remove()
