"""Job-graph nodes: plain JSON, checked when read, runnable one by one in fresh processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from genies.cli import main
from genies.pipeline.graph import Graph, Node, NodeError, node_key
from genies.pipeline.store import ResultStore
from genies.pipeline.suite import RunOptions, run_suite

TINY_SUITE = [{"source": "crt_1", "target": "crt_2"}]  # 9 nodes: 2 lengths, 3 states, 4 evaluations
HERE = Path(__file__).resolve().parent


def _node() -> Node:
    return Node.make(
        "state", {"kind": "state", "intervention": "x", "seed": 0}, resources={"model": False}, label="x"
    )


def test_node_json_round_trip_and_key():
    n = _node()
    doc = json.loads(n.dumps())
    assert set(doc) == {"key", "kind", "inputs", "deps", "resources", "settings", "label"}
    assert Node.from_json(doc) == n and n.key == node_key(n.inputs) and len(n.key) == 32


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"key": "ab", "kind": "state"', "is not valid JSON"),
        ("[1, 2]", "is not a JSON object"),
        ('{"kind": "state", "inputs": {"kind": "state"}}', "has no 'key'"),
        ('{"key": "k", "kind": "fitting", "inputs": {"kind": "fitting"}}', "unknown kind 'fitting'"),
        ('{"key": "k", "kind": "state", "inputs": {"kind": "evaluation"}}', "not those of a state node"),
        ('{"key": "k", "kind": "state", "inputs": {"kind": "state"}}', "is not the hash of its inputs"),
        ('{"key": "k", "kind": "state", "inputs": {"kind": "state"}, "colour": 1}', "unknown field 'colour'"),
    ],
)
def test_bad_node_documents_are_one_line_errors(text, message):
    with pytest.raises(NodeError, match=message) as err:
        Node.loads(text, where="node file n.json")
    assert "\n" not in str(err.value)


def test_graph_needs_dependencies_first_and_deduplicates():
    a = _node()
    b = Node.make("evaluation", {"kind": "evaluation", "of": a.key}, deps=[a.key])
    with pytest.raises(NodeError, match="not planned"):
        Graph([b])
    g = Graph([a, b, a])
    assert len(g) == 2 and g.dependents()[a.key] == [b.key]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"key": "ab", "kind": "sta', "is not valid JSON"),
        (b'{"key": "k", "kind": "training", "inputs": {"kind": "training"}}', "unknown kind 'training'"),
        (b"\xff\xfe", "is not UTF-8 text"),
    ],
)
def test_node_command_rejects_bad_files_in_one_line(tmp_path, capsys, content, message):
    f = tmp_path / "node.json"
    f.write_bytes(content)
    assert main(["node", str(f), "--store", str(tmp_path / "store")]) == 1
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    assert not (tmp_path / "store" / "evaluations").exists()


# ------------------------------------------------------------------------------ a real plan, node by node


def _comparable(path: Path) -> dict:
    doc = json.loads(path.read_text())
    for volatile in ("created", "timings", "environment", "versions"):
        doc.pop(volatile)
    return doc


def test_every_node_of_a_real_plan_runs_in_a_fresh_process_and_gives_the_same_record(
    use_data_dir, tiny_model_dir, tmp_path
):
    suite = tmp_path / "suite.json"
    suite.write_text(json.dumps(TINY_SUITE))
    options = RunOptions(
        intervention="few_shot",
        sets=["intervention.num_shots=1"],
        suite=str(suite),
        model=str(tiny_model_dir),
        device="cpu",
        limit=2,
        store=tmp_path / "ref-store",
        out=tmp_path / "ref-out",
        progress=False,
    )
    reference = run_suite(options)
    graph = reference.prepared.plan.graph
    kinds = [n.kind for n in graph]
    assert {"lengths", "state", "evaluation"} <= set(kinds)

    store = tmp_path / "fresh-store"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    for i, node in enumerate(graph):  # graph order is topological: every dependency runs first
        f = tmp_path / "nodes" / f"{i:02d}-{node.kind}.json"
        f.parent.mkdir(exist_ok=True)
        f.write_text(node.dumps())
        code = "import sys; from genies.cli import main; sys.exit(main(sys.argv[1:]))"
        proc = subprocess.run(
            [
                sys.executable,
                "-c",
                code,
                "node",
                str(f),
                "--store",
                str(store),
                "--data-dir",
                str(use_data_dir),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr
        outcome = json.loads(proc.stdout.strip().splitlines()[-1])
        assert outcome["key"] == node.key and outcome["status"] == "computed", outcome

    ref, fresh = ResultStore(tmp_path / "ref-store"), ResultStore(store)
    for node in graph.of_kind("evaluation"):
        assert _comparable(fresh.evaluation_path(node.key)) == _comparable(ref.evaluation_path(node.key))
    for node in graph.of_kind("state"):
        a, b = ref.load_state(node.key), fresh.load_state(node.key)
        assert a.state.meta == b.state.meta and a.generation == b.generation
    for node in graph.of_kind("lengths"):
        assert fresh.load_lengths(node.key).longest == ref.load_lengths(node.key).longest
