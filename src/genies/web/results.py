"""The ``genies run`` outputs under a results folder, re-listed when a page asks (cheap) and parsed once.

Files are found as ``genies results table`` finds them (``genies.report.table.find_result_files``:
``*.json`` suite results anywhere under the folder) and read with its ``read_json_result``; a parsed
file is kept until its size or mtime changes. A file that cannot be read is listed with its one-line
reason instead of breaking the page. Pages name a result by its path relative to the folder, and only
names found by the listing resolve: nothing outside the folder can be opened through a URL.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

from genies.errors import GeniesError
from genies.records import SuiteResult
from genies.report.table import find_result_files, read_json_result


@dataclass
class ResultFile:
    id: str  # path relative to the results folder, posix
    path: Path
    result: SuiteResult | None
    error: str | None = None


class ResultsIndex:
    def __init__(self, root: Path, *, refresh_s: float = 2.0) -> None:
        self.root = root
        self.refresh_s = refresh_s
        self._lock = threading.Lock()
        self._files: dict[str, tuple[tuple[int, int], ResultFile]] = {}
        self._checked = float("-inf")

    def refresh(self, *, force: bool = False) -> None:
        with self._lock:
            if not force and time.monotonic() - self._checked < self.refresh_s:
                return
            found: dict[str, tuple[tuple[int, int], ResultFile]] = {}
            paths = find_result_files([self.root]) if self.root.is_dir() else []
            for path in paths:
                try:
                    st = path.stat()
                except OSError:
                    continue
                rid = path.relative_to(self.root).as_posix()
                stamp = (st.st_size, st.st_mtime_ns)
                cached = self._files.get(rid)
                if cached is not None and cached[0] == stamp:
                    found[rid] = cached
                    continue
                try:
                    found[rid] = (stamp, ResultFile(rid, path, read_json_result(path)))
                except GeniesError as exc:
                    found[rid] = (stamp, ResultFile(rid, path, None, str(exc)))
            self._files = found
            self._checked = time.monotonic()

    def files(self) -> list[ResultFile]:
        self.refresh()
        return [f for _, f in sorted(self._files.values(), key=lambda x: x[1].id)]

    def loaded(self) -> list[tuple[str, SuiteResult]]:
        return [(f.id, f.result) for f in self.files() if f.result is not None]

    def get(self, rid: str) -> ResultFile | None:
        self.refresh()
        entry = self._files.get(rid)
        return entry[1] if entry is not None else None
