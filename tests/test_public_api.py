"""The package root re-exports the public API, and importing it stays light (no torch)."""

from __future__ import annotations

import subprocess
import sys

import genies


def test_all_names_resolve():
    missing = [name for name in genies.__all__ if not hasattr(genies, name)]
    assert missing == []


def test_import_and_help_do_not_load_torch():
    code = (
        "import sys, genies, genies.cli\n"
        "heavy = [m for m in ('torch', 'transformers', 'pandas') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_builtin_interventions_registered():
    assert {"zero_shot", "few_shot"} <= set(genies.list_interventions())
