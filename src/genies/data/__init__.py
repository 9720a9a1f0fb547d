"""GENIES data: typed distributions, validation rules, and the local data store.

Typical use::

    from genies.data import load_distribution
    dist = load_distribution("alpaca_easy")          # validated, cached in-process
    pairs = dist.test.to_pairs("all")
"""

from genies.data.loading import distribution_path, list_distribution_ids, load_distribution
from genies.data.schema import Distribution, Example, Pair, Split
from genies.data.store import DistributionInfo, ImportResult, download_data, import_data, list_distributions
from genies.data.validation import Problem, check_distribution, validate_records

__all__ = [
    "Distribution",
    "DistributionInfo",
    "Example",
    "ImportResult",
    "Pair",
    "Problem",
    "Split",
    "check_distribution",
    "distribution_path",
    "download_data",
    "import_data",
    "list_distribution_ids",
    "list_distributions",
    "load_distribution",
    "validate_records",
]
