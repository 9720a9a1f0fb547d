"""Load validated distributions from the data store (or any folder), cached in-process.

The pipeline asks for the same distributions again and again (source, target, reference of many
shifts), so parsed distributions are kept in an LRU cache keyed by folder and the files'
size/mtime: an edited file is re-read, an unchanged one is not. Cached objects are shared: treat
them as read-only.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path

from genies.data.schema import Distribution, examples_from_records
from genies.data.validation import Problem, check_distribution, summarize
from genies.errors import DataError, UnknownNameError, ValidationError
from genies.paths import data_dir as _data_dir

ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
IMPORT_HINT = "run `genies data download`, or `genies data import FILE` with the release tarball"


def distributions_root(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """``<data_dir>/distributions``: the folder holding one sub-folder per distribution."""
    return _data_dir(data_dir) / "distributions"


def check_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The store's ``distributions`` folder; DataError if the store (or it) exists but is not a folder.

    A store that does not exist yet is fine (it is empty); a file in its place is a mistake to report,
    not an empty store.
    """
    root = _data_dir(data_dir)
    for p in (root, root / "distributions"):
        if p.exists() and not p.is_dir():
            raise DataError(f"{p} is a file; the data store must be a folder")
    return root / "distributions"


def list_distribution_ids(data_dir: str | os.PathLike[str] | None = None) -> list[str]:
    """Sorted ids (folder names) of the distributions in the store, valid or not; [] when empty."""
    root = check_data_dir(data_dir)
    try:
        return sorted(p.name for p in root.iterdir() if p.is_dir() and ID_PATTERN.match(p.name))
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise DataError(f"cannot read the data store {root}: {exc.strerror or exc}") from None


def _looks_like_path(value: str | os.PathLike[str]) -> bool:
    if isinstance(value, os.PathLike):
        return True
    return "/" in value or os.sep in value or value in (".", "..") or value.startswith("~")


def distribution_path(
    id_or_path: str | os.PathLike[str], data_dir: str | os.PathLike[str] | None = None
) -> Path:
    """Folder of a distribution given its id (looked up in the store) or a folder path."""
    if _looks_like_path(id_or_path):
        path = Path(id_or_path).expanduser()
        if path.is_dir():
            return path
        if path.exists():
            raise DataError(f"{path} is a file; a distribution is a folder with train.json and test.json")
        raise DataError(f"no such distribution folder: {path}")
    name = str(id_or_path)
    path = distributions_root(data_dir) / name
    if ID_PATTERN.match(name) and path.is_dir():
        return path
    ids = list_distribution_ids(data_dir)
    hint = None if ids else f"the data store {_data_dir(data_dir)} is empty; {IMPORT_HINT}"
    raise UnknownNameError("distribution", name, ids, hint=hint)


def file_key(path: Path) -> tuple[int, int] | None:
    """(size, mtime_ns) of a file, None if absent: cheap change detection for caches."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


@lru_cache(maxsize=128)
def _load(path: str, train_key: object, test_key: object) -> tuple[Distribution, tuple[Problem, ...]]:
    # The keys only make the cache notice edited files; the content is read from ``path``.
    report = check_distribution(Path(path))
    if report.errors:
        raise ValidationError(
            f"invalid distribution {report.id!r}: {summarize(report.errors)}",
            hint=f"run `genies data validate {path}` for the full list",
        )
    splits = {name: examples_from_records(recs, name, report.id) for name, recs in report.records.items()}
    return Distribution(report.id, splits["train"], splits["test"], Path(path)), tuple(report.sanity)


def load_distribution(
    id_or_path: str | os.PathLike[str],
    data_dir: str | os.PathLike[str] | None = None,
    *,
    strict: bool = True,
) -> Distribution:
    """Load a distribution (both splits validated) by id from the data store, or from a folder.

    Raises UnknownNameError (with "did you mean") for an unknown id, DataError for a missing folder,
    ValidationError for files breaking the rules. ``strict=False`` still loads a distribution that
    only fails the distribution-level sanity check (e.g. ``commonsense_qa``), for inspection.
    """
    path = distribution_path(id_or_path, data_dir).resolve()
    dist, sanity = _load(str(path), file_key(path / "train.json"), file_key(path / "test.json"))
    if strict and sanity:
        raise ValidationError(
            f"distribution {dist.id!r} is not usable: {summarize(sanity)}",
            hint=f"inspect it with `genies data show {dist.id}`",
        )
    return dist


def clear_cache() -> None:
    """Forget cached distributions (tests; or after replacing files with identical size and mtime)."""
    _load.cache_clear()
