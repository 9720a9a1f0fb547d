"""Token trees, the flat row layout and batch planning (pure Python, no model)."""

from __future__ import annotations

import numpy as np

from genies.models.batching import Budget, TokenTree, build_layout, common_prefix, plan_batches


def test_tree_shares_prefixes_and_knows_ancestors():
    tree = TokenTree()
    a = tree.add([1, 2, 3, 4])
    b = tree.add([1, 2, 5])
    c = tree.add([1, 2, 3])  # a prefix of the first: no new node
    assert a[:2] == b[:2] and c == a[:3] and tree.width == 5
    assert tree.depth == [0, 1, 2, 3, 2]
    anc = tree.ancestors()
    assert anc[3].tolist() == [True, True, True, True, False]  # 4 sees 1, 2, 3 and itself
    assert anc[4].tolist() == [True, True, False, False, True]  # 5 sees 1, 2 and itself, not 3 or 4


def test_layout_has_a_trunk_and_no_padding():
    seqs = [[7, 8, 1, 2, 3], [7, 8, 1, 2, 4], [7, 8, 9], [7, 8, 9, 9]]
    layout = build_layout(seqs, keys=["p", "p", "q", "q"])
    assert common_prefix(seqs) == 2 and layout.trunk == 2
    assert layout.n_tokens == 2 + 4 + 2  # trunk, tree p (1 2 3 4), tree q (9 9)
    for seq, nodes in zip(seqs, layout.nodes, strict=True):
        assert layout.tokens[nodes].tolist() == seq  # every sequence can be read back in order
        assert layout.depth[nodes].tolist() == list(range(len(seq)))  # position ids are plain positions
    assert [s.width for s in layout.trees] == [4, 2]


def test_attention_pairs_count_ancestors():
    layout = build_layout([[1, 2, 3], [1, 2, 4]], keys=[0, 0])
    # trunk [1, 2]: 1 + 2 pairs; each branch node sees 2 trunk nodes + itself
    assert layout.attention_pairs() == 3 + 3 + 3


def test_plan_respects_budget_and_groups():
    rng = np.random.default_rng(0)
    seqs = [list(rng.integers(0, 50, size=int(rng.integers(3, 40)))) for _ in range(60)]
    keys = [i // 3 for i in range(60)]
    budget = Budget(max_sequences=7, max_tokens=120)
    batches = plan_batches(seqs, keys, budget)
    assert sorted(i for b in batches for i in b) == list(range(60))
    for b in batches:
        assert len(b) <= 7
        tree_tokens = sum(build_layout([seqs[i] for i in b], [keys[i] for i in b]).n_tokens for _ in [0])
        assert tree_tokens <= 120 or len({keys[i] for i in b}) == 1  # an over-wide group runs alone
    assert plan_batches(seqs, keys, budget) == batches  # deterministic


def test_segments_keep_branches_apart():
    tree = TokenTree()
    for seq in ([1, 2, 3, 4, 5], [1, 2, 3, 6, 7], [1, 2, 3, 6, 8], [1, 2, 3]):
        tree.add(seq)
    assert len(tree.segments()) == 1  # default costs: a tree this small is cheapest whole
    segs = tree.segments(gather_cost=0, call_cost=0)  # attention slots only: cut at every branching
    chain, *subs = segs
    assert chain[0].tolist() == [0, 1, 2] and chain[2].tolist() == np.tri(3, dtype=bool).tolist()
    # below the chain: [4, 5], and [6] whose branches [7] and [8] are parts too; none sees another's keys
    assert sorted(tree.tokens[q[0]] for q, _, _ in subs) == [4, 6, 7, 8]
    anc = tree.ancestors()
    for q, k, allow in subs:
        assert k[:3].tolist() == [0, 1, 2] and allow[:, :3].all()
        assert (allow == anc[np.ix_(q, k)]).all()  # exactly the ancestors
    covered = sorted(int(n) for q, _, _ in segs for n in q)
    assert covered == list(range(tree.width))  # every node is a query exactly once


def test_long_branches_are_cut_short_ones_not():
    rng = np.random.default_rng(1)
    prompt = list(rng.integers(0, 99, 200))
    long = TokenTree()
    for _ in range(4):  # four 150-token responses to one prompt: cut, each attends to the prompt only
        long.add(prompt + list(rng.integers(100, 199, 150)))
    segs = long.segments(30)
    assert len(segs) == 5 and sum(len(q) * len(k) for q, k, _ in segs) < 0.5 * long.width**2
    short = TokenTree()
    for _ in range(2):  # two 3-token responses: one gather beats three
        short.add(prompt + list(rng.integers(100, 199, 3)))
    assert len(short.segments(30)) == 1
