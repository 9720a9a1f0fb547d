"""Per-role intervention configs for ``genies run``: TOML tables plus ``--set`` overrides.

Three roles each get their own config (upstream passed one kwargs dict to all of them and crashed when
a key suited only one, upstream-reference §3.9.4):

* ``intervention`` — the intervention under test;
* ``baseline`` — the baseline intervention (default ``zero_shot``) run on the base model;
* ``ttc`` — the target-tuned reference. With ``--ttc single`` it is one flat table; with
  ``--ttc best-of:A,B`` it holds one sub-table per candidate (``[ttc.A]``, ``--set ttc.A.key=v``).

A TTC intervention that is the main intervention and has no TTC config of its own uses the main
intervention's config, because that is how the paper's sweep driver ran it (one kwargs dict).

Every key is validated by the intervention's pydantic config before any work starts, with strict
types: ``--set intervention.num_shots=true`` is an error, not ``1``. ``genies evaluate`` uses the same
``--set`` grammar with the one role ``intervention``.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from genies.api.intervention import Intervention, InterventionConfig
from genies.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROLES = ("intervention", "baseline", "ttc")


@dataclass(frozen=True)
class TTCSpec:
    """How target-tuned capability is defined: one intervention, or the best of several."""

    mode: Literal["single", "best-of"]
    interventions: tuple[str, ...]

    @property
    def label(self) -> str:
        return "single" if self.mode == "single" else "best-of:" + ",".join(self.interventions)


def parse_ttc(ttc: str, ttc_intervention: str | None, main: str) -> TTCSpec:
    """Parse ``--ttc`` (``single`` or ``best-of:I1,I2,…``) with ``--ttc-intervention``."""
    text = ttc.strip()
    if text == "single":
        return TTCSpec("single", (ttc_intervention or main,))
    if text.startswith("best-of:"):
        if ttc_intervention:
            raise ConfigError("--ttc-intervention applies to --ttc single; list the candidates in best-of:…")
        names = tuple(n.strip() for n in text[len("best-of:") :].split(","))
        if not names or any(not n for n in names):
            raise ConfigError(f"--ttc {ttc!r} names no interventions; use e.g. best-of:zero_shot,few_shot")
        if len(set(names)) != len(names):
            raise ConfigError(f"--ttc {ttc!r} names an intervention twice")
        return TTCSpec("best-of", names)
    raise ConfigError(f"--ttc must be 'single' or 'best-of:I1,I2,…', not {ttc!r}")


def parse_value(text: str) -> Any:
    """A ``--set`` value: a TOML literal (``4``, ``true``, ``"x"``, ``[1, 2]``) or else the raw string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_sets(items: Sequence[str], roles: Sequence[str] = ROLES) -> dict[str, Any]:
    """``["intervention.num_shots=2", "ttc.few_shot.scoring=mean"]`` → nested dict."""
    out: dict[str, Any] = {}
    for item in items:
        path, sep, value = item.partition("=")
        parts = [p.strip() for p in path.split(".")]
        if not sep or len(parts) < 2 or any(not p for p in parts):
            raise ConfigError(f"--set {item!r}: use ROLE.KEY=VALUE with ROLE one of {', '.join(roles)}")
        if parts[0] not in roles:
            raise ConfigError(f"--set {item!r}: unknown role {parts[0]!r}; use {', '.join(roles)}")
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r} conflicts with another --set")
        node[parts[-1]] = parse_value(value.strip())
    return out


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a config file; any problem is a one-line ConfigError."""
    p = Path(path)
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {p}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {p}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {p} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {p} is not valid TOML: {exc}") from None


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge ``override`` into a copy of ``base`` (tables merge, values replace)."""
    out = dict(base)
    for k, v in override.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


@dataclass(frozen=True)
class RoleConfigs:
    """Validated configs of every intervention a run uses."""

    intervention: InterventionConfig
    baseline: InterventionConfig
    ttc: dict[str, InterventionConfig] = field(default_factory=dict)
    ttc_inherited: tuple[str, ...] = ()  # TTC interventions that took the main intervention's config


def _table(raw: Mapping[str, Any], role: str) -> dict[str, Any]:
    value = raw.get(role, {})
    if not isinstance(value, Mapping):
        raise ConfigError(f"config {role!r} must be a table of keys, not {value!r}")
    return dict(value)


def resolve_configs(
    raw: Mapping[str, Any],
    *,
    main: Intervention,
    baseline: Intervention,
    ttc: TTCSpec,
    ttc_interventions: Mapping[str, Intervention],
) -> RoleConfigs:
    """Validate the raw role tables against each intervention's config class (ConfigError on any problem)."""
    unknown = sorted(set(raw) - set(ROLES))
    if unknown:
        raise ConfigError(f"unknown config table {unknown[0]!r}; use {', '.join(ROLES)}")
    main_raw = _table(raw, "intervention")
    main_cfg = _validated(main, main_raw, "intervention")
    base_cfg = _validated(baseline, _table(raw, "baseline"), "baseline")

    ttc_raw = _table(raw, "ttc")
    per_name: dict[str, dict[str, Any] | None]
    if ttc.mode == "single":
        (name,) = ttc.interventions
        nested = [k for k, v in ttc_raw.items() if isinstance(v, Mapping)]
        if nested:
            raise ConfigError(
                f"ttc.{nested[0]} is a table; with --ttc single set keys as ttc.KEY "
                "(per-intervention tables are for --ttc best-of)"
            )
        per_name = {name: ttc_raw if "ttc" in raw else None}
    else:
        flat = [k for k, v in ttc_raw.items() if not isinstance(v, Mapping)]
        if flat:
            raise ConfigError(f"with --ttc {ttc.label}, set TTC keys per intervention: ttc.<name>.{flat[0]}")
        extra = sorted(set(ttc_raw) - set(ttc.interventions))
        if extra:
            raise ConfigError(f"config for ttc.{extra[0]}, which is not a --ttc {ttc.label} candidate")
        per_name = {n: dict(ttc_raw[n]) if n in ttc_raw else None for n in ttc.interventions}

    ttc_cfgs: dict[str, InterventionConfig] = {}
    inherited: list[str] = []
    for name, values in per_name.items():
        iv = ttc_interventions[name]
        if values is None and name == main.name:
            ttc_cfgs[name] = main_cfg
            inherited.append(name)
        else:
            where = "ttc" if ttc.mode == "single" else f"ttc.{name}"
            ttc_cfgs[name] = _validated(iv, values or {}, where)
    return RoleConfigs(main_cfg, base_cfg, ttc_cfgs, tuple(inherited))


def _validated(iv: Intervention, values: Mapping[str, Any], where: str) -> InterventionConfig:
    try:
        return iv.make_config(dict(values))
    except ConfigError as exc:
        raise ConfigError(f"{where} config: {exc.message}", hint=exc.hint) from None


def intervention_values(
    config_file: str | Path | None, sets: Sequence[str], *, roles: Sequence[str] = ("intervention",)
) -> dict[str, Any]:
    """The ``[intervention]`` table of a config file merged with ``--set intervention.KEY=VALUE``
    (``genies evaluate``: one intervention, the same grammar as ``genies run``)."""
    raw: dict[str, Any] = load_toml(config_file) if config_file else {}
    unknown = sorted(set(raw) - set(roles))
    if unknown:
        raise ConfigError(f"unknown config table {unknown[0]!r}; use {', '.join(roles)}")
    raw = merge(raw, parse_sets(list(sets), roles))
    return _table(raw, "intervention")
