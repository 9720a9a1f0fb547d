"""`genies models list|prepare` through the real CLI entry point."""

from __future__ import annotations

from genies.cli import main


def test_models_list(capsys):
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "smollm2-135m" in out and "minilm-l6" in out and "gemma3-270m" in out


def test_prepare_local_folder(tiny_model_dir, capsys):
    assert main(["models", "prepare", str(tiny_model_dir)]) == 0
    assert "already prepared" in capsys.readouterr().out


def test_prepare_unknown_alias(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["models", "prepare", "smollm-135m"]) == 1
    err = capsys.readouterr().err
    assert "error: unknown model 'smollm-135m'; did you mean 'smollm2-135m'?" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
