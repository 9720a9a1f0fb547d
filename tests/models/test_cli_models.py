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


def test_models_check_on_the_tiny_model(tiny_model_dir, use_data_dir, capsys):
    assert main(["models", "check", str(tiny_model_dir), "--pairs", "2", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    for label in (
        "batch size 1",
        "batch size 8",
        "automatic batch",
        "left padding",
        "shuffled order",
        "reference path",
    ):
        assert label in out
    assert "all within tolerance" in out and "FAIL" not in out


def test_models_check_fails_loudly_when_scores_move(tiny_model_dir, use_data_dir, capsys):
    """A tolerance below float rounding makes the check fail with exit code 1 (the FAIL path works)."""
    assert (
        main(["models", "check", str(tiny_model_dir), "--pairs", "2", "--device", "cpu", "--tol", "0"]) == 1
    )
    assert "FAILED" in capsys.readouterr().out


def test_models_check_unknown_distribution(tiny_model_dir, capsys):
    assert main(["models", "check", str(tiny_model_dir), "-d", "no_such_dist"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: unknown distribution") and "Traceback" not in err
