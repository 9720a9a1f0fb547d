"""Decorator registry of interventions, extended by the ``genies.interventions`` entry-point group.

Built-ins register themselves on import; third-party packages declare e.g.::

    [project.entry-points."genies.interventions"]
    my_probe = "my_pkg.probe:MyProbe"

A plug-in whose entry point fails to load is remembered with its error and reported by name when it
is asked for (``get_intervention``) or listed (``plugin_errors``); every other plug-in still loads.
``origin(name)`` says where a registered intervention came from (a built-in module, an entry point
of an installed distribution, or a ``register_intervention`` call in user code), and
``shadowed_entry_points()`` which entry points were ignored because their name was already taken.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Literal

from genies.api.intervention import Intervention
from genies.errors import GeniesError, UnknownNameError

_REGISTRY: dict[str, type[Intervention]] = {}
_FAILED: dict[str, str] = {}  # entry-point name → why it did not load
_ENTRY_POINTS: dict[str, Any] = {}  # name → the entry point that registered it
_SHADOWED: dict[str, str] = {}  # entry-point name → why it was ignored (the name was taken)
_BUILTIN_MODULES = (
    "genies.interventions.zero_shot",
    "genies.interventions.few_shot",
    "genies.interventions.mms",
    "genies.interventions.lat",
    "genies.interventions.cra",
    "genies.interventions.ccs",
    "genies.interventions.lat_pca",
    "genies.interventions.linear_probe",
    "genies.interventions.lora_fine_tune",
    "genies.interventions.prompt_tuning",
    "genies.interventions.full_fine_tune",
    "genies.interventions.random_baseline",
    "genies.interventions.human_eval",
    "genies.interventions.upstream_dir",
)
ENTRY_POINT_GROUP = "genies.interventions"
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
            module = importlib.import_module(mod)
        except ModuleNotFoundError as exc:  # a built-in not written yet must not break the others
            if exc.name != mod:
                raise
            continue
        _register_module_classes(module)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in _REGISTRY:
            taken = _REGISTRY[ep.name]
            if getattr(ep, "module", None) != taken.__module__:
                _SHADOWED[ep.name] = f"{ep.value}{_dist_label(ep)}: the name is taken by {taken.__module__}"
            elif getattr(ep, "attr", None) == taken.__name__:  # its module was imported first: no conflict
                _ENTRY_POINTS[ep.name] = ep
            continue
        try:
            cls = ep.load()
            register_intervention(ep.name)(cls)
            _ENTRY_POINTS[ep.name] = ep
        except Exception as exc:  # noqa: BLE001 - a broken plug-in is reported by name, not fatal for the rest
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            _FAILED[ep.name] = f"{ep.value}{_dist_label(ep)}: {text}"


def _register_module_classes(module: object) -> None:
    """Re-register the interventions a module defined (``register_intervention`` set their ``name``).

    Registration is an import side effect, which happens once per process; a registry that was
    reset later (tests do) would otherwise never see the built-ins again."""
    for obj in vars(module).values():
        if (
            isinstance(obj, type)
            and issubclass(obj, Intervention)
            and obj.__module__ == getattr(module, "__name__", None)
            and isinstance(getattr(obj, "name", None), str)
            and obj.name
            and obj.name not in _REGISTRY
        ):
            _REGISTRY[obj.name] = obj


def _dist_label(ep: Any) -> str:
    dist = getattr(ep, "dist", None)
    name = getattr(dist, "name", None)
    return f" ({name} {getattr(dist, 'version', '?')})" if name else ""


@dataclass(frozen=True)
class Origin:
    """Where a registered intervention comes from.

    ``kind``: ``"builtin"`` (a genies module), ``"entry_point"`` (``entry_point`` is its
    ``module:attr`` in the ``genies.interventions`` group, of the installed ``distribution`` at
    ``version`` when the metadata says) or ``"registered"`` (``register_intervention`` in ``module``).
    """

    kind: Literal["builtin", "entry_point", "registered"]
    module: str
    entry_point: str | None = None
    distribution: str | None = None
    version: str | None = None

    def label(self) -> str:
        if self.kind == "builtin":
            return f"built-in {self.module}"
        if self.kind == "entry_point":
            return f"entry point {self.entry_point}" + (
                f" ({self.distribution} {self.version})" if self.distribution else ""
            )
        return f"registered in {self.module}"


def origin(name: str) -> Origin:
    """Where the intervention registered as ``name`` comes from (did-you-mean error otherwise)."""
    cls = intervention_class(name)
    if cls.__module__ in _BUILTIN_MODULES:
        return Origin("builtin", cls.__module__)
    ep = _ENTRY_POINTS.get(name)
    if ep is not None and _REGISTRY.get(name) is cls:
        dist = getattr(ep, "dist", None)
        return Origin(
            "entry_point",
            cls.__module__,
            entry_point=ep.value,
            distribution=getattr(dist, "name", None),
            version=getattr(dist, "version", None),
        )
    return Origin("registered", cls.__module__)


def shadowed_entry_points() -> dict[str, str]:
    """Entry points ignored because a built-in or an earlier registration holds their name."""
    _load_all()
    return dict(_SHADOWED)


def list_interventions() -> list[str]:
    """Names of every intervention that loaded (see ``plugin_errors`` for those that did not)."""
    _load_all()
    return sorted(_REGISTRY)


def plugin_errors() -> dict[str, str]:
    """Entry points that failed to load: name → ``module:attr: first line of the error``."""
    _load_all()
    return dict(_FAILED)


def intervention_class(name: str) -> type[Intervention]:
    _load_all()
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name in _FAILED:
        raise GeniesError(f"intervention plug-in {name!r} failed to load ({_FAILED[name]})")
    raise UnknownNameError("intervention", name, _REGISTRY)


def get_intervention(name: str) -> Intervention:
    """Instantiate the intervention registered as ``name`` (did-you-mean error otherwise)."""
    return intervention_class(name)()


def ensure_registered(name: str, module: str | None) -> None:
    """Make ``name`` available in a fresh process: load the registry, then import ``module`` (the
    module that registered it in the planning process) if the name is still unknown."""
    _load_all()
    if name not in _REGISTRY and name not in _FAILED and module:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise GeniesError(
                f"cannot import {module!r}, which defines intervention {name!r}: {exc}"
            ) from None
