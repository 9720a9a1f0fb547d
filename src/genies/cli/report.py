"""`genies compare` (paired statistics between two runs) and `genies report` (HTML / Markdown report)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from genies.cli._console import make_console


def _store_option() -> Path | None:
    return typer.Option(
        None,
        "--store",
        help="Result store holding the runs' evaluation records (default: $GENIES_STORE_DIR or "
        "~/.cache/genies/store).",
    )


def register(app: typer.Typer) -> None:
    @app.command("compare")
    def compare(
        result_a: Path = typer.Argument(
            ..., help="Result A: a `genies run` <suite>.json or its folder.", show_default=False
        ),
        result_b: Path = typer.Argument(..., help="Result B (differences are B − A).", show_default=False),
        suite: str | None = typer.Option(None, "--suite", "-s", help="Pick this suite's result in folders."),
        as_json: bool = typer.Option(False, "--json", help="Print the comparison as JSON."),
        seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap and permutation draws."),
        n_boot: int = typer.Option(2000, "--n-boot", min=1, help="Bootstrap resamples."),
        store: Path | None = _store_option(),
        store_b: Path | None = typer.Option(None, "--store-b", help="B's result store, if not --store."),
    ) -> None:
        """Paired comparison of two runs on their common shifts: Δ accuracy and Δ DE with paired
        bootstrap CIs, permutation p-values and Holm–Bonferroni correction."""
        from genies.report.compare import compare_results, render

        c = compare_results(
            result_a, result_b, suite=suite, seed=seed, n_boot=n_boot, store=store, store_b=store_b
        )
        if as_json:
            typer.echo(json.dumps(c.to_dict(), indent=1, ensure_ascii=False))
        else:
            make_console(piped_width=200).print(render(c))

    @app.command("report")
    def report(
        results: list[Path] | None = typer.Argument(
            None,
            help="`genies run` outputs (<suite>.json, or .csv) or folders holding them "
            "\\[default: ./genies-results].",
            show_default=False,
        ),
        out: Path = typer.Option(Path("report.html"), "--out", "-o", help="The report file to write."),
        fmt: str = typer.Option(
            "html",
            "--format",
            "-f",
            help="html (one self-contained file) or md (Markdown with PNGs beside it).",
        ),
        compare_paper: str | None = typer.Option(
            None, "--compare-paper", help="Put this paper model's published numbers beside (e.g. llama-30b)."
        ),
        title: str | None = typer.Option(None, "--title", help="Report title."),
        suite: str | None = typer.Option(None, "--suite", "-s", help="Only results of this suite."),
        store: Path | None = _store_option(),
    ) -> None:
        """One report of results: suite table, DE bars (with the paper's), reliability diagrams, the
        transfer heatmap, paired comparisons and run metadata."""
        from genies.errors import DataError
        from genies.report.html import write_report

        if fmt not in ("html", "md"):
            raise DataError(f"--format must be html or md, not {fmt!r}")
        path = write_report(
            list(results or []),
            out,
            fmt=fmt,
            compare_paper=compare_paper,  # type: ignore[arg-type]
            title=title,
            store=store,
            suite=suite,
        )
        make_console(piped_width=200).print(f"wrote {path}", soft_wrap=True, markup=False)
