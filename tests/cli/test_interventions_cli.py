"""`genies interventions list|show`: built-ins with their source, summary and needs; a pip-installed
plug-in (examples/plugin-package, installed with ``pip install --target`` and found through
PYTHONPATH by a fresh ``genies`` process) listed as an entry point of its distribution; a class
registered in code; plug-ins that did not load, with their one-line error; config fields with types,
defaults, constraints and descriptions; unknown names get close matches and exit 1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pydantic
import pytest

from genies.api import Intervention, InterventionConfig, InterventionState, ScoredPairs
from genies.cli import main
from genies.interventions import registry


class _EntryPoint:
    """A stand-in for importlib.metadata.EntryPoint (name, value, module, attr, load)."""

    def __init__(self, name: str, value: str, *, target: object = None, error: Exception | None = None):
        self.name, self.value = name, value
        self.module, _, self.attr = value.partition(":")
        self._target, self._error = target, error

    def load(self) -> object:
        if self._error is not None:
            raise self._error
        return self._target


@pytest.fixture
def fresh_registry(monkeypatch):
    """The registry reloaded from scratch for this test, restored after it."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    for attr in ("_FAILED", "_ENTRY_POINTS", "_SHADOWED"):
        monkeypatch.setattr(registry, attr, {})
    monkeypatch.setattr(registry, "_loaded", False)


def _json(argv, capsys):
    code = main(argv)
    cap = capsys.readouterr()
    assert code == 0, cap.err
    return json.loads(cap.out)


def test_list_shows_every_builtin_with_source_summary_and_needs(fresh_registry, capsys):
    doc = _json(["interventions", "list", "--json"], capsys)
    by_name = {d["name"]: d for d in doc["interventions"]}
    assert sorted(by_name) == registry.list_interventions()
    zs, mms, lora = by_name["zero_shot"], by_name["mms"], by_name["lora_fine_tune"]
    assert zs["origin"] == {"kind": "builtin", "module": "genies.interventions.zero_shot",
                            "entry_point": None, "distribution": None, "version": None}  # fmt: skip
    assert "log-probabilities" in zs["summary"]
    assert zs["needs"]["train_data"] is False and zs["needs"]["score_model"] is True
    assert mms["needs"]["activation_sites"] == ["heads"] and mms["needs"]["fit_model"] is False
    assert lora["needs"]["fit_model"] is True and lora["needs"]["train_data"] is True
    assert by_name["upstream_dir"]["needs"] is None and "path" in by_name["upstream_dir"]["needs_note"]
    assert doc["not_loaded"] == {}

    assert main(["interventions", "list"]) == 0
    out = capsys.readouterr().out
    for name in by_name:
        assert name in out
    assert "built-in genies.interventions.mms" in out and "activations: heads" in out
    assert "not loaded" not in out


def test_show_prints_config_fields(capsys):
    doc = _json(["interventions", "show", "random", "--json"], capsys)
    fields = {f["name"]: f for f in doc["config"]}
    assert list(fields) == ["mode", "confidence"]
    assert fields["mode"]["type"] == "'uniform' | 'coin' | 'constant'"
    assert fields["mode"]["default"] == "uniform" and fields["mode"]["description"] == "How p is drawn."
    assert fields["confidence"]["constraints"] == "≥ 0.5, ≤ 1.0" and fields["confidence"]["default"] == 0.75
    lora = {
        f["name"]: f for f in _json(["interventions", "show", "lora_fine_tune", "--json"], capsys)["config"]
    }
    assert (
        lora["target_modules"]["type"] == "tuple[str, ...] | None"
        and lora["target_modules"]["default"] is None
    )
    assert lora["eval_batch_size"]["result_neutral"] and not lora["learning_rate"]["result_neutral"]
    upstream = {
        f["name"]: f for f in _json(["interventions", "show", "upstream_dir", "--json"], capsys)["config"]
    }
    assert upstream["path"]["required"] and upstream["train_kwargs"]["default"] == {}

    assert main(["interventions", "show", "lora_fine_tune"]) == 0
    out = capsys.readouterr().out
    assert "learning_rate" in out and "0.0002" in out and "Constant learning rate" in out
    assert "[intervention]" in out and "no (result-neutral)" in out


def test_unknown_name_is_one_line_with_close_matches(capsys):
    assert main(["interventions", "show", "lora_fine_tun"]) == 1
    cap = capsys.readouterr()
    lines = [ln for ln in cap.err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "did you mean 'lora_fine_tune'" in lines[0] and "Traceback" not in cap.err


class _CodeConfig(InterventionConfig):
    k: int = pydantic.Field(3, ge=1, description="How many.")


class _InCode(Intervention):
    """Registered in user code with the decorator."""

    Config = _CodeConfig

    def fit(self, ctx, train, config):
        return InterventionState()

    def score_pairs(self, ctx, state, pairs, config):
        return ScoredPairs([], [])


def test_failed_shadowed_and_code_registered_plugins_are_listed(fresh_registry, monkeypatch, capsys):
    eps = [
        _EntryPoint(
            "broken_probe", "broken_pkg.probe:Probe", error=ImportError("No module named 'broken_pkg'")
        ),
        _EntryPoint("mms", "other_pkg:Mms", target=_InCode),  # the name a built-in holds
    ]
    monkeypatch.setattr(registry, "entry_points", lambda group: eps)
    registry.register_intervention("in_code_probe")(_InCode)
    doc = _json(["interventions", "list", "--json"], capsys)
    assert set(doc["not_loaded"]) == {"broken_probe", "mms"}
    assert doc["not_loaded"]["broken_probe"] == "broken_pkg.probe:Probe: No module named 'broken_pkg'"
    assert "taken by genies.interventions.mms" in doc["not_loaded"]["mms"]
    code = {d["name"]: d for d in doc["interventions"]}["in_code_probe"]
    assert code["origin"]["kind"] == "registered" and code["origin"]["module"] == __name__
    assert code["summary"] == "Registered in user code with the decorator."
    assert code["needs"]["fit_model"] is True  # Intervention's cautious default requirements

    assert main(["interventions", "list"]) == 0
    out = capsys.readouterr().out
    assert "2 plug-in(s) not loaded" in out and "broken_probe" in out and "No module named" in out
    assert f"registered in {__name__}" in out
    assert main(["interventions", "show", "broken_probe"]) == 1
    err = capsys.readouterr().err
    assert "plug-in 'broken_probe' failed to load" in err and "Traceback" not in err


def _genies(args: list[str], site: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])),
    }
    script = Path(sys.executable).with_name("genies")  # the console script a user runs
    cmd = [str(script), *args] if script.exists() else [sys.executable, "-m", "_genies_entry", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


def test_pip_installed_plugin_appears_in_a_fresh_process(example_plugin_site):
    done = _genies(["interventions", "list", "--json"], example_plugin_site)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    plugin = {d["name"]: d for d in doc["interventions"]}["length_preference"]
    assert plugin["origin"] == {"kind": "entry_point", "module": "genies_length_plugin",
                                "entry_point": "genies_length_plugin:LengthPreference",
                                "distribution": "genies-length-plugin", "version": "0.1.0"}  # fmt: skip
    assert plugin["summary"].startswith("Prefers the longer")
    assert plugin["needs"] == {"train_data": True, "fit_model": False, "score_model": False,
                               "activation_sites": [], "label": "train split · no model"}  # fmt: skip
    done = _genies(["interventions", "list"], example_plugin_site)
    assert done.returncode == 0 and "entry point genies_length_plugin:LengthPreference" in done.stdout
    assert "genies-length-plugin 0.1.0" in done.stdout
    done = _genies(["interventions", "show", "length_preference", "--json"], example_plugin_site)
    fields = {f["name"]: f for f in json.loads(done.stdout)["config"]}
    assert fields["scale"] == {"name": "scale", "type": "float", "default": 100.0, "required": False,
                               "constraints": "> 0", "result_neutral": False,
                               "description": "Characters per unit of the length feature."}  # fmt: skip
