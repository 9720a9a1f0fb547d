"""The local data store: import the GENIES release, and summarize what is in it.

Layout: ``<data_dir>/distributions/<id>/{train,test,metadata}.json`` plus
``<data_dir>/distributions/manifest.json`` (where the data came from, per-file sha256/size and each
distribution's statistics and status). Other files of the release (``extra.json``, ``*-copy.json``,
editor junk, ``alpaca_mmlu/hps``) are never read by genies and are not copied.

An import never damages the current store: the source is extracted into a temporary folder beside
it, every distribution is validated, and only then is the old ``distributions`` folder swapped for
the new one by two renames. The manifest lives inside the swapped folder, so it always describes
the files next to it.

*Generated* distributions (``metadata.json`` names its maker under ``generated_by``, e.g. the
``synth_*`` suite of ``genies.data.synthetic``) belong to the store, not to a release: an import
carries them over into the new folder unless the source brings a distribution of the same id, and
``install_generated`` replaces one generator's distributions while keeping everything else.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tarfile
import tempfile
import time
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

from genies.data.loading import (
    ID_PATTERN,
    IMPORT_HINT,
    check_data_dir,
    distributions_root,
    file_key,
    list_distribution_ids,
)
from genies.data.validation import SPLITS, DistributionReport, check_distribution, read_json, summarize
from genies.errors import DataError, ValidationError
from genies.io import atomic_write_json
from genies.paths import data_dir as _data_dir

OFFICIAL_URL = "https://genies-data.s3.us-east-2.amazonaws.com/genies-datasets.tar"
MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
KEPT_FILES = ("train.json", "test.json", "metadata.json")
GENERATED_KEY = "generated_by"  # metadata.json key naming the generator of a generated distribution
MAX_IMPORT_BYTES = 4 << 30  # refuses archives that would unpack to more (the release: 108 MB)
_CHUNK = 1 << 20


@dataclass
class DistributionInfo:
    """One row of ``genies data list``. Counts are None when the files cannot be read."""

    id: str
    status: str
    train_examples: int | None = None
    test_examples: int | None = None
    train_pairs: int | None = None
    test_pairs: int | None = None
    responses_per_example: list[int] = field(default_factory=list)
    test_duplicates: int | None = None  # test examples identical to a train example
    test_shared_prompts: int | None = None  # further test examples whose prompt is in train
    notes: list[str] = field(default_factory=list)  # warnings about one split

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ImportResult:
    """What ``import_data`` did."""

    data_dir: Path
    source: str
    distributions: list[DistributionInfo]
    skipped_files: int
    seconds: float
    kept: list[DistributionInfo] = field(default_factory=list)  # generated ones carried over


def _info(report: DistributionReport) -> DistributionInfo:
    info = DistributionInfo(report.id, report.status, notes=[w.brief() for w in report.split_warnings])
    if report.overlap is not None:
        info.test_duplicates, info.test_shared_prompts = report.overlap
    if report.records:
        train, test = report.records["train"], report.records["test"]
        info.train_examples, info.test_examples = len(train), len(test)
        info.train_pairs = sum(len(r["responses"]) - 1 for r in train)
        info.test_pairs = sum(len(r["responses"]) - 1 for r in test)
        info.responses_per_example = sorted({len(r["responses"]) for r in train + test})
    return info


def _file_entry(path: Path) -> dict[str, Any]:
    from genies.hashing import sha256_file

    st = path.stat()
    return {"sha256": sha256_file(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _files_unchanged(folder: Path, files: dict[str, Any]) -> bool:
    def recorded(name: str) -> tuple[Any, Any]:
        entry = files.get(name) or {}
        return entry.get("size"), entry.get("mtime_ns")

    return all(file_key(folder / f"{split}.json") == recorded(f"{split}.json") for split in SPLITS)


def _manifest_entry(folder: Path, info: DistributionInfo) -> dict[str, Any]:
    files = {n: _file_entry(folder / n) for n in KEPT_FILES if (folder / n).is_file()}
    return {"files": files, "info": info.to_json()}


def read_manifest(data_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The store's manifest, or {} when there is none (or it is unreadable: it is only a cache)."""
    manifest, problem = read_json(distributions_root(data_dir) / MANIFEST)
    if problem is None and isinstance(manifest, dict) and manifest.get("format") == MANIFEST_FORMAT:
        return manifest
    return {}


def _cached_info(folder: Path, entry: Any) -> DistributionInfo | None:
    """The manifest's statistics for ``folder`` if its split files are unchanged since recorded."""
    if not isinstance(entry, dict) or not _files_unchanged(folder, entry.get("files") or {}):
        return None
    try:
        return DistributionInfo(**entry["info"])
    except (KeyError, TypeError):
        return None


def list_distributions(data_dir: str | os.PathLike[str] | None = None) -> list[DistributionInfo]:
    """Statistics and status of every distribution in the store.

    Uses the manifest's cached statistics for files whose size and mtime are unchanged since the
    import; anything else is re-checked (and the manifest refreshed when possible).
    """
    root = distributions_root(data_dir)
    manifest = read_manifest(data_dir) or {"format": MANIFEST_FORMAT, "source": None}
    cached = manifest.get("distributions") or {}
    entries, infos, changed = {}, [], False
    for dist_id in list_distribution_ids(data_dir):
        info = _cached_info(root / dist_id, cached.get(dist_id))
        if info is None:
            info = _info(check_distribution(root / dist_id))
            cached[dist_id] = _manifest_entry(root / dist_id, info)
            changed = True
        entries[dist_id] = cached[dist_id]
        infos.append(info)
    if changed:
        _refresh_manifest(data_dir, {**manifest, "distributions": entries})
    return infos


def _refresh_manifest(data_dir: str | os.PathLike[str] | None, manifest: dict[str, Any]) -> None:
    # Best effort: a read-only store, or an import running right now, just means no cache update.
    from filelock import FileLock, Timeout

    try:
        with FileLock(str(_data_dir(data_dir) / ".import.lock"), timeout=0):
            atomic_write_json(distributions_root(data_dir) / MANIFEST, manifest)
    except (OSError, Timeout):
        pass


# --------------------------------------------------------------------------------------------------
# import


def _progress(enabled: bool) -> Any:
    """A rich progress display on stderr (a silent one when disabled); byte tasks show sizes."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TransferSpeedColumn,
    )
    from rich.text import Text

    class Amount(ProgressColumn):
        """Size and speed for byte tasks (download, extraction), a plain count for the others."""

        def __init__(self) -> None:
            super().__init__()
            self.size, self.speed = DownloadColumn(), TransferSpeedColumn()

        def render(self, task: Any) -> Text:
            if task.fields.get("bytes"):
                return Text.assemble(self.size.render(task), " ", self.speed.render(task))
            return Text(
                f"{task.completed:.0f}/{task.total:.0f}" if task.total else "", style="progress.download"
            )

    console = Console(stderr=True)
    return Progress(
        TextColumn("{task.description:<12}"),
        BarColumn(),
        Amount(),
        console=console,
        disable=not (enabled and console.is_terminal),  # no bar frames in logs or pipes
    )


class _CountingReader:
    """Wraps a binary file and reports every read's size (drives the extraction progress bar)."""

    def __init__(self, raw: Any, advance: Any) -> None:
        self.raw, self.advance = raw, advance

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.advance(len(data))
        return data


def _member_name(member: tarfile.TarInfo, archive: str) -> str:
    """The member's normalized name, or a one-line DataError if extracting it would be unsafe."""
    name = member.name
    while name.startswith("./"):
        name = name[2:]
    unsafe = None
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        unsafe = "has an absolute path"
    elif ".." in PurePosixPath(name.replace("\\", "/")).parts:
        unsafe = "points outside the archive ('..')"
    elif member.issym() or member.islnk():
        unsafe = "is a link"
    elif not (member.isfile() or member.isdir()):
        unsafe = "is a device or special file"
    if unsafe:
        raise DataError(f"refusing to import {archive}: member {member.name!r} {unsafe}")
    return name


def _extract_tar(archive: Path, label: str, dest: Path, progress: Any) -> int:
    """Extract the distributions' kept files of a tar(.gz) into ``dest``; returns #skipped files."""
    extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
    task = progress.add_task("extracting", total=archive.stat().st_size, bytes=True)
    skipped = members = total = 0
    try:
        with (
            open(archive, "rb") as raw,
            tarfile.open(fileobj=_CountingReader(raw, lambda n: progress.advance(task, n)), mode="r|*") as tf,
        ):
            for member in tf:
                members += 1
                parts = _member_name(member, label).split("/")
                if not member.isfile():
                    continue
                if (
                    len(parts) != 3
                    or parts[0] != "distributions"
                    or parts[1].startswith(".")
                    or parts[2] not in KEPT_FILES
                ):
                    skipped += 1
                    continue
                if not ID_PATTERN.match(parts[1]):
                    raise DataError(f"refusing to import {label}: bad distribution folder name {parts[1]!r}")
                total += member.size
                if total > MAX_IMPORT_BYTES:
                    raise DataError(
                        f"refusing to import {label}: it unpacks to more than {MAX_IMPORT_BYTES >> 30} GiB"
                    )
                member.name = "/".join(parts)
                tf.extract(member, dest, **extra)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        if isinstance(exc, OSError) and exc.errno is not None:  # disk full, permissions, ...
            raise DataError(f"cannot import {label}: {exc.strerror or exc}") from None
        if members == 0:
            raise DataError(f"{label} is not a tar archive ({exc})") from None
        raise DataError(f"{label} is truncated or corrupt ({exc})") from None
    return skipped


def _copy_tree(source: Path, dest: Path) -> int:
    """Copy the distributions' kept files of a folder in the release layout; returns #skipped files."""
    if (source / "distributions").is_dir():
        source = source / "distributions"
    elif source.name != "distributions":
        raise DataError(f"{source} has no distributions/ folder (expected distributions/<id>/train.json)")
    skipped = 0
    for folder in sorted(p for p in source.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if not ID_PATTERN.match(folder.name):
            raise DataError(f"refusing to import {source}: bad distribution folder name {folder.name!r}")
        target = dest / "distributions" / folder.name
        target.mkdir(parents=True)
        for item in folder.rglob("*"):
            if item.parent == folder and item.name in KEPT_FILES and item.is_file():
                shutil.copy2(item, target / item.name)  # keeps mtime: re-imports give identical stores
            elif item.is_file():
                skipped += 1
    return skipped


def _download(url: str, dest: Path, timeout: float, progress: Any) -> None:
    import urllib.error
    import urllib.request

    hint = f"download {url} another way and run `genies data import FILE`"
    task = progress.add_task("downloading", total=None, bytes=True)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(dest, "wb") as out:
            length = resp.headers.get("Content-Length")
            progress.update(task, total=int(length) if length and length.isdigit() else None)
            for chunk in iter(lambda: resp.read(_CHUNK), b""):
                out.write(chunk)
                progress.advance(task, len(chunk))
    except urllib.error.HTTPError as exc:
        raise DataError(f"cannot download {url}: HTTP {exc.code} {exc.reason}", hint=hint) from None
    except urllib.error.URLError as exc:
        raise DataError(f"cannot download {url}: {exc.reason}", hint=hint) from None
    except (OSError, ValueError) as exc:  # timeouts, resets, malformed URLs
        raise DataError(f"cannot download {url}: {exc or type(exc).__name__}", hint=hint) from None


def _swap_in(new: Path, target: Path) -> None:
    """Replace ``target`` (a folder, maybe absent) by ``new``; on failure ``target`` is unchanged."""
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=".old-", dir=target.parent)) / target.name
        os.rename(target, old)
    try:
        os.rename(new, target)
    except OSError:
        if old is not None:
            os.rename(old, target)
        raise
    if old is not None:
        shutil.rmtree(old.parent, ignore_errors=True)


@contextlib.contextmanager
def _import_lock(root: Path) -> Iterator[None]:
    from filelock import FileLock, Timeout

    try:
        with FileLock(str(root / ".import.lock"), timeout=0):
            yield
    except Timeout:
        raise DataError(f"another genies import into {root} is running; try again when it is done") from None


def _remove_leftovers(root: Path) -> None:
    """Delete temp folders of killed imports (under the import lock, so none is in use)."""
    for p in root.glob(".import-*"):
        shutil.rmtree(p, ignore_errors=True)
    if (root / "distributions").is_dir():  # else an .old-* folder may hold the only copy of the store
        for p in root.glob(".old-*"):
            shutil.rmtree(p, ignore_errors=True)


def import_data(
    source: str | os.PathLike[str],
    data_dir: str | os.PathLike[str] | None = None,
    progress: bool = False,
    *,
    timeout: float = 30.0,
    strict: bool = False,
) -> ImportResult:
    """Import GENIES distributions into the data store, replacing what it held.

    Generated distributions (see ``generated_by``) that the source does not provide are kept and
    listed in ``ImportResult.kept``.

    ``source``: a release tarball (``.tar``/``.tar.gz``), an http(s) URL of one, or a folder with a
    ``distributions/`` sub-folder. ``timeout`` bounds the connection and every read of a download.

    What is refused (DataError/ValidationError, the store left as it was): anything unsafe, and any
    file that breaks the record rules (bad JSON, a missing prompt, scores other than one 1 and some
    0s). A distribution whose files are well-formed but meaningless (the official release's
    ``commonsense_qa``, whose prompts are all one letter; no shift uses it) is imported and marked
    invalid: ``data list`` shows it, runs refuse to load it. ``strict=True`` refuses those too.
    """
    start = time.perf_counter()
    src = str(source)
    is_url = src.startswith(("http://", "https://"))
    if not is_url:
        path = Path(source).expanduser()
        if not path.exists():
            raise DataError(f"no such file or folder: {path}")
        src = str(path.resolve())
    root = _data_dir(data_dir)
    check_data_dir(data_dir)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create the data store {root}: {exc.strerror or exc}") from None

    with _import_lock(root), _progress(progress) as bar:
        _remove_leftovers(root)
        staging = Path(tempfile.mkdtemp(prefix=".import-", dir=root))
        try:
            new = staging / "distributions"
            new.mkdir()
            if is_url:
                archive = staging / "download.tar"
                _download(src, archive, timeout, bar)
                skipped = _extract_tar(archive, src, staging, bar)
            elif Path(src).is_dir():
                skipped = _copy_tree(Path(src), staging)
            else:
                skipped = _extract_tar(Path(src), src, staging, bar)
            infos = _validate_staged(new, src, bar, strict=strict)
            kept = _carry_generated(root / "distributions", new)
            manifest = {
                "format": MANIFEST_FORMAT,
                "source": src,
                "imported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "skipped_files": skipped,
                "distributions": {i.id: _manifest_entry(new / i.id, i) for i in infos + kept},
            }
            atomic_write_json(new / MANIFEST, manifest)
            _swap_in(new, root / "distributions")
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return ImportResult(root, src, infos, skipped, time.perf_counter() - start, kept)


def _validate_staged(new: Path, label: str, bar: Any, *, strict: bool = False) -> list[DistributionInfo]:
    ids = sorted(p.name for p in new.iterdir() if p.is_dir())
    if not ids:
        raise DataError(
            f"no distributions found in {label} (expected distributions/<id>/train.json and test.json)"
        )
    task = bar.add_task("validating", total=len(ids))
    reports = []
    for dist_id in ids:
        reports.append(check_distribution(new / dist_id, f"distributions/{dist_id}"))
        bar.advance(task)
    errors = [p for r in reports for p in r.errors + (r.sanity if strict else [])]
    if errors:
        raise ValidationError(f"refusing to import {label}: {summarize(errors)}")
    return [_info(r) for r in reports]


# --------------------------------------------------------------------------------------------------
# generated distributions


def generated_by(folder: Path) -> str | None:
    """The generator named in a distribution folder's ``metadata.json``; None for imported data."""
    meta, problem = read_json(folder / "metadata.json")
    if problem is None and isinstance(meta, dict) and isinstance(meta.get(GENERATED_KEY), str):
        return meta[GENERATED_KEY]
    return None


def _store_folders(current: Path) -> list[Path]:
    if not current.is_dir():
        return []
    return sorted(p for p in current.iterdir() if p.is_dir() and ID_PATTERN.match(p.name))


def _carry_generated(current: Path, new: Path) -> list[DistributionInfo]:
    """Copy the store's generated distributions that ``new`` lacks into it (an import keeps them)."""
    kept = []
    for folder in _store_folders(current):
        if (new / folder.name).exists() or generated_by(folder) is None:
            continue
        (new / folder.name).mkdir()
        for name in KEPT_FILES:
            if (folder / name).is_file():
                shutil.copy2(folder / name, new / folder.name / name)
        kept.append(_info(check_distribution(new / folder.name)))
    return kept


def _link_tree(src: Path, dest: Path) -> None:
    """Clone a folder by hard links (instant, no extra space), copying where links are refused.

    Safe because store files are only ever replaced by renames, never rewritten in place.
    """
    for path in sorted(src.rglob("*")):
        target = dest / path.relative_to(src)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, target)
        except OSError:
            shutil.copy2(path, target)


def install_generated(
    generator: str, files: dict[str, dict[str, bytes]], data_dir: str | os.PathLike[str] | None = None
) -> list[str]:
    """Replace every distribution made by ``generator`` with ``files`` (id → file name → bytes).

    One atomic swap of the whole ``distributions`` folder, like an import: the other distributions
    are hard-linked into the new folder (the official 108 MB in milliseconds) with their manifest
    entries; the generator's old distributions that ``files`` does not name are dropped (their ids
    are returned). Refuses, with the store unchanged, an id held by a distribution that the
    generator did not make, a file other than train/test/metadata.json, a ``metadata.json`` that
    does not name the generator, or files that break the data rules.
    """
    root = _data_dir(data_dir)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create the data store {root}: {exc.strerror or exc}") from None
    current = root / "distributions"
    with _import_lock(root):
        _remove_leftovers(root)
        staging = Path(tempfile.mkdtemp(prefix=".import-", dir=root))
        try:
            new = staging / "distributions"
            new.mkdir()
            infos = _stage_generated(generator, files, new)
            old = read_manifest(data_dir).get("distributions") or {}
            entries, removed = {}, []
            for folder in _store_folders(current):
                maker = generated_by(folder)
                if maker == generator:
                    if folder.name not in files:
                        removed.append(folder.name)
                    continue
                if folder.name in files:
                    raise DataError(
                        f"distribution {folder.name!r} in {current} was not made by {generator}; "
                        "remove it or use another --data-dir"
                    )
                _link_tree(folder, new / folder.name)
                if folder.name in old:
                    entries[folder.name] = old[folder.name]
            entries |= {i.id: _manifest_entry(new / i.id, i) for i in infos}
            manifest = {**read_manifest(data_dir), "format": MANIFEST_FORMAT, "distributions": entries}
            manifest.setdefault("source", None)
            atomic_write_json(new / MANIFEST, manifest)
            _swap_in(new, current)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return removed


def _stage_generated(generator: str, files: dict[str, dict[str, bytes]], new: Path) -> list[DistributionInfo]:
    reports = []
    for dist_id, members in files.items():
        if not ID_PATTERN.match(dist_id):
            raise DataError(f"bad distribution id {dist_id!r}")
        if set(members) - set(KEPT_FILES):
            raise DataError(f"{dist_id}: only {', '.join(KEPT_FILES)} can be written")
        folder = new / dist_id
        folder.mkdir()
        for name, data in members.items():
            (folder / name).write_bytes(data)
        if generated_by(folder) != generator:
            raise DataError(f"{dist_id}: metadata.json must say {GENERATED_KEY}: {generator!r}")
        reports.append(check_distribution(folder, f"distributions/{dist_id}"))
    errors = [p for r in reports for p in r.errors + r.sanity]
    if errors:
        raise ValidationError(f"refusing to write generated distributions: {summarize(errors)}")
    return [_info(r) for r in reports]


def download_data(
    url: str = OFFICIAL_URL,
    data_dir: str | os.PathLike[str] | None = None,
    progress: bool = False,
    *,
    timeout: float = 30.0,
    strict: bool = False,
) -> ImportResult:
    """Download and import the official GENIES release (see ``import_data``)."""
    return import_data(url, data_dir, progress, timeout=timeout, strict=strict)


__all__ = [
    "GENERATED_KEY",
    "IMPORT_HINT",
    "OFFICIAL_URL",
    "DistributionInfo",
    "ImportResult",
    "download_data",
    "generated_by",
    "import_data",
    "install_generated",
    "list_distributions",
    "read_manifest",
]
