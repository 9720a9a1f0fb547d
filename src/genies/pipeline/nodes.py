"""The inputs of each node kind: how they are built, what they mean, and the data they select.

This module is the one place that knows the layout of node inputs (the store verifies records against
it, the planner builds nodes with it, workers read data with it)::

    lengths      {"kind", "tokenizer_sha256", "data": DATA, "rule": {"kind", "template"}}
    state        {"kind", "intervention", "config", "model": MODEL, "train": TRAIN | None, "seed",
                  "scoring_version"[, "activation_dtype"]}
    evaluation   {"kind", "state": <state inputs>, "eval": EVAL, "scoring_version"}
    activations  {"kind", "model": MODEL, "data": TRAIN | EVAL, "spec": {"sites", "template", "pairs"},
                  "seed" (for one_per_example pairs of a training split, else None), "dtype"}

``activation_dtype`` (the activation cache's storage dtype, ``genies run --activation-dtype``) is in
the inputs of a state whose intervention reads cached activations only when it is not the default
``"float32"`` (so float32 keys are those of stores made before the option existed); an activations
node always names its ``dtype``. bfloat16 and float32 activations, and what was fitted or scored on
them, therefore never share a key (and the cache keeps them in separate folders).

    DATA  = {"distribution", "split", "fingerprint"}                  (fingerprint of the full split)
    TRAIN = DATA + {"limit", "drop"}        the first ``limit`` examples minus the ``drop`` indices
    EVAL  = DATA + {"limit", "requested", "pair_ids"}   the first ``limit`` pairs ("all" mode) are
            ``requested``; ``pair_ids`` are those kept after the over-length drops
    MODEL = {"name", "weights_sha256", <compute settings: device_type, dtype, …>}

``config`` is the intervention's config without its result-neutral keys; the full config travels in
the node's (unhashed) ``settings``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from genies.api.intervention import ActivationSpec, LengthRule, pair_texts
from genies.data.schema import Split
from genies.errors import DataError
from genies.pipeline.graph import Node
from genies.records import SCORING_VERSION

if TYPE_CHECKING:
    from genies.api.intervention import Intervention, InterventionConfig
    from genies.data.schema import Distribution, Pair

NO_TRAIN = Split("train", [], "")
_BUILTIN_PREFIX = "genies."


def data_ref(dist: Distribution, split: str) -> dict[str, Any]:
    s = dist.split(split)
    return {"distribution": dist.id, "split": split, "fingerprint": s.fingerprint}


def train_selection(dist: Distribution, limit: int | None, drop: Iterable[int]) -> dict[str, Any]:
    return {**data_ref(dist, "train"), "limit": limit, "drop": sorted(set(drop))}


def eval_selection(
    dist: Distribution, split: str, limit: int | None, over_length: set[int]
) -> dict[str, Any]:
    requested = dist.split(split).to_pairs("all")
    if limit is not None:
        requested = requested[:limit]
    kept = [p.id for p in requested if p.example_index not in over_length]
    return {**data_ref(dist, split), "limit": limit, "requested": len(requested), "pair_ids": kept}


def _plugin_module(iv: Intervention) -> str | None:
    mod = type(iv).__module__
    return None if mod.startswith(_BUILTIN_PREFIX) else mod


def state_label(inputs: Mapping[str, Any]) -> str:
    train = inputs.get("train")
    return (
        f"{inputs['intervention']} trained on {train['distribution']}"
        if train
        else str(inputs["intervention"])
    )


def lengths_node(tokenizer_sha256: str, model_name: str, data: dict[str, Any], rule: LengthRule) -> Node:
    inputs = {"kind": "lengths", "tokenizer_sha256": tokenizer_sha256, "data": data, "rule": rule.to_json()}
    label = f"lengths of {data['distribution']} ({data['split']}, {rule.kind})"
    return Node.make(
        "lengths", inputs, resources={"model": False}, settings={"model": model_name}, label=label
    )


#: The activation cache's storage dtypes (``genies.models.activation_cache``); the first is the default.
ACTIVATION_DTYPES = ("float32", "bfloat16")


def state_node(
    iv: Intervention,
    config: InterventionConfig,
    model: Mapping[str, Any],
    train: dict[str, Any] | None,
    seed: int,
    deps: Sequence[str] = (),
    *,
    activation_dtype: str = "float32",
) -> Node:
    reqs = iv.requirements(config)
    inputs = {
        "kind": "state",
        "intervention": iv.name,
        "config": iv.key_config(config),
        "model": dict(model),
        "train": train,
        "seed": seed,
        "scoring_version": SCORING_VERSION,
    }
    if activation_dtype != ACTIVATION_DTYPES[0] and (reqs.fit_activations or reqs.score_activations):
        inputs["activation_dtype"] = activation_dtype
    settings = {"config": config.model_dump(mode="json"), "module": _plugin_module(iv)}
    resources = {"model": bool(reqs.fit_model), "units": 0}
    return Node.make(
        "state", inputs, deps=deps, resources=resources, settings=settings, label=state_label(inputs)
    )


def evaluation_node(
    state: Node, selection: dict[str, Any], deps: Sequence[str] = (), *, needs_model: bool = True
) -> Node:
    inputs = {
        "kind": "evaluation",
        "state": state.inputs,
        "eval": selection,
        "scoring_version": SCORING_VERSION,
    }
    where = selection["distribution"] + ("" if selection["split"] == "test" else f" ({selection['split']})")
    return Node.make(
        "evaluation",
        inputs,
        deps=[state.key, *deps],
        resources={"model": needs_model, "units": len(selection["pair_ids"])},
        settings=dict(state.settings),
        label=f"{state.label} → {where}",
    )


def activations_node(
    model: Mapping[str, Any],
    selection: dict[str, Any],
    spec: ActivationSpec,
    seed: int | None,
    *,
    dtype: str = "float32",
) -> Node:
    per_example = "pair_ids" not in selection and spec.pairs == "one_per_example"
    inputs = {
        "kind": "activations",
        "model": dict(model),
        "data": selection,
        "spec": spec.to_json(),
        "seed": seed if per_example else None,
        "dtype": dtype,
    }
    label = f"activations of {selection['distribution']} ({selection['split']}, {', '.join(spec.sites)})"
    if dtype != ACTIVATION_DTYPES[0]:
        label += f" [{dtype}]"
    return Node.make("activations", inputs, resources={"model": True, "units": 0}, label=label)


def activation_dtype_of(node_inputs: Mapping[str, Any]) -> str:
    """The activation storage dtype a state, evaluation or activations node reads (default float32)."""
    if node_inputs.get("kind") == "activations":
        return str(node_inputs.get("dtype", ACTIVATION_DTYPES[0]))
    state = node_inputs["state"] if node_inputs.get("kind") == "evaluation" else node_inputs
    return str(state.get("activation_dtype", ACTIVATION_DTYPES[0]))


def describe_evaluation(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The descriptive fields of an ``EvaluationRecord`` that follow from its node inputs."""
    st, ev = inputs["state"], inputs["eval"]
    train = st.get("train")
    return {
        "intervention": st["intervention"],
        "config": st["config"],
        "model": st["model"],
        "train_distribution": train["distribution"] if train else None,
        "train_fingerprint": train["fingerprint"] if train else None,
        "eval_distribution": ev["distribution"],
        "eval_split": ev["split"],
        "eval_fingerprint": ev["fingerprint"],
        "seed": st["seed"],
        "limit": ev["limit"],
        "scoring_version": inputs["scoring_version"],
    }


# ---------------------------------------------------------------- selecting data


def checked_split(dist: Distribution, ref: Mapping[str, Any]) -> Split:
    split = dist.split(ref["split"])
    if split.fingerprint != ref["fingerprint"]:
        raise DataError(
            f"the {ref['split']} split of {dist.id} has changed since this run was planned; plan it again"
        )
    return split


def select_train(dist: Distribution, sel: Mapping[str, Any]) -> Split:
    """The training split a state is fitted on: the first ``limit`` examples minus ``drop``."""
    split = checked_split(dist, sel).head(sel["limit"])
    drop = set(sel["drop"])
    if not drop:
        return split
    return Split(split.name, [ex for ex in split.examples if ex.index not in drop], split.distribution_id)


def select_pairs(dist: Distribution, sel: Mapping[str, Any]) -> list[Pair]:
    """The evaluated pairs: ``pair_ids`` among the first ``limit`` pairs, in data order."""
    pairs = checked_split(dist, sel).to_pairs("all")
    if sel["limit"] is not None:
        pairs = pairs[: sel["limit"]]
    wanted = set(sel["pair_ids"])
    out = [p for p in pairs if p.id in wanted]
    if len(out) != len(sel["pair_ids"]):
        raise DataError(f"planned pairs of {dist.id} are not in its {sel['split']} split")
    return out


def activation_texts(dist: Distribution, inputs: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The ``(prompt, response)`` texts an activations node embeds."""
    sel = inputs["data"]
    if "pair_ids" in sel:
        return pair_texts(select_pairs(dist, sel))
    train = select_train(dist, sel)
    mode = inputs["spec"]["pairs"]
    return pair_texts(train.to_pairs(mode, seed=inputs["seed"] or 0))
