"""What the browser knows about the data store, built once at start-up and read by every page.

Start-up reads only the store's manifest (the cached statistics ``genies data list`` shows) and the
shift registry, so it costs milliseconds however large the data is. A split is parsed the first time a
page shows it, through ``genies.data.load_distribution`` (an in-process LRU keyed by the files'
size and mtime), and its search text is kept beside it; no request parses a split that is already
cached, and none parses more than the one or two splits it shows.

Every lookup goes through the set of ids listed at start-up: a name that is not a distribution of the
store (``..``, ``a/b``, an unknown id) is ``None`` here and a 404 for the page, so no request can make
the browser open a file outside the store.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from genies.data import DistributionInfo, Split, list_distributions, load_distribution
from genies.data.loading import check_data_dir, distributions_root, file_key
from genies.errors import DataError
from genies.shifts import Shift, get_suite

SPLITS = ("test", "train")  # test first: it is what evaluations score
_SEARCH_CACHE = 8  # splits whose lower-cased search text is kept
MIN_TEMPLATE = 12  # shorter shared beginnings/ends are shown in previews


@dataclass(frozen=True)
class SplitView:
    """A parsed split with what pages need beside it."""

    distribution: str
    split: Split
    status: str  # the distribution's status from the manifest ("ok" or "invalid: ...")


class DataIndex:
    """The data store as the browser sees it: distributions, their statistics, shifts."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        root = check_data_dir(data_dir)
        if not data_dir.is_dir():
            raise DataError(f"data store {data_dir} does not exist", hint="pass --data-dir, or import data")
        infos = list_distributions(data_dir)
        if not infos:
            raise DataError(
                f"no distributions in the data store {data_dir} (nothing under {root})",
                hint="run `genies data import FILE` first, or pass --data-dir",
            )
        self.infos: dict[str, DistributionInfo] = {i.id: i for i in infos}
        self.shifts: list[Shift] = get_suite("all")
        self._search: OrderedDict[tuple, list[str]] = OrderedDict()
        self._templates: dict[tuple, tuple[str, str]] = {}
        self._lock = threading.Lock()

    # ----------------------------------------------------------------------------------- lookups

    def info(self, dist_id: str) -> DistributionInfo | None:
        """The manifest row of ``dist_id``; None for anything that is not one of the store's ids."""
        return self.infos.get(dist_id)

    def split(self, dist_id: str, split: str) -> SplitView | None:
        """The parsed split (None for an unknown id or split). Raises GeniesError for a broken one."""
        info = self.infos.get(dist_id)
        if info is None or split not in SPLITS:
            return None
        folder = distributions_root(self.data_dir) / dist_id
        dist = load_distribution(folder, strict=False)
        return SplitView(dist_id, dist.split(split), info.status)

    def find_shift(self, source: str, target: str) -> Shift | None:
        return next((s for s in self.shifts if s.source == source and s.target == target), None)

    def shifts_of(self, dist_id: str) -> list[Shift]:
        """The shifts that train on, evaluate on, or take their reference from ``dist_id``."""
        return [s for s in self.shifts if dist_id in s.distributions]

    # ----------------------------------------------------------------------------------- search

    def _haystack(self, view: SplitView) -> list[str]:
        path = distributions_root(self.data_dir) / view.distribution / f"{view.split.name}.json"
        key = (view.distribution, view.split.name, file_key(path))
        with self._lock:
            if key in self._search:
                self._search.move_to_end(key)
                return self._search[key]
        texts = ["\n".join([ex.prompt, *ex.texts]).casefold() for ex in view.split.examples]
        with self._lock:
            self._search[key] = texts
            while len(self._search) > _SEARCH_CACHE:
                self._search.popitem(last=False)
        return texts

    def template(self, view: SplitView) -> tuple[str, str]:
        """(beginning, end) every prompt of the split shares, cut at line breaks ("" if short).

        Many distributions wrap every prompt in the same instruction template; list previews show
        what differs between examples instead of the template.
        """
        path = distributions_root(self.data_dir) / view.distribution / f"{view.split.name}.json"
        key = (view.distribution, view.split.name, file_key(path))
        with self._lock:
            if key in self._templates:
                return self._templates[key]
        prompts = [ex.prompt for ex in view.split.examples]
        head = _cut(os.path.commonprefix(prompts), at_end=True) if len(prompts) > 1 else ""
        rest = [p[len(head) :] for p in prompts]
        tail = (
            _cut(os.path.commonprefix([r[::-1] for r in rest])[::-1], at_end=False) if len(rest) > 1 else ""
        )
        found = (head if len(head) >= MIN_TEMPLATE else "", tail if len(tail) >= MIN_TEMPLATE else "")
        with self._lock:
            self._templates[key] = found
        return found

    def search(self, view: SplitView, query: str) -> list[int]:
        """Indices of the examples whose prompt or a response contains ``query`` (case-insensitive)."""
        needle = query.casefold().strip()
        if not needle:
            return list(range(len(view.split)))
        return [i for i, text in enumerate(self._haystack(view)) if needle in text]


def _cut(common: str, *, at_end: bool) -> str:
    """A shared prefix (``at_end``) or suffix trimmed to whole lines, so no word is split."""
    if at_end:
        i = common.rfind("\n")
        return common[: i + 1] if i >= 0 else ""
    i = common.find("\n")
    return common[i:] if i >= 0 else ""
