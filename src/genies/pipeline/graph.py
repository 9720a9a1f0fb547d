"""The job graph: nodes of plain JSON, runnable in a fresh process from their JSON and the store alone.

A node is ``{key, kind, inputs, deps, resources, settings, label}``:

* ``inputs`` — everything that determines the node's result; ``key`` is their content hash
  (``genies.hashing.content_hash``, 32 hex digits), so a stored result can be checked against it;
* ``kind`` — ``lengths``, ``state``, ``evaluation`` or ``activations`` (``genies.pipeline.kinds``);
* ``deps`` — keys of the nodes whose results this one reads;
* ``resources`` — what an executor needs to know to place it: ``model`` (loads model weights),
  ``gpus``, ``units`` (progress units: pairs scored or texts embedded);
* ``settings`` — not hashed: values that never change a number (the full config with its
  result-neutral keys, the module that registers a plug-in intervention);
* ``label`` — for people (progress, logs).

A ``Graph`` keeps nodes in insertion order, which the planner makes topological (a node is added
after its dependencies); ``order()`` checks that.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from genies.errors import GeniesError
from genies.hashing import content_hash

KEY_LENGTH = 32
NODE_KINDS: tuple[str, ...] = ("lengths", "state", "evaluation", "activations")
_FIELDS = ("key", "kind", "inputs", "deps", "resources", "settings", "label")


class NodeError(GeniesError):
    """A node document that cannot be run (malformed, unknown kind, key not matching its inputs)."""


def node_key(inputs: dict[str, Any]) -> str:
    return content_hash(inputs, KEY_LENGTH)


@dataclass(frozen=True)
class Node:
    key: str
    kind: str
    inputs: dict[str, Any]
    deps: tuple[str, ...] = ()
    resources: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    label: str = ""

    @classmethod
    def make(
        cls,
        kind: str,
        inputs: dict[str, Any],
        *,
        deps: Iterable[str] = (),
        resources: dict[str, Any] | None = None,
        settings: dict[str, Any] | None = None,
        label: str = "",
    ) -> Node:
        if kind not in NODE_KINDS or inputs.get("kind") != kind:
            raise NodeError(f"unknown node kind {kind!r}; kinds are {', '.join(NODE_KINDS)}")
        return cls(
            node_key(inputs), kind, inputs, tuple(dict.fromkeys(deps)), resources or {}, settings or {}, label
        )

    # ------------------------------------------------------------ JSON

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "kind": self.kind,
            "inputs": self.inputs,
            "deps": list(self.deps),
            "resources": self.resources,
            "settings": self.settings,
            "label": self.label,
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), ensure_ascii=False, allow_nan=True)

    @classmethod
    def from_json(cls, doc: Any, *, where: str = "node") -> Node:
        """A node from its JSON object; anything malformed is a one-line NodeError."""
        if not isinstance(doc, dict):
            raise NodeError(f"{where} is not a JSON object")
        missing = [f for f in ("key", "kind", "inputs") if f not in doc]
        if missing:
            raise NodeError(f"{where} has no {missing[0]!r}")
        extra = sorted(set(doc) - set(_FIELDS))
        if extra:
            raise NodeError(f"{where} has an unknown field {extra[0]!r}")
        kind, inputs = doc["kind"], doc["inputs"]
        if kind not in NODE_KINDS:
            raise NodeError(f"{where} names an unknown kind {kind!r}; kinds are {', '.join(NODE_KINDS)}")
        if not isinstance(inputs, dict) or inputs.get("kind") != kind:
            raise NodeError(f"{where}: its inputs are not those of a {kind} node")
        deps, resources = doc.get("deps", []), doc.get("resources", {})
        settings, label = doc.get("settings", {}), doc.get("label", "")
        if not (isinstance(deps, list) and all(isinstance(d, str) for d in deps)):
            raise NodeError(f"{where}: deps must be a list of keys")
        if not isinstance(resources, dict) or not isinstance(settings, dict) or not isinstance(label, str):
            raise NodeError(f"{where}: resources and settings must be objects, label a string")
        if doc["key"] != node_key(inputs):
            raise NodeError(f"{where}: its key {doc['key']!r} is not the hash of its inputs")
        return cls(doc["key"], kind, inputs, tuple(deps), resources, settings, label)

    @classmethod
    def loads(cls, text: str, *, where: str = "node") -> Node:
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise NodeError(f"{where} is not valid JSON ({exc})") from None
        return cls.from_json(doc, where=where)


class Graph:
    """Nodes by key, deduplicated, in topological insertion order."""

    def __init__(self, nodes: Iterable[Node] = ()) -> None:
        self.nodes: dict[str, Node] = {}
        for n in nodes:
            self.add(n)

    def add(self, node: Node) -> Node:
        """Add ``node`` (its deps must be in the graph already); the same key twice is one node."""
        old = self.nodes.get(node.key)
        if old is not None:
            return old
        missing = [d for d in node.deps if d not in self.nodes]
        if missing:
            raise NodeError(f"node {node.label or node.key} depends on {missing[0]}, which is not planned")
        self.nodes[node.key] = node
        return node

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes.values())

    def __len__(self) -> int:
        return len(self.nodes)

    def __getitem__(self, key: str) -> Node:
        return self.nodes[key]

    def __contains__(self, key: object) -> bool:
        return key in self.nodes

    def of_kind(self, kind: str) -> list[Node]:
        return [n for n in self.nodes.values() if n.kind == kind]

    def dependents(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {k: [] for k in self.nodes}
        for n in self.nodes.values():
            for d in n.deps:
                out[d].append(n.key)
        return out

    def to_json(self) -> list[dict[str, Any]]:
        return [n.to_json() for n in self.nodes.values()]
