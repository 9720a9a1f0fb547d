"""`genies sweep-run --force` on the tiny model (one intervention, one shift, --limit 3): every node
is recomputed in a new run generation (as `genies run --force`: every state, activation set and
evaluation; lengths records are token counts and are kept), with the same tables; `--dry-run
--force` plans every node and writes nothing; a forced sweep killed midway is resumed, not
restarted, by the next `sweep-run`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from genies.cli import main
from genies.pipeline.sweep import FORCED_FILE, STATE_DIR, execute_sweep, load_sweep_config, prepare_sweep


def _config(tmp: Path, model: Path) -> Path:
    (tmp / "suite.json").write_text(json.dumps([{"source": "crt_1", "target": "crt_2"}]))
    path = tmp / "force.toml"
    path.write_text(
        "[sweep]\n"
        f"models = [{json.dumps(str(model))}]\n"
        'interventions = ["zero_shot"]\n'
        f"suites = [{json.dumps(str(tmp / 'suite.json'))}]\n"
        'limit = 3\ndevice = "cpu"\nout = "force-out"\nstore = "force-store"\n'
        '[config.zero_shot.intervention]\nscoring = "mean"\n'
    )
    return path


def _sweep(capsys, *argv: str) -> str:
    rc = main(["sweep-run", *argv])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    return " ".join((cap.out + cap.err).split())


def _computed(log: str) -> int:
    return int(log.split("evaluations: ")[1].split(" computed")[0])


def _generations(config: Path) -> dict[str, int]:
    sweep = prepare_sweep(load_sweep_config(config))
    return {k: sweep.store.load_evaluation(k, report=False).generation for k in sweep.sinks}


def test_force_recomputes_every_node_and_resumes_when_killed(
    use_data_dir, tiny_model_dir, tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    config = _config(tmp_path, tiny_model_dir)
    n_eval = _computed(_sweep(capsys, str(config)))
    assert n_eval >= 2  # the baseline/generalization and the target-tuned reference evaluations
    table = next((tmp_path / "force-out").rglob("*.csv")).read_bytes()
    assert _computed(_sweep(capsys, str(config))) == 0
    assert set(_generations(config).values()) == {0}

    sweep = prepare_sweep(load_sweep_config(config))
    plan = _sweep(capsys, str(config), "--dry-run", "--force")
    computed_kinds = [n for n in sweep.graph if n.kind != "lengths"]  # lengths: token counts, kept
    assert f"to compute: {len(computed_kinds)} nodes" in plan and "--force" in plan
    assert sweep.store.generation() == 0 and not (tmp_path / "force-out" / STATE_DIR / FORCED_FILE).exists()
    assert "to compute: 0 nodes" in _sweep(capsys, str(config), "--dry-run")  # the plain plan is unchanged

    log = _sweep(capsys, str(config), "--force")
    assert "forced run, generation 1" in log and _computed(log) == n_eval
    assert set(_generations(config).values()) == {1}
    assert next((tmp_path / "force-out").rglob("*.csv")).read_bytes() == table  # same numbers
    assert not (tmp_path / "force-out" / STATE_DIR / FORCED_FILE).exists()  # finished: nothing pending
    assert _computed(_sweep(capsys, str(config))) == 0  # the forced results are used from now on

    # A forced sweep killed after its first evaluation: the next plain sweep-run finishes the rest.
    class Killed(Exception):
        pass

    def kill_after_first_evaluation(node, out):
        if node.kind == "evaluation" and out.status == "computed":
            raise Killed

    with pytest.raises(Killed):
        execute_sweep(
            prepare_sweep(load_sweep_config(config)), force=True, on_outcome=kill_after_first_evaluation
        )
    assert (tmp_path / "force-out" / STATE_DIR / FORCED_FILE).exists()
    assert sorted(_generations(config).values()) == [1] * (n_eval - 1) + [2]
    assert main(["sweep-status", str(config)]) == 0
    status = " ".join(capsys.readouterr().out.split())
    assert "unfinished forced run (generation 2)" in status and "to compute: 0 nodes" not in status
    log = _sweep(capsys, str(config))
    assert "continuing the unfinished forced run of generation 2" in log
    assert _computed(log) == n_eval - 1  # only what the killed run had not finished
    assert set(_generations(config).values()) == {2}
    assert not (tmp_path / "force-out" / STATE_DIR / FORCED_FILE).exists()
    assert next((tmp_path / "force-out").rglob("*.csv")).read_bytes() == table
