"""``genies run --activation-dtype bfloat16``: the activation cache stores bf16 shards (half the bytes),
fits read them as float32, p(correct) stays close to float32's, and the two dtypes never share an
entry (activations, states or evaluations)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors import safe_open

from genies.data.synthetic import generate
from genies.errors import ConfigError
from genies.pipeline.store import ResultStore
from genies.pipeline.suite import RunOptions, run_suite

SHIFT = {"source": "synth_facts", "target": "synth_facts_fiction", "category": "context"}
METHODS = ("linear_probe", "mms")
#: The tiny model has 2 layers and the runs 3 validation pairs: a layer chosen on them can flip under
#: any rounding, so linear_probe reads layer 1 (layer 0 is the last token's embedding: no signal).
SETS = {"linear_probe": ("intervention.layer=1", "ttc.layer=1"), "mms": ()}


@pytest.fixture(scope="module")
def env(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("repr-dtype")
    generate(root / "data", seed=0, train_size=16, test_size=10)
    suite = root / "suite.json"
    suite.write_text(json.dumps([SHIFT]), encoding="utf-8")
    return {"root": root, "suite": suite, "model": tiny_model_dir}


def _run(env, name, dtype):
    return run_suite(
        RunOptions(
            intervention=name,
            suite=str(env["suite"]),
            model=str(env["model"]),
            limit=10,
            store=str(env["root"] / "store"),
            data_dir=str(env["root"] / "data"),
            out=str(env["root"] / "out" / f"{name}-{dtype}"),
            device="cpu",
            progress=False,
            activation_dtype=dtype,
            sets=SETS[name],
        )
    )


def _tensor_bytes(folder):
    """Bytes of the site tensors in a cache folder's shards, and their dtypes."""
    total, dtypes = 0, set()
    for shard in folder.glob("shard-*.safetensors"):
        with safe_open(str(shard), framework="pt") as f:
            for name in f.keys():  # noqa: SIM118 - safe_open is no dict
                t = f.get_tensor(name)
                total += t.numel() * t.element_size()
                dtypes.add(str(t.dtype))
    return total, dtypes


def _p(outcome, which):
    store = ResultStore(outcome.prepared.store.root)
    return np.asarray(store.load_evaluation(outcome.result.rows[0].evaluation_keys[which]).p_correct)


def test_bf16_cache_is_half_the_bytes_close_and_never_mixed_with_fp32(env):
    bf = {name: _run(env, name, "bfloat16") for name in METHODS}
    assert bf["linear_probe"].counters.activations_computed > 0
    acts = env["root"] / "store" / "activations"
    bf_dirs = sorted(p for p in acts.rglob("bfloat16") if p.is_dir())
    assert bf_dirs and not list(acts.rglob("float32")), "a bf16 run wrote float32 shards"
    # a second bf16 method reads the same texts: nothing computed
    assert bf["mms"].counters.forward_passes == 0 and bf["mms"].counters.activations_computed == 0

    fp = {name: _run(env, name, "float32") for name in METHODS}
    c = fp["linear_probe"].counters
    # a float32 run reuses no bf16 activation, state or representation evaluation
    assert c.activations_computed > 0 and c.forward_passes > 0 and c.states_computed >= 2, c.as_dict()
    assert fp["mms"].counters.activations_computed == 0  # float32 entries now exist: shared by fp32 runs
    for name in METHODS:
        for which in ("generalization", "source_id"):
            assert (
                bf[name].result.rows[0].evaluation_keys[which]
                != fp[name].result.rows[0].evaluation_keys[which]
            )
        # the zero-shot baseline does not read activations: one node for both dtypes
        assert (
            bf[name].result.rows[0].evaluation_keys["baseline"]
            == fp[name].result.rows[0].evaluation_keys["baseline"]
        )

    fp_dirs = sorted(p.parent / "float32" for p in bf_dirs)
    for b, f in zip(bf_dirs, fp_dirs, strict=True):
        nb, db = _tensor_bytes(b)
        nf, df = _tensor_bytes(f)
        assert db == {"torch.bfloat16"} and df == {"torch.float32"}
        assert nb * 2 == nf, (b, nb, nf)

    for name in METHODS:
        for which in ("generalization", "source_id"):
            pb, pf = _p(bf[name], which), _p(fp[name], which)
            assert pb.shape == pf.shape
            # bf16 keeps ~3 significant digits: p(correct) moves, but not far
            assert np.mean(np.abs(pb - pf)) < 0.05 and np.max(np.abs(pb - pf)) < 0.2, (name, which, pb, pf)

    states = ResultStore(env["root"] / "store")
    dtypes = {}
    for key in states.state_keys():
        inputs = json.loads((states.state_path(key) / "inputs.json").read_text())
        dtypes.setdefault(inputs["intervention"], set()).add(inputs.get("activation_dtype", "float32"))
    assert dtypes["linear_probe"] == {"float32", "bfloat16"} and dtypes["zero_shot"] == {"float32"}


def test_unknown_activation_dtype_is_one_clear_error(env):
    with pytest.raises(ConfigError, match="--activation-dtype must be one of float32, bfloat16"):
        _run(env, "mms", "float16")
