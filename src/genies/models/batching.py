"""Batching: token sequences -> token trees -> batches laid out as one flat row of tree nodes.

Words used throughout the engine:

* **sequence**: the tokens one request needs computed. Scoring: context + response without its last
  token (that one is only a target). Extraction: the whole text.
* **group**: sequences that may share a tree (scoring: same context; extraction: same prompt).
* **tree**: the distinct prefixes of a group's sequences, each once (a trie). A node's position id is
  its depth, and it attends exactly to its ancestors, so its hidden state equals that of the same
  token in the plain sequence: a prompt with four responses is computed once, and so is any prefix
  that several responses share.
* **batch**: the trees of one forward pass. Their common token prefix, the **trunk** (e.g. the
  instruction preamble every GENIES prompt starts with, or a whole prompt when a batch holds one), is
  laid out once at the start of the row; every tree hangs below it. Row layout::

      [ trunk (T tokens) | tree 1 (w1) | tree 2 (w2) | ... ]        N = T + sum(w) tokens, no padding

  Linear layers therefore see exactly the distinct tokens (no padding at all); attention is computed
  per tree against [trunk ; tree] keys (see ``genies.models.forward``).

Batches are planned from a budget (sequences and tokens per forward pass); trees are sorted by width
so trees in one batch have similar widths, which keeps the padding of the attention buckets small.
Nothing here depends on torch.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np


class TokenTree:
    """A trie of token sequences laid out in insertion order (a parent always precedes its children)."""

    __slots__ = ("_children", "base_depth", "depth", "parent", "tokens")

    def __init__(self, base_depth: int = 0) -> None:
        self.base_depth = base_depth  # depth of the first token (the trunk length below a batch's trunk)
        self.tokens: list[int] = []
        self.parent: list[int] = []  # -1: a root (attends to the trunk only, besides itself)
        self.depth: list[int] = []
        self._children: dict[tuple[int, int], int] = {}

    def add(self, seq: Sequence[int]) -> list[int]:
        """Insert ``seq``; return the node of each of its tokens (existing prefixes are reused)."""
        node, out = -1, []
        for tok in seq:
            nxt = self._children.get((node, tok))
            if nxt is None:
                nxt = self._children[(node, tok)] = len(self.tokens)
                self.tokens.append(tok)
                self.parent.append(node)
                self.depth.append(self.depth[node] + 1 if node >= 0 else self.base_depth)
            out.append(nxt)
            node = nxt
        return out

    @property
    def width(self) -> int:
        return len(self.tokens)

    def segments(
        self, above: int = 0, *, gather_cost: float = 8.0, call_cost: float = 1000.0
    ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """The tree cut for attention: ``(query nodes, key nodes, allow [queries, keys])`` per part.

        ``above`` keys precede every node (the batch's trunk; not listed in the key nodes, always
        allowed). A part is either a whole subtree (its nodes attend through an ancestor mask) or the
        *chain* of a subtree (the nodes down to its first branching, attending causally) whose child
        subtrees are parts of their own, attending to the chain too. Which, is decided per subtree by
        a cost in attention slots: ``queries x keys + gather_cost x keys + call_cost``. So long
        responses to one prompt never attend across each other, while a tree of short responses stays
        one part (one gather of its keys beats several).
        """
        w = self.width
        parent = np.asarray(self.parent, dtype=np.int64)
        children: list[list[int]] = [[] for _ in range(w + 1)]  # index w: the virtual root
        for i, p in enumerate(parent):
            children[p if p >= 0 else w].append(i)
        size = np.ones(w + 1, dtype=np.int64)
        for i in range(w - 1, -1, -1):  # parents precede children: accumulate bottom up
            size[parent[i] if parent[i] >= 0 else w] += size[i]
        size[w] = w  # the virtual root's subtree: the whole tree

        def chain_of(root: int) -> list[int]:
            chain = [] if root == w else [root]
            node = root
            while len(children[node]) == 1:
                node = children[node][0]
                chain.append(node)
            return chain

        def cost(q: int, k: int) -> float:
            return q * k + gather_cost * k + call_cost

        plans: dict[int, tuple[float, bool]] = {}  # subtree root -> (cost, split?)

        def plan(root: int, keys: int) -> float:
            n = int(size[root])
            whole = cost(n, keys + n)
            chain = chain_of(root)
            end = chain[-1] if chain else w
            c = len(chain)
            if not children[end]:  # a plain chain: emitted as one causal part
                plans[root] = (cost(c, keys + c), True)
                return plans[root][0]
            split = (cost(c, keys + c) if c else 0.0) + sum(plan(k, keys + c) for k in children[end])
            plans[root] = (min(whole, split), split < whole)
            return plans[root][0]

        plan(w, above)
        out: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

        def emit(root: int, anc: list[int]) -> None:
            if not plans[root][1]:
                nodes = self._subtree(root, children)
                local = {n: k for k, n in enumerate(nodes)}
                tree_anc = _ancestor_matrix(np.asarray([local.get(int(parent[n]), -1) for n in nodes]))
                allow = np.concatenate([np.ones((len(nodes), len(anc)), dtype=bool), tree_anc], axis=1)
                arr = np.asarray(nodes, dtype=np.int64)
                out.append((arr, np.asarray(anc + nodes, dtype=np.int64), allow))
                return
            chain = chain_of(root)
            if chain:
                c = len(chain)
                allow = np.concatenate([np.ones((c, len(anc)), dtype=bool), np.tri(c, dtype=bool)], axis=1)
                out.append(
                    (np.asarray(chain, dtype=np.int64), np.asarray(anc + chain, dtype=np.int64), allow)
                )
            for k in children[chain[-1] if chain else w]:
                emit(k, anc + chain)

        emit(w, [])
        return out

    @staticmethod
    def _subtree(root: int, children: list[list[int]]) -> list[int]:
        """Nodes of the subtree under ``root`` (the virtual root: all), in layout order."""
        if root == len(children) - 1:
            return list(range(root))
        nodes, stack = [], [root]
        while stack:
            n = stack.pop()
            nodes.append(n)
            stack.extend(children[n])
        return sorted(nodes)

    def ancestors(self) -> np.ndarray:
        """Boolean [w, w]: ``a[i, j]`` iff node j is node i or one of its ancestors."""
        return _ancestor_matrix(np.asarray(self.parent, dtype=np.int64))


def _ancestor_matrix(parent: np.ndarray) -> np.ndarray:
    """Ancestor-or-self matrix of nodes laid out parents first (``parent[i] < i``, -1 for roots)."""
    w = len(parent)
    allow = np.zeros((w, w), dtype=bool)
    # a leading chain (a prompt) is a plain causal block; only the rest needs row copies
    breaks = np.nonzero(parent != np.arange(-1, w - 1))[0]
    chain = int(breaks[0]) if breaks.size else w
    allow[:chain, :chain] = np.tri(chain, dtype=bool)
    for i in range(chain, w):
        p = parent[i]
        if p >= 0:
            allow[i] = allow[p]
        allow[i, i] = True
    return allow


@dataclass
class TreeSpan:
    """A tree's place in the flat row: nodes ``offset .. offset + tree.width - 1``."""

    offset: int
    tree: TokenTree

    @property
    def width(self) -> int:
        return self.tree.width


@dataclass
class Layout:
    """One forward pass over a batch of sequences (see the module docstring for the row layout)."""

    tokens: np.ndarray  # int64 [N]
    depth: np.ndarray  # int64 [N]: position ids
    trunk: int  # T: nodes 0 .. T-1 are the batch's common prefix (a causal chain)
    trees: list[TreeSpan]
    nodes: list[list[int]]  # per sequence (batch order): the flat node of each of its tokens

    @property
    def n_tokens(self) -> int:
        return int(self.tokens.shape[0])

    def attention_pairs(self) -> int:
        """(query, key) pairs the model's own causal attention over the distinct prefixes needs."""
        t = self.trunk
        pairs = t * (t + 1) // 2
        for span in self.trees:
            pairs += span.width * t + sum(d - t + 1 for d in span.tree.depth)
        return pairs


def common_prefix(seqs: Sequence[Sequence[int]]) -> int:
    """Length of the longest token prefix shared by all ``seqs``."""
    if not seqs:
        return 0
    first = seqs[0]
    n = min(len(s) for s in seqs)
    for s in seqs[1:]:
        k = 0
        while k < n and s[k] == first[k]:
            k += 1
        n = k
        if n == 0:
            break
    return n


def build_layout(seqs: Sequence[Sequence[int]], keys: Sequence[Hashable]) -> Layout:
    """Lay out one batch: the trunk, then one tree per group key (in first-seen order)."""
    trunk = common_prefix(seqs)
    base = list(seqs[0][:trunk]) if seqs else []
    trees: dict[Hashable, TreeSpan] = {}
    local: list[tuple[TreeSpan, list[int]]] = []
    offset = trunk
    for seq, key in zip(seqs, keys, strict=True):
        span = trees.get(key)
        if span is None:
            span = trees[key] = TreeSpan(0, TokenTree(base_depth=trunk))
        local.append((span, span.tree.add(seq[trunk:])))
    for span in trees.values():
        span.offset = offset
        offset += span.width
    tokens = np.empty(offset, dtype=np.int64)
    depth = np.empty(offset, dtype=np.int64)
    tokens[:trunk] = base
    depth[:trunk] = np.arange(trunk)
    for span in trees.values():
        tokens[span.offset : span.offset + span.width] = span.tree.tokens
        depth[span.offset : span.offset + span.width] = span.tree.depth
    nodes = [list(range(trunk)) + [span.offset + j for j in own] for span, own in local]
    spans = [s for s in trees.values() if s.width]
    return Layout(tokens, depth, trunk, spans, nodes)


@dataclass(frozen=True)
class Budget:
    """Limits of one forward pass: sequences (``batch_size``) and tokens in the row."""

    max_sequences: int
    max_tokens: int


def plan_batches(seqs: Sequence[Sequence[int]], keys: Sequence[Hashable], budget: Budget) -> list[list[int]]:
    """Cut sequences into batches (lists of indices) under the budget.

    Each group is split into chunks of at most ``max_sequences`` sequences; a chunk's cost is its
    tree's width (its distinct prefixes). Chunks are sorted by decreasing width (ties: first index) and
    packed greedily; a chunk wider than the token budget runs alone. Deterministic for given inputs.
    """
    groups: dict[Hashable, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    chunks: list[tuple[int, list[int]]] = []
    for members in groups.values():
        for k in range(0, len(members), budget.max_sequences):
            part = members[k : k + budget.max_sequences]
            tree = TokenTree()
            for i in part:
                tree.add(seqs[i])
            chunks.append((tree.width, part))
    chunks.sort(key=lambda c: (-c[0], c[1][0]))
    batches: list[list[int]] = []
    cur: list[int] = []
    tokens = 0
    for width, part in chunks:
        if cur and (len(cur) + len(part) > budget.max_sequences or tokens + width > budget.max_tokens):
            batches.append(cur)
            cur, tokens = [], 0
        cur.extend(part)
        tokens += width
    if cur:
        batches.append(cur)
    return batches


# ---------------------------------------------------------------- the KV-cache strategy's groups


@dataclass
class PromptGroup:
    """One prompt and (some of) its responses: the unit that shares a KV cache (``strategy="cache"``)."""

    context: list[int]
    items: list[tuple[int, list[int]]]  # (request index, response ids)

    @property
    def cost(self) -> int:
        return len(self.context) + max(len(r) for _, r in self.items)


def plan_prompt_groups(
    encoded: Sequence[tuple[list[int], list[int]]], budget: Budget
) -> list[list[PromptGroup]]:
    """Group requests by prompt, sort by prompt length, and cut into batches under the budget
    (``max_sequences`` = rows, ``max_tokens`` = rows x their context + response length)."""
    by_prompt: dict[tuple[int, ...], list[tuple[int, list[int]]]] = {}
    for i, (ctx, resp) in enumerate(encoded):
        by_prompt.setdefault(tuple(ctx), []).append((i, resp))
    groups = [
        PromptGroup(list(ctx), sorted(items, key=lambda it: (-len(it[1]), it[0])))
        for ctx, items in by_prompt.items()
    ]
    groups.sort(key=lambda g: (-len(g.context), -g.cost, g.items[0][0]))
    batches: list[list[PromptGroup]] = []
    cur: list[PromptGroup] = []
    rows = cost = 0
    for group in groups:
        items = group.items
        while items:
            take = items[: max(1, budget.max_sequences - rows)]
            take_cost = len(take) * (len(group.context) + len(take[0][1]))
            if cur and (rows + len(take) > budget.max_sequences or cost + take_cost > budget.max_tokens):
                batches.append(cur)
                cur, rows, cost = [], 0, 0
                continue
            cur.append(PromptGroup(group.context, take))
            rows += len(take)
            cost += take_cost
            items = items[len(take) :]
    if cur:
        batches.append(cur)
    return batches
