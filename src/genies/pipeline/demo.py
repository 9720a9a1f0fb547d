"""``genies demo``: the whole benchmark in miniature, on a laptop CPU, in about ten minutes.

Steps, each timed:

1. prepare the model (convert SmolLM2's GGUF once; a local folder is used as is);
2. generate the synthetic suite into the data store (``genies.data.synthetic.generate``; < 1 s);
3. run every registered intervention that fits the wall-clock budget over suite ``synthetic``, each
   through ``genies run``'s own machinery (``run_suite``): ``zero_shot`` first (it is also every
   other run's baseline, so its evaluations are reused), then the ones in ``DEMO_ORDER``, then any
   other registered intervention. Each gets the fast settings of ``DEMO_CONFIGS`` (filtered to the
   keys its config really has) and is skipped, with one line, when it is not registered in this
   build, is interactive, or would not fit what is left of the budget;
4. if the official data is in the store (or ``GENIES_DATA_SOURCE`` / ``--data-source`` names a
   release to import), the same on the real ``test`` suite with a small ``--limit``;
5. the results: one accuracy table over shifts × interventions beside what each shift planted, the
   paired comparison of every intervention with zero_shot (``genies.report.compare``), and
   ``demo-report.html`` (``genies.report.html``) in the output folder; then the commands that run
   the real GENIES benchmark.

The budget is checked before each run, from the seconds per scored pair measured on the first run
times a per-intervention cost factor (``DemoConfig.cost``): a run is never cut short, a run that
would overshoot is skipped. Everything is cached in the result store like any ``genies run``: a
second ``genies demo`` reuses every evaluation and finishes in seconds.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from genies.errors import GeniesError, InterruptedRun

if TYPE_CHECKING:
    from rich.console import Console

    from genies.records import SuiteResult

SYNTH_SUITE = "synthetic"
REAL_SUITE = "test"
DATA_SOURCE_ENV = "GENIES_DATA_SOURCE"
REPORT_NAME = "demo-report.html"
# Seconds per scored pair assumed when the first run computed nothing (everything cached) and so
# measured no rate: SmolLM2 zero_shot on the synthetic suite took 1.05 CPU-seconds per pair
# (578 CPU-s for 550 pairs, 2-core machine under load), i.e. about 0.5 s of wall time on 2 idle cores.
DEFAULT_SECONDS_PER_PAIR = 0.5
# The real `test` suite's texts (us_history_*) are several times longer than the synthetic ones.
REAL_TEXT_COST = 5.0
# Seconds kept for the results at the end (tables, paired comparisons, demo-report.html: ~5 s).
RESULTS_RESERVE_S = 20.0


@dataclass(frozen=True)
class DemoConfig:
    """Fast settings of one intervention in the demo.

    ``config``: keys for its ``[intervention]`` config (keys its config class does not have are
    dropped, with a note: the table may name settings of interventions written elsewhere);
    ``cost``: its seconds per scored pair relative to zero_shot, for the budget check (activation
    extraction included); ``train_cost``: for a method that trains (``num_train_steps`` ×
    ``batch_size`` pairs per training), zero_shot pair-seconds per trained pair and step (forward,
    backward and optimizer); ``limit``: its own ``--limit`` instead of the demo's; ``shifts``: the
    (source, target) shifts of the synthetic suite it runs on (None: all), so that a slow method
    still shows its planted pass and fail within the budget.
    """

    config: dict[str, Any] = field(default_factory=dict)
    cost: float = 1.0
    train_cost: float = 0.0
    limit: int | None = None
    shifts: tuple[tuple[str, str], ...] | None = None


# The shifts a training method runs on when it cannot afford all seven: one planted failure (the
# spurious length cue flips) and one planted success (the same facts in a fictional frame), so that
# each trains 4 reward models (2 sources, 2 target references) instead of 11.
TELLING_SHIFTS = (
    ("synth_shorter_correct", "synth_longer_correct"),
    ("synth_facts", "synth_facts_fiction"),
)
# A training step is ~5 zero_shot pair-scorings per trained pair on SmolLM2 (two sequences forward
# with dropout, backward ~1x forward, AdamW; 8 steps x 4 pairs took 28-42 s against 0.2 s/pair).
TRAIN_COST = 5.0
# LoRA at its paper settings (lr 2e-4, 150 steps x 16) barely leaves ln 2 in the few steps a CPU
# demo affords; lr 2e-3 for 8 steps x 4 pairs learns the source (loss 0.69 -> 0.24 on the length cue).
FAST_TUNING = {"num_train_steps": 8, "batch_size": 4, "learning_rate": 2e-3}

# Tune here. Costs are rough ratios measured on SmolLM2 at the demo's sizes.
DEMO_CONFIGS: dict[str, DemoConfig] = {
    "zero_shot": DemoConfig(),
    # per-head and residual activations of every text once (cached), then small probes
    # (measured 0.28 s/pair against zero_shot's 0.31 at --limit 20: cost ~0.9; kept above)
    "mms": DemoConfig(cost=1.5),
    "lora_fine_tune": DemoConfig(FAST_TUNING, cost=1.5, train_cost=TRAIN_COST, shifts=TELLING_SHIFTS),
    # demonstrations make every prompt ~3x longer
    "few_shot": DemoConfig({"num_shots": 2}, cost=3.0),
    # these read the activations mms cached (the raw template): fits only
    "lat_stim_1": DemoConfig(cost=0.3),
    "lat_pca": DemoConfig(cost=0.3),
    "linear_probe": DemoConfig(cost=0.3),
    "random": DemoConfig(cost=0.05),
    # new templates: a forward pass over every text again
    "lat_stim_2": DemoConfig(cost=1.2),
    "cra": DemoConfig(cost=2.0),  # two templates (Yes / No)
    "ccs": DemoConfig(cost=2.0),
    "prompt_tuning": DemoConfig(
        {**FAST_TUNING, "learning_rate": 0.0052},
        cost=1.5,
        train_cost=TRAIN_COST,
        shifts=TELLING_SHIFTS,
    ),
    "full_fine_tune": DemoConfig(
        {**FAST_TUNING, "learning_rate": 2e-5},
        cost=1.5,
        train_cost=2 * TRAIN_COST,
        shifts=TELLING_SHIFTS,
    ),
}
# Run first (after zero_shot), in this order; then the rest of DEMO_CONFIGS, then other plug-ins.
DEMO_ORDER = ("zero_shot", "mms", "lora_fine_tune", "lat_stim_1", "lat_pca", "linear_probe", "random")
# Never run by the demo, whatever is registered.
NOT_IN_DEMO: dict[str, str] = {"human_eval": "interactive: it asks a person to label pairs"}

UNREGISTERED = "not registered in this build"

Status = Literal["ran", "cached", "skipped", "failed", "absent"]


@dataclass
class DemoOptions:
    model: str = "smollm2-135m"
    out: Path = Path("genies-results/demo")
    store: Path | None = None
    data_dir: Path | None = None
    budget_s: float = 600.0
    seed: int = 0
    train_size: int | None = None  # None: the generator's defaults (200 / 100)
    test_size: int | None = None
    limit: int | None = 20
    real_limit: int = 20
    interventions: Sequence[str] | None = None  # None: every registered one (budget permitting)
    data_source: str | None = None  # a release to import for the real step (default $GENIES_DATA_SOURCE)
    device: str = "auto"
    progress: bool = True


@dataclass
class Step:
    """One timed step of the demo (a preparation or one ``genies run``)."""

    name: str
    status: Status
    seconds: float = 0.0
    note: str = ""
    suite: str | None = None
    intervention: str | None = None
    json_path: Path | None = None
    result: SuiteResult | None = None
    pairs_computed: int = 0


@dataclass
class DemoOutcome:
    steps: list[Step]
    out: Path
    report: Path | None
    wall_s: float

    def runs(self, suite: str = SYNTH_SUITE) -> list[Step]:
        return [s for s in self.steps if s.suite == suite and s.result is not None]


# ---------------------------------------------------------------- what to run


def run_order(requested: Sequence[str] | None = None) -> list[str]:
    """The interventions the demo tries, in order: zero_shot, DEMO_ORDER, DEMO_CONFIGS, the rest
    registered (or ``requested``, zero_shot always first: it is every run's baseline)."""
    from genies.interventions.registry import list_interventions

    if requested is not None:
        names = list(dict.fromkeys(["zero_shot", *requested]))
    else:
        names = list(dict.fromkeys([*DEMO_ORDER, *DEMO_CONFIGS, *list_interventions()]))
    return names


def why_not_run(name: str) -> str | None:
    """Why ``name`` cannot run in the demo (not registered, interactive), or None."""
    from genies.interventions.registry import intervention_class, list_interventions, plugin_errors

    if name in NOT_IN_DEMO:
        return NOT_IN_DEMO[name]
    if name in plugin_errors():
        return f"its plug-in failed to load ({plugin_errors()[name]})"
    if name not in list_interventions():
        return UNREGISTERED
    cls = intervention_class(name)
    if getattr(cls, "interactive", False):
        return "interactive"
    table = DEMO_CONFIGS.get(name, DemoConfig()).config
    required = [k for k, f in cls.Config.model_fields.items() if f.is_required() and k not in table]
    if required:  # e.g. upstream_dir: a directory of scripts that only its user can name
        return f"needs settings only you can choose ({', '.join(required)})"
    return None


def demo_sets(name: str) -> tuple[list[str], list[str]]:
    """``--set`` items for ``name``'s fast config, and the table keys its config does not have."""
    from genies.interventions.registry import intervention_class

    table = DEMO_CONFIGS.get(name, DemoConfig()).config
    fields = intervention_class(name).Config.model_fields
    sets = [f"intervention.{k}={json.dumps(v)}" for k, v in table.items() if k in fields]
    return sets, [k for k in table if k not in fields]


# ---------------------------------------------------------------- data


def official_data_ready(data_dir: Path | None) -> bool:
    """Whether the real ``test`` suite's distributions are in the data store."""
    from genies.shifts import get_suite

    try:
        get_suite(REAL_SUITE, data_dir, check_data=True)
    except GeniesError:
        return False
    return True


def data_source(options: DemoOptions) -> str | None:
    return options.data_source or os.environ.get(DATA_SOURCE_ENV) or None


# ---------------------------------------------------------------- the demo


class Demo:
    """The steps of one ``genies demo``; ``run()`` does them in order and returns the outcome."""

    def __init__(self, options: DemoOptions, console: Console, out_console: Console | None = None):
        self.o = options
        self.console = console  # progress, notes (stderr)
        self.out_console = out_console or console  # tables (stdout)
        self.steps: list[Step] = []
        self.t0 = time.perf_counter()
        self.seconds_per_pair: float | None = None

    # -- helpers

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def left(self) -> float:
        return self.o.budget_s - self.elapsed()

    def say(self, msg: str) -> None:
        self.console.print(msg, markup=False, highlight=False, soft_wrap=True)

    def header(self, msg: str) -> None:
        self.console.rule(f"{msg}  [{_clock(self.elapsed())} of {_clock(self.o.budget_s)}]", style="cyan")

    @contextlib.contextmanager
    def timed(self, name: str, **kw: Any) -> Iterator[Step]:
        step = Step(name, "ran", **kw)
        start = time.perf_counter()
        try:
            yield step
        finally:
            step.seconds = time.perf_counter() - start
            self.steps.append(step)

    # -- steps

    def prepare_model(self) -> None:
        from genies.models.loading import prepare

        self.header(f"preparing the model {self.o.model}")
        with self.timed(f"prepare model {self.o.model}") as step:
            folder, seconds = prepare(self.o.model)
            step.note = f"converted in {seconds:.1f} s" if seconds is not None else "already prepared"
            self.say(f"{self.o.model}: {step.note} ({folder})")

    def generate_data(self) -> None:
        from genies.data import synthetic

        self.header("generating the synthetic suite")
        kw: dict[str, int] = {"seed": self.o.seed}
        if self.o.train_size is not None:
            kw["train_size"] = self.o.train_size
            kw["test_size"] = self.o.test_size or max(1, self.o.train_size // 2)
        elif self.o.test_size is not None:
            kw["test_size"] = self.o.test_size
        with self.timed("generate synthetic suite") as step:
            res = synthetic.generate(self.o.data_dir, **kw)
            step.note = f"{len(res.ids)} distributions, {res.train_size} train / {res.test_size} test each"
            self.say(f"{step.note}, seed {res.seed}, in {res.data_dir}")

    def import_official(self) -> str | None:
        """Make the real suite's data ready (importing ``data_source`` when it is not in the store
        yet); None when it is ready, else why the real-data step is skipped."""
        if official_data_ready(self.o.data_dir):
            return None
        src = data_source(self.o)
        if not src:
            return (
                f"official data not in the store (set {DATA_SOURCE_ENV} to a release tarball, "
                "or run `genies data import PATH`)"
            )
        if self.left() <= 0:
            self.steps.append(Step("import official data", "skipped", note="the budget is spent"))
            return f"the budget is spent; {src} was not imported"
        from genies.data.store import import_data

        self.header(f"importing the official data from {src}")
        with self.timed("import official data") as step:
            try:
                res = import_data(src, data_dir=self.o.data_dir)
            except GeniesError as exc:
                step.status, step.note = "failed", str(exc)
                return f"cannot import {src}: {exc}"
            step.note = f"{len(res.distributions)} distributions"
            self.say(f"imported {step.note}")
        if not official_data_ready(self.o.data_dir):
            return f"{src} has no `{REAL_SUITE}` suite distributions"
        return None

    def estimate(self, name: str, suite: str, pairs: int, trainings: int = 0) -> float:
        """Seconds a run should take: its pairs to score, and for a method that trains, its trainings
        (``trainings`` states to fit × steps × batch pairs), in zero_shot's measured seconds per pair."""
        rate = self.seconds_per_pair if self.seconds_per_pair is not None else DEFAULT_SECONDS_PER_PAIR
        scale = 1.0 if suite == SYNTH_SUITE else REAL_TEXT_COST
        cfg = DEMO_CONFIGS.get(name, DemoConfig())
        per_training = cfg.config.get("num_train_steps", 0) * cfg.config.get("batch_size", 0) * cfg.train_cost
        return (pairs * cfg.cost + trainings * per_training) * rate * scale

    def suite_for(self, name: str, suite: str) -> tuple[str, str]:
        """The ``--suite`` of ``name``'s run and how to name it: the whole suite, or for an
        intervention with ``DemoConfig.shifts`` a shift file of those (written under ``out``)."""
        shifts = DEMO_CONFIGS.get(name, DemoConfig()).shifts
        if suite != SYNTH_SUITE or shifts is None:
            return suite, suite
        from genies.io import atomic_write_text
        from genies.shifts import get_suite

        chosen = [s for s in get_suite(SYNTH_SUITE, self.o.data_dir) if (s.source, s.target) in shifts]
        path = self.o.out / "suites" / f"{name}.json"
        rows = [{"source": s.source, "target": s.target, "category": s.category} for s in chosen]
        atomic_write_text(path, json.dumps(rows, indent=1) + "\n")
        return str(path), f"{suite} ({len(chosen)} of its shifts)"

    def run_one(self, name: str, suite: str, limit: int | None) -> Step | None:
        """``genies run -i NAME --suite SUITE --limit N`` through run_suite, budget permitting."""
        from genies.pipeline.suite import RunOptions, execute, prepare_run, remove_empty

        label = f"{name} on {suite}"
        why = why_not_run(name)
        if why is not None:
            self.say(f"skip {label}: {why}")
            self.steps.append(Step(label, "absent", note=why, suite=suite, intervention=name))
            return None
        sets, dropped = demo_sets(name)
        if dropped:
            self.say(f"note: {name} has no config key(s) {', '.join(dropped)}; its defaults are used")
        cfg = DEMO_CONFIGS.get(name, DemoConfig())
        limit = cfg.limit if cfg.limit is not None else limit
        run_suite, shown = self.suite_for(name, suite)
        label = f"{name} on {shown}"
        options = RunOptions(
            intervention=name,
            suite=run_suite,
            model=self.o.model,
            limit=limit,
            seed=self.o.seed,
            out=self.o.out / suite / name,
            store=self.o.store,
            data_dir=self.o.data_dir,
            sets=sets,
            device=self.o.device,
            progress=self.o.progress,
        )
        with self.timed(label, suite=suite, intervention=name) as step:
            try:
                prepared = prepare_run(options, warn=lambda m: self.say(f"warning: {m}"))
            except GeniesError as exc:
                step.status, step.note = "failed", str(exc)
                self.say(f"skip {label}: {exc}")
                return step
            todo = [n for n in prepared.plan.evaluations if prepared.store.load_evaluation(n.key) is None]
            pairs = sum(int(n.resources.get("units", 0)) for n in todo)
            trainings = sum(
                1 for k in prepared.plan.states if prepared.store.load_state(k, report=False) is None
            )
            est = self.estimate(name, suite, pairs, trainings)
            if self.steps_run() and est > self.left() - RESULTS_RESERVE_S:
                remove_empty(prepared.created)
                step.status = "skipped"
                step.note = f"needs ~{_clock(est)}, {_clock(max(self.left(), 0))} left (raise --budget)"
                self.say(f"skip {label}: {step.note}")
                return step
            how = ", ".join(s.removeprefix("intervention.") for s in sets) or "defaults"
            self.header(f"{label} ({how}; limit {limit}; {pairs} pairs to score, ~{_clock(est)})")
            start = time.perf_counter()
            try:
                outcome = execute(prepared, console=self.console)
            except InterruptedRun:  # Ctrl-C ends the demo (finished work is in the store)
                remove_empty(prepared.created)
                raise
            except GeniesError as exc:
                remove_empty(prepared.created)
                step.status, step.note = "failed", str(exc)
                self.say(f"{label} failed: {exc}")
                return step
            seconds = time.perf_counter() - start
            if pairs and self.seconds_per_pair is None and name == "zero_shot":
                self.seconds_per_pair = seconds / pairs
            step.status = "ran" if pairs else "cached"
            step.pairs_computed = pairs
            step.json_path, step.result = outcome.json_path, outcome.result
            rate = f" ({seconds / pairs:.2f} s/pair)" if pairs else ""
            step.note = f"{pairs} pairs scored{rate}" if pairs else "every evaluation reused from the store"
        return step

    def steps_run(self) -> bool:
        return any(s.result is not None for s in self.steps)

    def run(self) -> DemoOutcome:
        self.prepare_model()
        self.generate_data()
        unregistered = []
        order = run_order(self.o.interventions)
        # DEMO_ORDER first, then the real data (a small zero_shot run), then what else fits.
        first = [n for n in order if n in DEMO_ORDER]
        for name in first:
            self.run_one(name, SYNTH_SUITE, self.o.limit)
        why = self.import_official()
        if why is None:
            self.run_one("zero_shot", REAL_SUITE, self.o.real_limit)
        else:
            self.say(f"real-data step skipped: {why}")
        for name in order:
            if name in first:
                continue
            # Table entries for interventions this build lacks are one line together, not one each.
            if self.o.interventions is None and why_not_run(name) == UNREGISTERED:
                unregistered.append(name)
                continue
            self.run_one(name, SYNTH_SUITE, self.o.limit)
        if unregistered:
            self.say(f"not registered in this build (skipped): {', '.join(unregistered)}")
            self.steps.append(
                Step("other interventions", "absent", note=f"{UNREGISTERED}: {', '.join(unregistered)}")
            )
        report = self.results()
        outcome = DemoOutcome(self.steps, self.o.out, report, self.elapsed())
        self.timings()
        self.next_commands(outcome)
        return outcome

    # -- results

    def results(self) -> Path | None:
        runs = [s for s in self.steps if s.result is not None]
        if not runs:
            self.say("no run finished: nothing to report")
            return None
        self.header("results")
        synth = [s for s in runs if s.suite == SYNTH_SUITE]
        if synth:
            self.out_console.print(accuracy_table(synth))
        for s in runs:
            if s.suite != SYNTH_SUITE:
                from genies.report.table import render_suite_result

                render_suite_result(s.result, self.out_console, s.json_path)  # type: ignore[arg-type]
        self.comparisons(synth)
        return self.report(runs)

    def comparisons(self, synth: Sequence[Step]) -> None:
        base = next((s for s in synth if s.intervention == "zero_shot"), None)
        others = [s for s in synth if s.intervention != "zero_shot"]
        if base is None or not others:
            return
        try:
            from genies.report.compare import compare_results, render
        except ImportError:
            self.say("paired comparison: genies.report.compare is not in this build; skipped")
            return
        for s in others:
            with self.timed(f"compare {s.intervention} vs zero_shot") as step:
                try:
                    c = compare_results(base.json_path, s.json_path, seed=self.o.seed, store=self.o.store)  # type: ignore[arg-type]
                except GeniesError as exc:
                    step.status, step.note = "failed", str(exc)
                    self.say(f"comparison of {s.intervention} with zero_shot failed: {exc}")
                    continue
                shown = render(c)
                if shown is not None:
                    self.out_console.print(shown)

    def report(self, runs: Sequence[Step]) -> Path | None:
        try:
            from genies.report.html import write_report
        except ImportError:
            self.say(f"{REPORT_NAME}: genies.report.html is not in this build; no report written")
            return None
        with self.timed(f"write {REPORT_NAME}") as step:
            try:
                path = write_report(
                    [s.json_path for s in runs],  # type: ignore[misc]
                    self.o.out / REPORT_NAME,
                    title=f"genies demo: {self.o.model} on the synthetic suite",
                )
            except GeniesError as exc:
                step.status, step.note = "failed", str(exc)
                self.say(f"{REPORT_NAME} not written: {exc}")
                return None
            self.say(f"wrote {path}")
            return Path(path)

    def timings(self) -> None:
        from rich.table import Table

        t = Table(title=f"genies demo: {_clock(self.elapsed())} wall time (budget {_clock(self.o.budget_s)})")
        for col, kw in (("step", {}), ("status", {}), ("seconds", {"justify": "right"}), ("note", {})):
            t.add_column(col, **kw)
        for s in self.steps:
            t.add_row(s.name, s.status, f"{s.seconds:.1f}", s.note)
        self.out_console.print(t)

    def next_commands(self, outcome: DemoOutcome) -> None:
        names = [s.intervention for s in outcome.runs() if s.intervention != "zero_shot"]
        iv = names[0] if names else "few_shot"
        model = "" if self.o.model == "smollm2-135m" else f" --model {self.o.model}"
        lines = [
            "The real GENIES benchmark (15 shifts; hours on a CPU, minutes on a GPU):",
            "  genies data import ../shared/genies-datasets.tar.gz   # or: genies data download",
            f"  genies run -i zero_shot --suite genies{model}",
            f"  genies run -i {iv} --suite genies --limit 100{model}",
            f"  genies results table genies-results/{_slug(self.o.model)}/{iv} --paper llama-30b",
        ]
        if _importable("genies.report.compare"):
            lines.append(
                f"  genies compare genies-results/{_slug(self.o.model)}/zero_shot "
                f"genies-results/{_slug(self.o.model)}/{iv}"
            )
        lines.append("  genies run --help   # every option; docs/demo.md explains what the demo shows")
        self.out_console.print("\n".join(lines), markup=False, highlight=False)


def accuracy_table(steps: Sequence[Step]) -> Any:
    """Shifts × interventions: generalization accuracy (DE below the line), beside what was planted."""
    from rich.table import Table

    from genies.data.synthetic import SHIFT_NOTES

    t = Table(
        title="synthetic suite: accuracy on each target (source → target); DE = differential elicitation"
    )
    t.add_column("shift")
    t.add_column("category")
    for s in steps:
        t.add_column(s.intervention or "?", justify="right")
    t.add_column("what changes")
    rows0 = steps[0].result.rows  # type: ignore[union-attr]
    for i, r in enumerate(rows0):
        cells = []
        for s in steps:
            rr = _row(s.result, r.source, r.target)  # type: ignore[arg-type]
            cells.append(_pct(rr.generalization_accuracy) if rr is not None else "-")
        note = SHIFT_NOTES.get((r.source, r.target), {}).get("changes", "")
        t.add_row(f"{r.source} → {r.target}", r.category or "", *cells, note, end_section=i == len(rows0) - 1)
    t.add_row(
        "source (in-distribution) mean", "", *[_pct(_mean(s.result, "source_ID_accuracy")) for s in steps], ""
    )  # type: ignore[arg-type]
    t.add_row("target mean", "", *[_pct(_mean(s.result, "generalization_accuracy")) for s in steps], "")  # type: ignore[arg-type]
    t.add_row("DE mean", "", *[_num(_mean(s.result, "differential_elicitation")) for s in steps], "")  # type: ignore[arg-type]
    return t


def _row(result: SuiteResult, source: str, target: str) -> Any:
    return next((r for r in result.rows if r.source == source and r.target == target), None)


def _mean(result: SuiteResult, attr: str) -> float | None:
    vals = [getattr(r, attr) for r in result.rows if getattr(r, attr) is not None]
    vals = [v for v in vals if v == v]  # NaN-free
    return sum(vals) / len(vals) if vals else None


def _pct(x: float | None) -> str:
    return "-" if x is None or x != x else f"{x:.2f}"


def _num(x: float | None) -> str:
    return "-" if x is None or x != x else f"{x:+.3f}"


def _clock(seconds: float) -> str:
    s = max(0, int(round(seconds)))
    return f"{s // 60}:{s % 60:02d}"


def _slug(model: str) -> str:
    from genies.pipeline.suite import model_slug

    return model_slug(model)


def _importable(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def run_demo(options: DemoOptions, console: Console, out_console: Console | None = None) -> DemoOutcome:
    """Run the demo (see the module docstring); never raises for a step that fails — it is a line."""
    return Demo(options, console, out_console).run()
