"""What the registry holds, described for people: ``genies interventions list`` and ``show``.

For each registered intervention: where it comes from (``registry.origin``), a one-line summary
(its class docstring, else its module's), what it needs (read from ``requirements`` at the default
config: no model is loaded, nothing runs) and its config fields with types, defaults, constraints
and descriptions (the pydantic ``Config``). Everything here is JSON-able for ``--json``.
"""

from __future__ import annotations

import inspect
import types
import typing
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import pydantic
import pydantic_core

from genies.api.intervention import Intervention, Requirements
from genies.interventions import registry

_BOUNDS = (("gt", ">"), ("ge", "≥"), ("lt", "<"), ("le", "≤"), ("multiple_of", "multiple of"))


@dataclass(frozen=True)
class ConfigField:
    """One config key: its type as written, default (``required`` when it has none), constraints."""

    name: str
    type: str
    default: Any
    required: bool
    constraints: str
    description: str
    result_neutral: bool  # never changes a number: left out of cache keys


@dataclass(frozen=True)
class Needs:
    """What ``fit`` and scoring read at the default config (``Requirements``, summarised)."""

    train_data: bool
    fit_model: bool
    score_model: bool
    activation_sites: tuple[str, ...]

    def label(self) -> str:
        parts = ["train split" if self.train_data else "no training data"]
        if self.train_data and self.fit_model:
            parts.append("model in fit")
        if self.activation_sites:
            parts.append("activations: " + ", ".join(self.activation_sites))
        if self.score_model:
            parts.append("model in scoring")
        elif not self.fit_model and not self.activation_sites:
            parts.append("no model")
        return " · ".join(parts)


@dataclass(frozen=True)
class InterventionInfo:
    name: str
    origin: registry.Origin
    summary: str
    needs: Needs | None  # None: the config has required keys, so there is no default to ask
    needs_note: str = ""
    fields: tuple[ConfigField, ...] = field(default_factory=tuple)

    def to_json(self, *, with_fields: bool = True) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "name": self.name,
            "origin": asdict(self.origin),
            "source": self.origin.label(),
            "summary": self.summary,
            "needs": None if self.needs is None else {**asdict(self.needs), "label": self.needs.label()},
        }
        if self.needs_note:
            doc["needs_note"] = self.needs_note
        if with_fields:
            doc["config"] = [asdict(f) for f in self.fields]
        return doc


def summary(cls: type[Intervention]) -> str:
    """The first paragraph of the class's own docstring (not a base class's), else of its module's."""
    import sys

    for doc in (cls.__dict__.get("__doc__"), getattr(sys.modules.get(cls.__module__), "__doc__", None)):
        if isinstance(doc, str) and doc.strip():
            first = inspect.cleandoc(doc).split("\n\n", 1)[0]
            return " ".join(first.split())
    return ""


def type_name(tp: Any) -> str:
    """A type annotation as a user writes it: ``int | None``, ``'uniform' | 'coin'``, ``tuple[str, ...]``."""
    if tp is type(None):
        return "None"
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        inner = ", ".join("..." if a is Ellipsis else type_name(a) for a in args)
        return f"{name}[{inner}]" if args else name
    if tp is typing.Any:
        return "any"
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _jsonable(value: Any) -> Any:
    try:
        return pydantic_core.to_jsonable_python(value)
    except Exception:  # noqa: BLE001 - a plug-in's default of a type pydantic cannot serialise
        return repr(value)


def _constraints(info: pydantic.fields.FieldInfo) -> str:
    out = []
    for item in info.metadata:
        for attr, sign in _BOUNDS:
            value = getattr(item, attr, None)
            if value is not None:
                out.append(f"{sign} {value}")
    return ", ".join(out)


def config_fields(cls: type[Intervention], neutral: frozenset[str] = frozenset()) -> tuple[ConfigField, ...]:
    """The fields of ``cls.Config`` in declaration order."""
    rows = []
    for name, info in cls.Config.model_fields.items():
        required = info.is_required()
        default = None if required else info.get_default(call_default_factory=True)
        rows.append(
            ConfigField(
                name=name,
                type=type_name(info.annotation),
                default=_jsonable(default),
                required=required,
                constraints=_constraints(info),
                description=" ".join((info.description or "").split()),
                result_neutral=name in neutral,
            )
        )
    return tuple(rows)


def _requirements(cls: type[Intervention]) -> tuple[Requirements | None, str]:
    required = [n for n, f in cls.Config.model_fields.items() if f.is_required()]
    if required:
        return None, "depends on the config (required: " + ", ".join(required) + ")"
    try:
        return cls().requirements(cls.make_config({})), ""
    except Exception as exc:  # noqa: BLE001 - a plug-in's requirements() may fail; listing must not
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return None, f"requirements() failed: {text}"


def describe(name: str) -> InterventionInfo:
    """Everything ``genies interventions show`` prints (unknown names: a did-you-mean error)."""
    cls = registry.intervention_class(name)
    req, note = _requirements(cls)
    needs = None
    if req is not None:
        sites = {s for spec in (*req.fit_activations, *req.score_activations) for s in spec.sites}
        needs = Needs(req.train_data, req.fit_model, req.score_model, tuple(sorted(sites)))
    return InterventionInfo(
        name=name,
        origin=registry.origin(name),
        summary=summary(cls),
        needs=needs,
        needs_note=note,
        fields=config_fields(cls, req.result_neutral if req is not None else frozenset()),
    )


def catalog() -> tuple[list[InterventionInfo], dict[str, str]]:
    """Every registered intervention, described; and the entry points that did not load, with why
    (failed imports and names already taken by another registration)."""
    infos = [describe(n) for n in registry.list_interventions()]
    problems = {**registry.shadowed_entry_points(), **registry.plugin_errors()}
    return infos, dict(sorted(problems.items()))


__all__ = ["ConfigField", "InterventionInfo", "Needs", "catalog", "config_fields", "describe"]
