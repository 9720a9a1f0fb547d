"""Decorator registry of interventions, extended by the ``genies.interventions`` entry-point group.

Built-ins register themselves on import; third-party packages declare e.g.::

    [project.entry-points."genies.interventions"]
    my_probe = "my_pkg.probe:MyProbe"
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from genies.api.intervention import Intervention
from genies.errors import GeniesError, UnknownNameError

_REGISTRY: dict[str, type[Intervention]] = {}
_BUILTIN_MODULES = ("genies.interventions.zero_shot", "genies.interventions.few_shot")
_loaded = False


def register_intervention(name: str):
    """Class decorator: register an ``Intervention`` subclass under ``name``."""

    def deco(cls: type[Intervention]) -> type[Intervention]:
        if not (isinstance(cls, type) and issubclass(cls, Intervention)):
            raise TypeError(f"{cls!r} is not an Intervention subclass")
        existing = _REGISTRY.get(name)
        if existing is not None and existing is not cls:
            raise ValueError(f"intervention {name!r} is already registered by {existing.__module__}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def _load_all() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for mod in _BUILTIN_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:  # a built-in not written yet must not break the others
            if exc.name != mod:
                raise
    for ep in entry_points(group="genies.interventions"):
        if ep.name in _REGISTRY:
            continue
        try:
            cls = ep.load()
        except Exception as exc:  # a broken plug-in is reported, not fatal for the rest
            raise GeniesError(f"cannot load intervention plug-in {ep.name!r} ({ep.value}): {exc}") from exc
        register_intervention(ep.name)(cls)


def list_interventions() -> list[str]:
    _load_all()
    return sorted(_REGISTRY)


def get_intervention(name: str) -> Intervention:
    """Instantiate the intervention registered as ``name`` (did-you-mean error otherwise)."""
    _load_all()
    try:
        return _REGISTRY[name]()
    except KeyError:
        raise UnknownNameError("intervention", name, _REGISTRY) from None
