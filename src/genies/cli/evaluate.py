"""`genies evaluate`: fit an intervention and score distributions' pairs, without the result store.

A quick, direct look at how one intervention does on a few distributions. The work runs through the
same job graph as ``genies run`` (same nodes, same over-length rule, same ``EvaluationRecord``s, the
same ``--set`` grammar), against a throwaway store: nothing is cached or written. ``genies run`` is
the cached, resumable pipeline over whole suites of shifts.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from genies.errors import ConfigError
from genies.models.registry import DEFAULT_MODEL

_METRIC_COLUMNS: tuple[tuple[str, str], ...] = (
    ("accuracy", "acc"),
    ("accuracy_upstream", "acc(up)"),
    ("tie_rate", "ties"),
    ("brier_score", "brier"),
    ("average_probability", "avg p"),
    ("rms_calibration_error", "rms"),
    ("ece", "ece"),
    ("rms_calibration_error_upstream", "rms(up)"),
)
_CAPTION = (
    "acc: ties count half · acc(up): ties count correct (upstream) · ties: tie rate · brier: Brier score · "
    "avg p: mean p(correct) · rms / ece: binned calibration errors · rms(up): upstream's RMS calibration · "
    "drop: pairs of over-length examples dropped"
)

_HELP = """Fit an intervention and print metrics for each distribution's pairs.

The intervention is fitted on --train-distribution's train split; by default on each evaluated
distribution's own train split ("target-tuned" style: for few_shot the demonstrations then come from
the evaluated distribution's train split). Every pair of the chosen split is scored (all pairs per
example, as upstream's final evaluation), except examples too long for the model. Config values use
the grammar of `genies run`: --set intervention.KEY=VALUE, or --config FILE with an \\[intervention]
table. Nothing is written to the result store.
"""


def parse_distribution_list(text: str) -> list[str]:
    """Comma-separated ids/paths → list without blanks or repeats (order kept)."""
    ids = list(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    if not ids:
        raise ConfigError("--distributions needs at least one distribution id")
    return ids


def evaluate_distributions(
    intervention: str,
    model: str = DEFAULT_MODEL,
    distributions: list[str] | None = None,
    *,
    train_distribution: str | None = None,
    split: str = "test",
    limit: int | None = None,
    seed: int = 0,
    config: dict[str, Any] | None = None,
    data_dir: str | Path | None = None,
    device: str = "auto",
    dtype: str | None = None,
    status: Callable[[str], None] | None = None,
    console: Any = None,
) -> list[Any]:
    """Fit ``intervention`` and score each distribution's pairs: one ``EvaluationRecord`` each.

    ``limit`` keeps the first N pairs after pairing (upstream's ``set_max_examples``; it may cut an
    example's pairs); examples too long for the model are then dropped and counted in ``dropped``.
    Training splits are not limited. All inputs are validated before the model is loaded. With a
    rich ``console``, a progress bar shows the pairs scored.
    """
    from genies.data import load_distribution
    from genies.interventions import get_intervention
    from genies.lengths import TokenizerSource
    from genies.models.loading import compute_settings, model_identity
    from genies.pipeline.executors import LocalExecutor, run_graph
    from genies.pipeline.kinds import NodeEnv, RunSpec
    from genies.pipeline.plan import Planner
    from genies.pipeline.store import ResultStore
    from genies.pipeline.suite import ctx_progress, find_todo, over_length_oracle, progress_bar

    if split not in ("train", "test"):
        raise ConfigError(f"--split must be 'train' or 'test', got {split!r}")
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit must be a positive number of pairs, got {limit}")
    if seed < 0:
        raise ConfigError(f"--seed must be non-negative, got {seed}")
    iv = get_intervention(intervention)
    cfg = iv.make_config(config or {})
    evals = [load_distribution(d, data_dir=data_dir) for d in distributions or []]
    if not evals:
        raise ConfigError("--distributions needs at least one distribution id")
    train_dist = load_distribution(train_distribution, data_dir=data_dir) if train_distribution else None
    by_id = {d.id: d for d in [*evals, *([train_dist] if train_dist else [])]}
    info = {**model_identity(model), **compute_settings(device, dtype)}
    model_key = {k: v for k, v in info.items() if k != "path"}
    say = status or (lambda msg: None)

    with tempfile.TemporaryDirectory(prefix="genies-evaluate-") as tmp:
        store = ResultStore(tmp, warn=say)
        env = NodeEnv(store, RunSpec(tmp, device=device), log=say, load_distribution=by_id.__getitem__)
        oracle = over_length_oracle(env, lambda: TokenizerSource(model, info["path"]), by_id)
        planner = Planner(by_id, model_key, seed=seed, limit=limit, train_limit=None, over_length=oracle)
        for dist in evals:
            planner.request(iv, cfg, (train_dist or dist).id, dist.id, split)
        graph, keys = planner.build()
        todo = find_todo(graph, env, keys)
        total = sum(int(graph[k].resources.get("units", 0)) for k in todo)
        with progress_bar(console, total, console is not None) as bar:

            def advance(node: Any, out: Any) -> None:
                if bar is not None:
                    bar.update(
                        bar.main_task, advance=int(node.resources.get("units", 0)), description=node.label
                    )

            if bar is not None:
                env.progress = ctx_progress(bar)
            run_graph(
                graph, todo, LocalExecutor(env), preload=model_key if todo else None, on_outcome=advance
            )
        return [store.load_evaluation(k) for k in keys]


def _json_safe(obj: Any) -> Any:
    """Strict JSON for stdout: NaN/inf become null (tools like jq reject NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def _fmt(x: float | None) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:.3f}"


def _table(records: list[dict[str, Any]]):
    from rich.table import Table

    r0 = records[0]
    title = (
        f"{r0['intervention']} · {r0['model'].get('name', '')} · {r0['eval_split']} split · seed {r0['seed']}"
    )
    table = Table(title=title, title_justify="left", caption=_CAPTION, caption_justify="left")
    show_train = any(r["train_distribution"] != r["eval_distribution"] for r in records)
    table.add_column("distribution", no_wrap=True)
    if show_train:
        table.add_column("trained on", no_wrap=True)
    table.add_column("n", justify="right")
    for _, label in _METRIC_COLUMNS:
        table.add_column(label, justify="right", no_wrap=True)
    table.add_column("drop", justify="right")
    for r in records:
        table.add_row(
            r["eval_distribution"],
            *([r["train_distribution"]] if show_train else []),
            str(r["n"]),
            *(_fmt(r["metrics"].get(key)) for key, _ in _METRIC_COLUMNS),
            str(r["dropped"]),
        )
    return table


def evaluate(
    intervention: str = typer.Option(
        ..., "--intervention", "-i", help="Intervention name, e.g. zero_shot or few_shot."
    ),
    model: str = typer.Option(
        DEFAULT_MODEL, "--model", "-m", help="Model alias (e.g. smollm2-135m) or local HF folder."
    ),
    distributions: str = typer.Option(
        ..., "--distributions", "-d", help="Comma-separated distribution ids (or distribution folders)."
    ),
    train_distribution: str | None = typer.Option(
        None,
        "--train-distribution",
        "-t",
        help="Fit on this distribution's train split. Default: each evaluated distribution itself "
        "(for few_shot: demonstrations from its own train split).",
    ),
    split: str = typer.Option("test", "--split", help="Split to score: test or train."),
    limit: int | None = typer.Option(
        None,
        "--limit",
        "-n",
        help="Score only the first N pairs after pairing (upstream's max_examples; counts pairs, not examples).",
    ),
    seed: int = typer.Option(0, "--seed", help="Run seed (few-shot demonstration sampling)."),
    set_: list[str] | None = typer.Option(
        None,
        "--set",
        help="Config value intervention.KEY=VALUE (repeatable), e.g. --set intervention.num_shots=2.",
    ),
    config: Path | None = typer.Option(None, "--config", help="TOML file with an \\[intervention] table."),
    json_out: bool = typer.Option(
        False, "--json", help="Print JSON records (with per-pair p_correct) instead of a table."
    ),
    data_dir: Path | None = typer.Option(
        None, "--data-dir", help="Data store folder (default: GENIES_DATA_DIR)."
    ),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:1, mps …"),
    dtype: str | None = typer.Option(None, "--dtype", help="float32, bfloat16 or float16."),
) -> None:
    from rich.console import Console

    from genies.pipeline.config import intervention_values

    err = Console(stderr=True, highlight=False)
    values = intervention_values(config, set_ or [])
    records = evaluate_distributions(
        intervention,
        model,
        parse_distribution_list(distributions),
        train_distribution=train_distribution,
        split=split,
        limit=limit,
        seed=seed,
        config=values,
        data_dir=data_dir,
        device=device,
        dtype=dtype,
        status=lambda msg: err.print(msg, style="dim", markup=False),
        console=err if err.is_terminal else None,
    )
    docs = [r.model_dump(mode="json") for r in records]
    if json_out:
        typer.echo(json.dumps(_json_safe(docs), indent=1, ensure_ascii=False))
        return
    out = Console(highlight=False)
    if not out.is_terminal:  # piped or captured: do not squeeze the table into 80 columns
        out.width = max(out.width, 140)
    out.print(_table(docs))
    for r in docs:
        if r["dropped"]:
            err.print(
                f"{r['eval_distribution']}: dropped {r['dropped']} pairs of examples longer than the model's max length"
            )


def register(app: typer.Typer) -> None:
    app.command("evaluate", help=_HELP, no_args_is_help=True)(evaluate)
