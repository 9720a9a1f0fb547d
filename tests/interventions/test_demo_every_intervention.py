"""Every registered intervention runs `genies run --suite synthetic` end to end on the tiny model.

Parametrized over ``list_interventions()`` at collection time, so an intervention merged from any
stream is picked up without editing this file. Each gets the fast settings of ``TEST_CONFIGS``
(filtered to the keys its config really has, so the table may name settings of interventions
written elsewhere); one that cannot run unattended is skipped with the reason in ``SKIP``.
The synthetic suite is generated small (4 train / 2 test per distribution) and every run uses
--limit 2: what is checked is that the whole path works — planning, fitting on every source,
scoring every target, the rows — not the accuracies (the tiny model is random).
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from genies.cli import main
from genies.data import synthetic as syn
from genies.interventions.registry import intervention_class, list_interventions

# One table of fast settings for the tiny model (keys an intervention's config lacks are ignored).
TEST_CONFIGS: dict[str, dict[str, Any]] = {
    "few_shot": {"num_shots": 1},
    "lora_fine_tune": {"num_train_steps": 2, "batch_size": 2},
    "prompt_tuning": {"num_train_steps": 2, "batch_size": 2},
    "full_fine_tune": {"num_train_steps": 2, "batch_size": 2},
}
# Interventions that cannot run unattended through `genies run`, with the reason.
SKIP: dict[str, str] = {
    "human_eval": "interactive: a person labels the pairs at a terminal (tested through piped input "
    "by its own tests)",
}


def _skip_reason(name: str) -> str | None:
    if name in SKIP:
        return SKIP[name]
    cls = intervention_class(name)
    if getattr(cls, "interactive", False):
        return "interactive (the class says so)"
    required = [k for k, f in cls.Config.model_fields.items() if f.is_required()]
    missing = [k for k in required if k not in TEST_CONFIGS.get(name, {})]
    if missing:  # e.g. a path to an upstream-style directory: nothing to run without one
        return f"its config requires {', '.join(missing)} with no default and TEST_CONFIGS gives none"
    return None


def _sets(name: str) -> list[str]:
    fields = intervention_class(name).Config.model_fields
    return [f"intervention.{k}={json.dumps(v)}" for k, v in TEST_CONFIGS.get(name, {}).items() if k in fields]


def test_the_table_of_fast_settings_names_only_known_keys_when_registered():
    """A key misspelt in TEST_CONFIGS would silently leave an intervention on its slow defaults."""
    for name, table in TEST_CONFIGS.items():
        if name in list_interventions():
            unknown = set(table) - set(intervention_class(name).Config.model_fields)
            assert not unknown, (name, unknown)


# Interventions that other test modules register for themselves (``test_*``: a checkpoint probe
# that kills its own run, ...) are theirs to exercise, whichever module was collected first.
@pytest.mark.parametrize("name", [n for n in list_interventions() if not n.startswith("test_")])
def test_every_intervention_runs_the_synthetic_suite(name, tiny_model_dir, tmp_path, capsys):
    why = _skip_reason(name)
    if why is not None:
        pytest.skip(f"{name}: {why}")
    syn.generate(train_size=4, test_size=2)  # into this test's GENIES_DATA_DIR (conftest isolation)
    out = tmp_path / "out"
    code = main(
        [
            "run", "-i", name, "--suite", "synthetic", "--model", str(tiny_model_dir), "--device", "cpu",
            "--limit", "2", "--out", str(out), "--no-progress",
            *[a for s in _sets(name) for a in ("--set", s)],
        ]
    )  # fmt: skip
    cap = capsys.readouterr()
    assert code == 0, cap.err[-3000:]
    doc = json.loads((out / "synthetic.json").read_text())
    assert doc["intervention"] == name and doc["suite"] == "synthetic"
    shifts = {(r["source"], r["target"]) for r in doc["rows"]}
    assert shifts == set(syn.SHIFT_NOTES)  # all 7 planted shifts, one row each
    for r in doc["rows"]:
        for col in (
            "generalization_accuracy",
            "baseline_accuracy",
            "target_tuned_capability",
            "source_ID_accuracy",
        ):
            v = r[col]
            assert v is not None and math.isfinite(v) and 0.0 <= v <= 1.0, (name, r["target"], col, v)
        assert r["extra_metrics"]["n_generalization"] >= 1, (name, r["target"])
    assert (out / "synthetic.csv").is_file()
