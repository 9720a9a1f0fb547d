"""`genies data`: import the GENIES release, list, show and validate distributions."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from genies.cli._console import make_console

if TYPE_CHECKING:
    from genies.data.store import ImportResult

app = typer.Typer(
    no_args_is_help=True,
    help="Import, list, show and validate GENIES distributions.",
    rich_markup_mode="rich",
)

_DATA_DIR_HELP = "Data store folder (default: $GENIES_DATA_DIR or ~/.cache/genies/data)."
_TIMEOUT_HELP = "Seconds to wait for the server to connect or send data before giving up."
_STRICT = typer.Option(
    False, "--strict", help="Also refuse the import if a distribution is well-formed but unusable."
)


def _report_import(result: ImportResult) -> None:
    from rich.markup import escape

    infos = result.distributions
    bad = [i for i in infos if not i.ok]
    train = sum(i.train_examples or 0 for i in infos)
    test = sum(i.test_examples or 0 for i in infos)
    out = make_console()
    out.print(
        f"imported [bold]{len(infos)}[/] distributions ({train:,} train / {test:,} test examples) "
        f"from {escape(result.source)} into {escape(str(result.data_dir))} in {result.seconds:.1f} s"
        + (f"; {result.skipped_files} files not needed were skipped" if result.skipped_files else ""),
        soft_wrap=True,
    )
    for info in bad:
        reason = info.status.removeprefix("invalid: ")
        out.print(
            f"[yellow]warning:[/] {escape(info.id)} was imported but is unusable ({escape(reason)}); "
            "runs refuse it",
            soft_wrap=True,
        )


@app.command("import")
def import_cmd(
    source: str = typer.Argument(
        ...,
        help="Release tarball (.tar or .tar.gz), an http(s) URL of one, or a folder holding distributions/.",
    ),
    data_dir: Path | None = typer.Option(None, "--data-dir", help=_DATA_DIR_HELP),
    timeout: float = typer.Option(30.0, "--timeout", min=0.1, help=_TIMEOUT_HELP + " (URLs only)"),
    strict: bool = _STRICT,
) -> None:
    """Import GENIES distributions, replacing the store's content only if every file is well-formed.

    The archive is checked (no absolute paths, '..', links or devices), extracted beside the store,
    validated, then swapped in: a failed import leaves the previous store as it was. A file that
    breaks the record rules fails the import. A distribution whose files are well-formed but
    unusable (the official release's commonsense_qa: every prompt is one letter; no shift uses it)
    is imported with a warning and marked invalid, and runs refuse it; --strict fails the import
    instead.
    """
    from genies.data.store import import_data

    _report_import(import_data(source, data_dir, progress=True, timeout=timeout, strict=strict))


@app.command("download")
def download_cmd(
    url: str | None = typer.Option(None, "--url", help="Release URL (default: the official GENIES release)."),
    data_dir: Path | None = typer.Option(None, "--data-dir", help=_DATA_DIR_HELP),
    timeout: float = typer.Option(30.0, "--timeout", min=0.1, help=_TIMEOUT_HELP),
    strict: bool = _STRICT,
) -> None:
    """Download the official GENIES datasets release and import it (as `genies data import`).

    Without internet access, fetch the tarball another way and use `genies data import FILE`.
    """
    from genies.data.store import OFFICIAL_URL, download_data

    _report_import(
        download_data(url or OFFICIAL_URL, data_dir, progress=True, timeout=timeout, strict=strict)
    )


def _k(values: list[int]) -> str:
    if not values:
        return "—"
    return str(values[0]) if len(values) == 1 else f"{values[0]}–{values[-1]}"


def _n(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


@app.command("list")
def list_cmd(
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list instead of a table."),
    data_dir: Path | None = typer.Option(None, "--data-dir", help=_DATA_DIR_HELP),
) -> None:
    """List the distributions in the store: examples, responses per example, test pairs, status."""
    from rich.markup import escape
    from rich.table import Table

    from genies.data.loading import IMPORT_HINT
    from genies.data.store import list_distributions
    from genies.paths import data_dir as resolve

    infos = list_distributions(data_dir)
    if as_json:
        typer.echo(json.dumps([i.to_json() for i in infos], indent=2, ensure_ascii=False))
        return
    if not infos:
        make_console().print(
            f"no distributions in {escape(str(resolve(data_dir)))}; {IMPORT_HINT}", soft_wrap=True
        )
        return

    table = Table(title=f"distributions in {escape(str(resolve(data_dir)))}", title_justify="left")
    table.add_column("distribution", no_wrap=True)
    for col in ("train", "test", "k", "test pairs", "dup", "shared"):
        table.add_column(col, justify="right")
    table.add_column("status")
    table.add_column("notes", overflow="fold")
    for i in infos:
        notes = [f"[dim]{escape(n)}[/]" for n in i.notes]
        if not i.ok:
            notes.insert(0, f"[red]{escape(i.status.removeprefix('invalid: '))}[/]")
        table.add_row(
            escape(i.id),
            _n(i.train_examples),
            _n(i.test_examples),
            _k(i.responses_per_example),
            _n(i.test_pairs),
            f"{i.test_duplicates:,}" if i.test_duplicates else "",
            f"{i.test_shared_prompts:,}" if i.test_shared_prompts else "",
            "[green]ok[/]" if i.ok else "[red]invalid[/]",
            "; ".join(notes),
        )
    bad = sum(not i.ok for i in infos)
    table.caption = (
        f"{len(infos)} distributions ({len(infos) - bad} ok, {bad} invalid) · "
        f"{sum(i.train_examples or 0 for i in infos):,} train / {sum(i.test_examples or 0 for i in infos):,} test "
        f"examples · {sum(i.test_pairs or 0 for i in infos):,} test pairs\n"
        "k: responses per example · test pairs: (best, worse) pairs of the test split (all-pairs evaluation)\n"
        "dup: test examples identical to a train example · shared: further test examples reusing a train prompt"
    )
    table.caption_justify = "left"
    make_console().print(table)


class SplitName(str, Enum):
    train = "train"
    test = "test"


@app.command("show")
def show_cmd(
    distribution: str = typer.Argument(..., help="Distribution id (see `genies data list`) or folder path."),
    split: SplitName = typer.Option(SplitName.train, "--split", "-s", help="Which split to show."),
    n: int = typer.Option(3, "-n", "--num", min=1, help="Number of examples to show."),
    start: int = typer.Option(0, "--start", min=0, help="Index of the first example to show."),
    as_json: bool = typer.Option(False, "--json", help="Print the examples as JSON."),
    data_dir: Path | None = typer.Option(None, "--data-dir", help=_DATA_DIR_HELP),
) -> None:
    """Show examples of a distribution, the preferred response marked with ✓."""
    from rich.markup import escape
    from rich.panel import Panel
    from rich.text import Text

    from genies.data.loading import load_distribution
    from genies.errors import ValidationError

    out = make_console()
    try:
        dist = load_distribution(distribution, data_dir)
    except ValidationError as exc:  # broken files raise again; a merely unusable distribution is shown
        dist = load_distribution(distribution, data_dir, strict=False)
        if not as_json:
            out.print(f"[yellow]warning:[/] {escape(exc.message)}", soft_wrap=True)
    examples = dist.split(split.value).examples[start : start + n]
    if as_json:
        rows = [
            {"index": e.index, "prompt": e.prompt, "responses": dict(e.responses), "preferred": e.best}
            for e in examples
        ]
        typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return

    total = len(dist.split(split.value))
    for e in examples:
        body = Text()
        body.append("prompt\n", style="bold")
        body.append(e.prompt.rstrip("\n") + "\n")
        for j, (text, score) in enumerate(e.responses):
            mark, style = ("✓", "green") if score == 1 else ("✗", "red")
            body.append(f"\n{mark} response {j}\n", style=f"bold {style}")
            body.append(text.rstrip("\n") + "\n")
        title = Text(f"{dist.id} · {split.value} · example {e.index + 1}/{total} (index {e.index})")
        out.print(Panel(body, title=title, title_align="left"))
    if not examples:
        out.print(f"no examples: {split.value} has {total} (use --start below {total})")


@app.command("validate")
def validate_cmd(
    path: Path = typer.Argument(
        ..., help="A distribution folder, a split file (train.json/test.json), or a folder of distributions."
    ),
    max_problems: int = typer.Option(
        50, "--max-problems", min=1, help="Show at most this many problems per file."
    ),
) -> None:
    """Check files against the GENIES data rules; exit 1 if any example breaks them.

    Rules: a non-empty string `prompt`; a non-empty `responses` object with scores 0 or 1 (numbers),
    exactly one 1 and at least one 0; no split where most examples share one tiny prompt.
    Train/test duplicates are reported as warnings, which do not fail validation.
    """
    from collections import Counter

    from rich.markup import escape

    from genies.data.validation import Problem, check_distribution, check_split_file
    from genies.errors import DataError, ValidationError

    if not path.exists():
        raise DataError(f"no such file or folder: {path}")
    problems: list[Problem] = []
    if path.is_file():
        problems = check_split_file(path)[1]
        checked = f"1 file ({path})"
    else:
        if (path / "distributions").is_dir():
            path = path / "distributions"
        folders = [path] if (path / "train.json").exists() or (path / "test.json").exists() else None
        if folders is None:
            folders = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not folders:
            raise DataError(f"{path} holds no distribution (a folder with train.json and test.json)")
        for folder in folders:
            problems.extend(check_distribution(folder).problems)
        checked = f"{len(folders)} distribution{'s' * (len(folders) > 1)} ({path})"

    out = make_console()
    shown: Counter[str] = Counter()
    for p in problems:
        shown[p.file] += 1
        if shown[p.file] <= max_problems:
            style = "yellow" if p.severity == "warning" else "red"
            out.print(f"[{style}]{p.severity}:[/] {escape(str(p))}", soft_wrap=True)
    for file, count in shown.items():
        if count > max_problems:
            out.print(f"… {count - max_problems} more problems in {escape(file)}", soft_wrap=True)
    errors = sum(p.severity == "error" for p in problems)
    warnings = len(problems) - errors
    summary = f"{errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)} in {checked}"
    if errors:
        raise ValidationError(summary)
    out.print(f"[green]valid:[/] {escape(summary)}", soft_wrap=True)


@app.command("synth")
def synth_cmd(
    size: int = typer.Option(200, "--size", min=1, help="Train examples per distribution."),
    test_size: int | None = typer.Option(
        None, "--test-size", min=1, help="Test examples per distribution (default: half of --size)."
    ),
    seed: int = typer.Option(
        0, "--seed", help="Generator seed: the same seed and sizes give the same bytes."
    ),
    data_dir: Path | None = typer.Option(None, "--data-dir", help=_DATA_DIR_HELP),
) -> None:
    """(Re)generate the synthetic suite: small analogies with planted causes (ids synth_*).

    Replaces the previous synthetic distributions in one atomic swap and keeps every other
    distribution; imports of the official data keep the synthetic ones. Run them with
    `genies run --suite synthetic`; `genies shifts list --suite synthetic` shows the shifts.
    """
    from rich.markup import escape

    from genies.data.synthetic import generate

    result = generate(data_dir, seed=seed, train_size=size, test_size=test_size or max(1, size // 2))
    out = make_console()
    out.print(
        f"generated [bold]{len(result.ids)}[/] synthetic distributions ({result.train_size} train / "
        f"{result.test_size} test examples each, seed {result.seed}) into "
        f"{escape(str(result.data_dir))} in {result.seconds:.1f} s"
        + (f"; removed stale {', '.join(result.removed)}" if result.removed else ""),
        soft_wrap=True,
    )
    out.print(
        "shifts: `genies shifts list --suite synthetic`; run: `genies run -i zero_shot --suite synthetic`"
    )
