"""`genies evaluate`: fit an intervention and score distributions' pairs, without the result store.

A quick, direct look at how one intervention does on a few distributions. Nothing is cached or
written; ``genies run`` is the cached, resumable pipeline over whole suites of shifts.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from genies.errors import ConfigError

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
example, as upstream's final evaluation). Nothing is written to the result store.
"""


def parse_set_options(items: list[str] | None) -> dict[str, Any]:
    """``["key=value", …]`` → dict; values are read as JSON where possible (2, true, null), else text."""
    values: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        try:
            values[key] = json.loads(raw)
        except ValueError:
            values[key] = raw
    return values


def parse_distribution_list(text: str) -> list[str]:
    """Comma-separated ids/paths → list without blanks or repeats (order kept)."""
    ids = list(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    if not ids:
        raise ConfigError("--distributions needs at least one distribution id")
    return ids


def evaluate_distributions(
    intervention: str,
    model: str,
    distributions: list[str],
    *,
    train_distribution: str | None = None,
    split: str = "test",
    limit: int | None = None,
    seed: int = 0,
    config: dict[str, Any] | None = None,
    data_dir: str | Path | None = None,
    device: str = "auto",
    progress: bool = False,
    status: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Fit ``intervention`` and score each distribution's pairs; one JSON-able record per distribution.

    ``limit`` keeps the first N pairs after pairing (upstream's ``set_max_examples``; it may cut an
    example's pairs). Over-length examples among them are then dropped and counted in ``dropped``
    (upstream drops before truncating, so with drops it would top up from later pairs; the paper's
    final evaluations set no limit, so this never affects reproduction). All inputs are validated
    before the model is loaded.
    """
    from genies.data import load_distribution
    from genies.interventions import get_intervention
    from genies.interventions._scoring_common import scoring_progress
    from genies.metrics import summarize, tie_count
    from genies.models.loading import load_model

    if split not in ("train", "test"):
        raise ConfigError(f"--split must be 'train' or 'test', got {split!r}")
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit must be a positive number of pairs, got {limit}")
    if seed < 0:
        raise ConfigError(f"--seed must be non-negative, got {seed}")
    iv = get_intervention(intervention)
    cfg = iv.make_config(config or {})
    evals = [load_distribution(d, data_dir=data_dir) for d in distributions]
    train_dist = load_distribution(train_distribution, data_dir=data_dir) if train_distribution else None

    def say(msg: str) -> None:
        if status is not None:
            status(msg)

    say(f"loading model {model} …")
    lm = load_model(model, device=device)
    states: dict[str, Any] = {}
    records: list[dict[str, Any]] = []
    for dist in evals:
        source = train_dist or dist
        t0 = time.perf_counter()
        if source.id not in states:
            say(f"fitting {iv.name} on {source.id} (train split) …")
            states[source.id] = iv.fit(lm, source.train, cfg, seed=seed)
        state = states[source.id]
        fit_s = time.perf_counter() - t0
        eval_split = dist.split(split)
        pairs = eval_split.to_pairs("all")
        if limit is not None:
            pairs = pairs[:limit]
        say(f"scoring {len(pairs)} pairs of {dist.id} ({split}) …")
        t1 = time.perf_counter()
        with scoring_progress(progress):
            scored = iv.score_pairs(lm, state, pairs, cfg, seed=seed)
        score_s = time.perf_counter() - t1
        p = scored.p_correct
        records.append(
            {
                "intervention": iv.name,
                "config": cfg.model_dump(mode="json"),
                "model": dict(getattr(lm, "identity", {}) or {"name": model}),
                "train_distribution": source.id,
                "train_fingerprint": source.train.fingerprint,
                "eval_distribution": dist.id,
                "eval_split": split,
                "eval_fingerprint": eval_split.fingerprint,
                "seed": seed,
                "limit": limit,
                "n": len(p),
                "ties": int(tie_count(p)) if len(p) else 0,
                "dropped": scored.dropped,
                "metrics": {k: float(v) for k, v in summarize(p).items()},
                "info": scored.info,
                "timings": {"fit_s": round(fit_s, 3), "score_s": round(score_s, 3)},
                "pair_ids": list(scored.pair_ids),
                "p_correct": [float(x) for x in p],
            }
        )
    return records


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
        ..., "--model", "-m", help="Model alias (e.g. smollm2-135m) or local HF folder."
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
        None, "--set", help="Intervention config value key=value (repeatable), e.g. --set num_shots=2."
    ),
    json_out: bool = typer.Option(
        False, "--json", help="Print JSON records (with per-pair p_correct) instead of a table."
    ),
    data_dir: Path | None = typer.Option(
        None, "--data-dir", help="Data store folder (default: GENIES_DATA_DIR)."
    ),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:1, mps …"),
) -> None:
    from rich.console import Console

    err = Console(stderr=True, highlight=False)
    records = evaluate_distributions(
        intervention,
        model,
        parse_distribution_list(distributions),
        train_distribution=train_distribution,
        split=split,
        limit=limit,
        seed=seed,
        config=parse_set_options(set_),
        data_dir=data_dir,
        device=device,
        progress=err.is_terminal,
        status=lambda msg: err.print(f"[dim]{msg}[/]"),
    )
    if json_out:
        typer.echo(json.dumps(_json_safe(records), indent=1, ensure_ascii=False))
        return
    out = Console(highlight=False)
    if not out.is_terminal:  # piped or captured: do not squeeze the table into 80 columns
        out.width = max(out.width, 140)
    out.print(_table(records))
    for r in records:
        if r["dropped"]:
            err.print(
                f"{r['eval_distribution']}: dropped {r['dropped']} pairs "
                f"({r['info'].get('dropped_examples', '?')} examples) longer than the model's max length"
            )


def register(app: typer.Typer) -> None:
    app.command("evaluate", help=_HELP, no_args_is_help=True)(evaluate)
