"""The plug-in API end to end: examples/plugin-package installed for real (pip into a temporary
target folder on sys.path, with its dist-info) registers `length_preference` through the
`genies.interventions` entry-point group, and `genies run` uses it with no change to genies; a plug-in
that raises gets a one-line error and keeps the results already stored."""

from __future__ import annotations

import json

import pytest

from genies.interventions import registry


@pytest.fixture
def with_plugin(example_plugin_site, monkeypatch):
    monkeypatch.syspath_prepend(str(example_plugin_site))
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    for attr in ("_FAILED", "_ENTRY_POINTS", "_SHADOWED"):
        monkeypatch.setattr(registry, attr, {})
    monkeypatch.setattr(registry, "_loaded", False)
    return example_plugin_site


def test_entry_point_plugin_registers_and_runs(with_plugin, use_data_dir, tiny_model_dir, tmp_path, capsys):
    from genies.cli import main

    assert "length_preference" in registry.list_interventions()
    assert registry.intervention_class("length_preference").__module__ == "genies_length_plugin"
    store, out = tmp_path / "store", tmp_path / "out"
    base = ["run", "-i", "length_preference", "--suite", "test", "--limit", "10", "--model",
            str(tiny_model_dir), "--device", "cpu", "--store", str(store), "--no-progress"]  # fmt: skip
    assert main([*base, "--out", str(out)]) == 0, capsys.readouterr().err
    doc = json.loads(next(out.glob("*.json")).read_text())
    text = json.dumps(doc)
    assert "length_preference" in text
    stored = sorted(p.name for p in store.rglob("evaluations/*/*.json"))
    assert stored
    capsys.readouterr()
    code = main([*base, "--out", str(tmp_path / "out2"), "--set", "intervention.fail=true"])
    err = capsys.readouterr().err
    assert code != 0 and "asked to fail" in err and "Traceback" not in err
    assert set(stored) <= {p.name for p in store.rglob("evaluations/*/*.json")}  # nothing lost
