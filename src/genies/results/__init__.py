"""Results that genies did not compute itself: the paper's published evaluations and tables."""

from genies.results.upstream import (
    PAPER_SUITES,
    ImportSummary,
    ReproduceSummary,
    UpstreamStore,
    UpstreamTTC,
    import_upstream,
    paper_rows,
    reproduce_paper,
    upstream_dir,
    write_upstream_csv,
)

__all__ = [
    "PAPER_SUITES",
    "ImportSummary",
    "ReproduceSummary",
    "UpstreamStore",
    "UpstreamTTC",
    "import_upstream",
    "paper_rows",
    "reproduce_paper",
    "upstream_dir",
    "write_upstream_csv",
]
