"""The paper's published results: import the raw evaluations, rebuild the published tables.

``import_upstream(path)`` reads the upstream ``results/`` tree (or the published-results tarball) and
stores every meaningful raw evaluation as a read-only ``EvaluationRecord`` (origin ``"upstream"``,
labelled with the paper's model name) under ``<store>/upstream/``, plus the per-target "best
target-tuned capability" entries. ``paper_rows`` rebuilds one table's rows from those records alone,
following published-results.md; ``reproduce_paper`` writes them as the upstream CSVs.

Store layout (``<store>/upstream/``, written only by the importer — the pipeline never writes here)::

    manifest.json                               index of everything imported (written last)
    evaluations/<model>/<intervention>.json     {"kind": "upstream_evaluations", "records": [...]}:
                                                the EvaluationRecords of one model and intervention
                                                (key = content hash of origin, label, intervention,
                                                train, eval)
    ttc/<model>.json                            {"kind": "upstream_ttc_set", "entries": [UpstreamTTC]}

The import is all-or-nothing: a source file that cannot be read or parsed (truncated JSON, not UTF-8)
refuses the whole import, naming the files, and the previous import stays as it was. (Files that are
readable but carry no evaluation — stale folders, non-JSON files — are skipped and counted.)

Records are bundled per (model, intervention) rather than one file per record: ~40 files instead of
~3,300 makes import and look-ups several times faster on slow file systems, and a table only ever
needs one intervention's records plus the baseline's. Every file is read-only (0o444). A re-import
builds a fresh tree beside the old one and swaps it in with two renames, so readers see either the old
import or the new one, never a mixture, and records that disappeared from the source do not linger.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import sys
import tarfile
import tempfile
import time
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pydantic
import pydantic_core

from genies._meta import __version__
from genies.errors import DataError, GeniesError, StoreError, UnknownNameError
from genies.hashing import content_hash
from genies.io import atomic_path
from genies.metrics import (
    METRICS_VERSION,
    as_probabilities,
    summarize,
    tie_count,
)
from genies.paths import store_dir
from genies.records import UPSTREAM_CSV_COLUMNS, EvaluationRecord, ShiftResult
from genies.rows import Cell, CIPolicy, build_row, csv_text, write_csv

UPSTREAM_SUBDIR = "upstream"
MANIFEST_NAME = "manifest.json"
MANIFEST_KIND = "upstream_manifest"
BUNDLE_KIND = "upstream_evaluations"
TTC_KIND = "upstream_ttc_set"
MANIFEST_VERSION = 1

#: The paper's baseline: zero-shot results stored under ``zero_shot/<model>-<source>/<target>``.
BASELINE_INTERVENTION = "zero_shot"
#: Suites with a published table, and the file name the upstream used for them.
PAPER_SUITES: dict[str, str] = {"genies": "GENIES.csv", "all-paper": "all.csv"}

# Upstream result folders are ``<model>`` (base model) or ``<model>-<train distribution>``. Model names
# contain dashes too, so the model part is matched against the families the upstream used.
_FOLDER_RE = re.compile(
    r"^(?:models-)?(?P<model>(?:open)?llama-\d+b|pythia-[\d.]+[mb]|gpt-tiny|human)(?:-(?P<train>.+))?$"
)
_SAFE_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.%+-]*$")
_READ_ONLY = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH  # 0o444
_TOP_FOLDERS = ("evaluations", "target_tuned_capability")
_NO_RESULTS = "holds no results/evaluations folder (expected the upstream results/ tree or the published-results tarball)"


class UpstreamTTC(pydantic.BaseModel):
    """The paper's target-tuned capability for one (model, target): the best of several interventions."""

    model_config = pydantic.ConfigDict(extra="forbid")

    label: str  # paper model name
    target: str
    target_reference: str | None = None  # absent in 5 llama-30b files
    best_intervention: str
    best_intervention_accuracy: float
    source_file: str


@dataclass
class ImportSummary:
    """What an import stored and what it skipped (file counts by reason)."""

    store: Path
    source: str
    records: Counter[tuple[str, str]] = field(default_factory=Counter)  # (label, intervention) → n
    ttc: Counter[str] = field(default_factory=Counter)  # label → n
    skipped: Counter[str] = field(default_factory=Counter)  # reason → n files
    seconds: float = 0.0

    @property
    def n_records(self) -> int:
        return sum(self.records.values())


# --- keys, paths and JSON --------------------------------------------------------------------------


def upstream_dir(store: str | os.PathLike[str] | None = None) -> Path:
    """``<store>/upstream``: where imported paper results live."""
    return store_dir(store) / UPSTREAM_SUBDIR


def record_key(label: str, intervention: str, train: str | None, eval_distribution: str) -> str:
    """Content hash identifying one imported evaluation."""
    return content_hash(
        {
            "origin": "upstream",
            "label": label,
            "intervention": intervention,
            "train_distribution": train,
            "eval_distribution": eval_distribution,
        }
    )


def _bundle_path(root: Path, label: str, intervention: str) -> Path:
    return root / "evaluations" / label / f"{intervention}.json"


def _ttc_path(root: Path, label: str) -> Path:
    return root / "ttc" / f"{label}.json"


def _loads(data: bytes) -> Any:
    # pydantic-core's parser: ~9x faster than json.loads, same float64 values, accepts NaN.
    return pydantic_core.from_json(data, allow_inf_nan=True)


def _dumps(obj: Any) -> bytes:
    # Shortest round-trip float repr, NaN written as NaN (Python's json reads it back).
    return pydantic_core.to_json(obj, inf_nan_mode="constants")


def _write_read_only(path: Path, obj: Any) -> None:
    """Write JSON atomically (temp file + rename), then drop the write bits (0o444).

    The rename replaces an older read-only file too: it needs write access to the folder only.
    """
    with atomic_path(path) as tmp:
        tmp.write_bytes(_dumps(obj))
    os.chmod(path, _READ_ONLY)


def _read_json(path: Path) -> Any:
    return _loads(path.read_bytes())


# --- reading the source ----------------------------------------------------------------------------


@dataclass
class _SourceFile:
    """One file of the results tree: its path relative to ``results/`` and a way to read it."""

    parts: tuple[str, ...]
    read: Callable[[], bytes]

    @property
    def rel(self) -> str:
        return "/".join(self.parts)


def _find_results_root(base: Path) -> Path:
    """The folder holding ``evaluations/``: ``base`` itself, ``base/results`` or ``base/*/results``."""
    candidates = [base, base / "results"]
    with contextlib.suppress(OSError):
        candidates += sorted(p / "results" for p in base.iterdir() if p.is_dir())
    for c in candidates:
        if (c / "evaluations").is_dir():
            return c
    raise DataError(f"{base} {_NO_RESULTS}")


def _folder_files(src: Path) -> list[_SourceFile]:
    results = _find_results_root(src)
    files = []
    for top in _TOP_FOLDERS:
        for path in sorted((results / top).rglob("*")) if (results / top).is_dir() else []:
            if path.is_file():
                files.append(_SourceFile(path.relative_to(results).parts, path.read_bytes))
    return files


def _archive_files(src: Path) -> tuple[list[_SourceFile], int]:
    """Regular files under ``[<dir>/]results/{evaluations,target_tuned_capability}`` of a tar archive,
    and the number of such members refused as unsafe.

    Members are read in one streaming pass straight into memory — nothing is extracted, so the
    archive cannot write anywhere — and each must pass tarfile's ``data`` filter (no absolute
    paths, no ``..``, no links, no devices) to be read at all.
    """
    nowhere = os.path.join(tempfile.gettempdir(), "genies-never-extracted")
    files: list[_SourceFile] = []
    prefix: tuple[str, ...] | None = None
    unsafe = 0
    try:
        with tarfile.open(src, "r|*") as tar:
            for member in tar:
                parts = tuple(p for p in member.name.split("/") if p not in ("", "."))
                idx = next((i for i, part in enumerate(parts) if part in _TOP_FOLDERS), None)
                if idx is None or member.isdir():
                    continue
                head = parts[:idx]
                if head and (head[-1] != "results" or len(head) > 2):
                    continue
                if prefix is None:
                    prefix = head
                if head != prefix:
                    continue
                try:
                    tarfile.data_filter(member, nowhere)
                except tarfile.FilterError:
                    unsafe += 1
                    continue
                if not member.isreg():
                    unsafe += 1
                    continue
                fh = tar.extractfile(member)
                data = fh.read() if fh is not None else b""
                files.append(_SourceFile(parts[idx:], lambda data=data: data))
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise DataError(f"cannot read archive {src}: {exc}") from None
    if not any(f.parts[0] == "evaluations" for f in files):
        raise DataError(f"{src} {_NO_RESULTS}")
    files.sort(key=lambda f: f.parts)
    return files, unsafe


class _Unreadable(Exception):
    """A source file that cannot be read or parsed as JSON."""


def _parse(f: _SourceFile) -> Any:
    """The JSON content of a source file; _Unreadable if it cannot be read or parsed."""
    try:
        return _loads(f.read())
    except (OSError, ValueError) as exc:
        raise _Unreadable(f.rel) from exc


# --- converting files ------------------------------------------------------------------------------


def _stored_values(raw: dict[str, Any]) -> dict[str, float]:
    """Scalar numeric results of an upstream file, keys normalised to the ``eval_`` prefix.

    human_eval files store unprefixed keys; where both spellings exist the prefixed one wins.
    """
    out: dict[str, float] = {}
    for k, v in raw.items():
        if isinstance(v, bool) or not isinstance(v, int | float):
            continue
        name = k if k.startswith("eval_") else f"eval_{k}"
        if name not in out or k.startswith("eval_"):
            out[name] = float(v)
    return out


def _record_from_file(
    raw: Any, *, label: str, intervention: str, train: str | None, eval_distribution: str, rel: str
) -> EvaluationRecord | str:
    """An EvaluationRecord for one upstream file, or the reason it is skipped.

    ``metrics`` are recomputed with genies' functions from ``eval_probabilities``; the upstream's
    own numbers are kept in ``info["stored"]``. Files without probabilities (ccs) keep empty
    ``metrics`` and ``n = 0``.
    """
    if not isinstance(raw, dict):
        return "not a JSON object"
    stored = _stored_values(raw)
    if "eval_accuracy" not in stored:
        return "no accuracy"
    probs = raw.get("eval_probabilities", raw.get("probabilities"))
    p: list[float] = []
    if probs is not None:
        try:
            arr = as_probabilities(probs)
        except (GeniesError, TypeError, ValueError):
            return "bad probabilities"
        p = arr.tolist()
    info: dict[str, Any] = {"stored": stored, "source_file": rel, "has_probabilities": bool(p)}
    if p:
        info["hard_predictions"] = bool(((arr == 0.0) | (arr == 1.0)).all())
    for k in ("model_dir", "model_name", "distribution_id", "distribution_dir", "timestamp"):
        if isinstance(raw.get(k), str):
            info[k] = raw[k]
    model_path = info.get("model_dir") or info.get("model_name")
    return EvaluationRecord(
        key=record_key(label, intervention, train, eval_distribution),
        origin="upstream",
        label=label,
        intervention=intervention,
        model={"name": label} | ({"path": model_path} if model_path else {}),
        train_distribution=train,
        eval_distribution=eval_distribution,
        p_correct=p,
        n=len(p),
        ties=tie_count(arr) if p else 0,
        metrics=summarize(arr) if p else {},
        metrics_version=METRICS_VERSION,
        info=info,
        versions={"genies": __version__},
        created=str(raw.get("timestamp", "")),
    )


def _ttc_from_file(raw: Any, *, label: str, target: str, rel: str) -> UpstreamTTC | None:
    if not isinstance(raw, dict):
        return None
    name, acc = raw.get("best_intervention"), raw.get("best_intervention_accuracy")
    if not isinstance(name, str) or isinstance(acc, bool) or not isinstance(acc, int | float):
        return None
    ref = raw.get("target_reference")
    return UpstreamTTC(
        label=label,
        target=target,
        target_reference=ref if isinstance(ref, str) else None,
        best_intervention=name,
        best_intervention_accuracy=float(acc),
        source_file=rel,
    )


def _import_files(
    files: Iterable[_SourceFile], staging: Path, summary: ImportSummary, progress: Callable[[], None]
) -> dict[str, Any]:
    """Convert every meaningful file into bundles under ``staging``; return the manifest."""
    entries: list[dict[str, Any]] = []
    ttc_sets: dict[str, list[dict[str, Any]]] = defaultdict(list)
    bundles: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    seen: set[str] = set()
    unreadable: list[str] = []
    current_iv: str | None = None

    def flush() -> None:
        for (label, iv), records in bundles.items():
            doc = {"kind": BUNDLE_KIND, "label": label, "intervention": iv, "records": records}
            _write_read_only(_bundle_path(staging, label, iv), doc)
        bundles.clear()

    for f in files:
        progress()
        top, sub = f.parts[0], f.parts[1:]
        if not sub[-1].endswith(".json"):
            summary.skipped["not a JSON file"] += 1
            continue
        if top == "target_tuned_capability":
            if len(sub) != 2:
                summary.skipped["stale or nested folder"] += 1
                continue
            label, target = sub[0], sub[1][:-5]
            try:
                raw_ttc = _parse(f)
            except _Unreadable:
                unreadable.append(f.rel)
                continue
            ttc = _ttc_from_file(raw_ttc, label=label, target=target, rel=f.rel)
            if ttc is None or not _SAFE_NAME_RE.match(label):
                summary.skipped["malformed target-tuned capability file"] += 1
                continue
            ttc_sets[label].append(ttc.model_dump())
            summary.ttc[label] += 1
            continue
        if len(sub) != 3:  # e.g. lora_fine_tuning/old_evals/..., lat_stim_1/lat/...
            summary.skipped["stale or nested folder"] += 1
            continue
        intervention, folder, fname = sub
        match = _FOLDER_RE.match(folder)
        if match is None or not _SAFE_NAME_RE.match(intervention):
            summary.skipped["unrecognised folder name"] += 1
            continue
        if intervention != current_iv:  # files come sorted: an intervention's files are contiguous
            flush()
            current_iv = intervention
        label, train = match["model"], match["train"]
        try:
            raw = _parse(f)
        except _Unreadable:
            unreadable.append(f.rel)
            continue
        rec = _record_from_file(
            raw, label=label, intervention=intervention, train=train, eval_distribution=fname[:-5], rel=f.rel
        )
        if isinstance(rec, str):
            summary.skipped[rec] += 1
            continue
        if rec.key in seen:  # two folders naming the same evaluation: keep the first (sorted order)
            summary.skipped["duplicate evaluation"] += 1
            continue
        seen.add(rec.key)
        bundles[(label, intervention)].append(rec.model_dump())
        summary.records[(label, intervention)] += 1
        entries.append(
            {
                "key": rec.key,
                "label": label,
                "intervention": intervention,
                "train_distribution": train,
                "eval_distribution": rec.eval_distribution,
                "n": rec.n,
            }
        )
    if unreadable:
        shown = ", ".join(unreadable[:3]) + (
            f" and {len(unreadable) - 3} more" if len(unreadable) > 3 else ""
        )
        raise DataError(
            f"{len(unreadable)} file{'' if len(unreadable) == 1 else 's'} of the results tree cannot be read "
            f"as JSON ({shown}); nothing was imported and the previous import is unchanged"
        )
    flush()
    for label, items in ttc_sets.items():
        _write_read_only(_ttc_path(staging, label), {"kind": TTC_KIND, "label": label, "entries": items})
    return {
        "kind": MANIFEST_KIND,
        "schema_version": MANIFEST_VERSION,
        "source": summary.source,
        "imported": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "genies_version": __version__,
        "records": entries,
        "ttc": [{"label": t["label"], "target": t["target"]} for items in ttc_sets.values() for t in items],
        "skipped": dict(summary.skipped),
    }


# --- the import ------------------------------------------------------------------------------------


def _remove_tree(path: Path) -> None:
    """rmtree that also copes with the read-only bit (where the OS enforces it for the owner)."""

    def _retry(func: Callable[..., Any], p: str, _exc: object) -> None:
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(p), stat.S_IRWXU)
        os.chmod(p, stat.S_IRWXU)
        func(p)

    if not path.exists():
        return
    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=_retry)
    else:  # pragma: no cover - python < 3.12
        shutil.rmtree(path, onerror=_retry)


def _swap_in(staging: Path, root: Path) -> None:
    """Replace ``root`` by ``staging`` with renames; the old tree is removed afterwards."""
    old = None
    if root.exists():
        old = root.with_name(f".upstream-old-{os.getpid()}-{time.monotonic_ns()}")
        os.replace(root, old)
    os.replace(staging, root)
    if old is not None:
        _remove_tree(old)


def _progress_ticker(total: int, stack: contextlib.ExitStack) -> Callable[[], None]:
    from rich.progress import Progress

    bar = stack.enter_context(Progress(transient=True))
    task = bar.add_task("importing paper results", total=total)
    return lambda: bar.advance(task)


def import_upstream(
    path: str | os.PathLike[str],
    store: str | os.PathLike[str] | None = None,
    *,
    progress: bool = False,
) -> ImportSummary:
    """Import the paper's raw results from ``path`` (results/ tree, repo root or .tar.gz) into the store.

    Idempotent: a re-import replaces the previous import as a whole (see the module docstring).
    """
    from filelock import FileLock, Timeout

    src = Path(path).expanduser()
    if not src.exists():
        raise DataError(f"no such file or directory: {src}")
    started = time.perf_counter()
    root = upstream_dir(store)
    base = root.parent
    try:
        (base / "locks").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot write to the result store {base}: {exc.strerror or exc}") from None
    summary = ImportSummary(store=root, source=str(src.resolve()))
    lock = FileLock(str(base / "locks" / "upstream-import.lock"))
    try:
        lock.acquire(timeout=1)
    except Timeout:
        raise StoreError(f"another import into {root} is running; try again when it has finished") from None
    try:
        with contextlib.ExitStack() as stack:
            if src.is_dir():
                files = _folder_files(src)
            elif tarfile.is_tarfile(src):
                files, unsafe = _archive_files(src)
                if unsafe:
                    summary.skipped["unsafe archive member"] += unsafe
            else:
                raise DataError(f"{src} is neither a folder nor a tar archive")
            staging = Path(tempfile.mkdtemp(prefix=".upstream-importing-", dir=base))
            os.chmod(staging, 0o755)
            stack.callback(_remove_tree, staging)
            tick = _progress_ticker(len(files), stack) if progress else (lambda: None)
            manifest = _import_files(files, staging, summary, tick)
            if not manifest["records"]:
                raise DataError(f"{src} holds no upstream evaluation files")
            _write_read_only(staging / MANIFEST_NAME, manifest)
            _swap_in(staging, root)
    except OSError as exc:
        raise StoreError(f"cannot import into {root}: {exc.strerror or exc}") from None
    finally:
        lock.release()
    summary.seconds = time.perf_counter() - started
    return summary


# --- reading the imported store --------------------------------------------------------------------


def _current(rec: EvaluationRecord) -> EvaluationRecord:
    """An imported record with its genies metrics under the current ``METRICS_VERSION`` (recomputed
    from its probabilities when it was imported under another; the paper's own numbers stay in
    ``info["stored"]``)."""
    if rec.metrics_version == METRICS_VERSION or not rec.p_correct:
        return rec
    return rec.model_copy(update={"metrics": summarize(rec.p_correct), "metrics_version": METRICS_VERSION})


class UpstreamStore:
    """Read access to an import: look-ups by (model, intervention, train, eval) and by target."""

    def __init__(self, store: str | os.PathLike[str] | None = None) -> None:
        self.root = upstream_dir(store)
        manifest_path = self.root / MANIFEST_NAME
        if not manifest_path.is_file():
            raise StoreError(
                f"no imported paper results in {self.root}",
                hint="run `genies results import-upstream PATH` first",
            )
        manifest = self._load(manifest_path, MANIFEST_KIND)
        self.manifest = manifest
        self._keys: dict[tuple[str, str, str | None, str], str] = {
            (e["label"], e["intervention"], e["train_distribution"], e["eval_distribution"]): e["key"]
            for e in manifest["records"]
        }
        self._ttc_index = {(e["label"], e["target"]) for e in manifest["ttc"]}
        self._bundles: dict[tuple[str, str], dict[str, EvaluationRecord]] = {}
        self._ttc: dict[str, dict[str, UpstreamTTC]] = {}

    @staticmethod
    def _load(path: Path, kind: str) -> dict[str, Any]:
        try:
            doc = _read_json(path)
        except (OSError, ValueError) as exc:
            raise StoreError(
                f"cannot read {path} ({type(exc).__name__}); re-import the paper results"
            ) from None
        if not isinstance(doc, dict) or doc.get("kind") != kind:
            raise StoreError(f"{path} is not a genies {kind} file; re-import the paper results")
        return doc

    def labels(self) -> list[str]:
        """Paper model names with at least one imported evaluation."""
        return sorted({k[0] for k in self._keys})

    def interventions(self, label: str | None = None) -> list[str]:
        """Intervention folders imported (for one model, or overall)."""
        return sorted({k[1] for k in self._keys if label is None or k[0] == label})

    def has(self, label: str, intervention: str, train: str | None, eval_distribution: str) -> bool:
        return (label, intervention, train, eval_distribution) in self._keys

    def bundle(self, label: str, intervention: str) -> dict[str, EvaluationRecord]:
        """All imported records of one model and intervention, by key (loaded once, then cached)."""
        if (label, intervention) not in self._bundles:
            path = _bundle_path(self.root, label, intervention)
            if not path.is_file():
                self._bundles[(label, intervention)] = {}
            else:
                doc = self._load(path, BUNDLE_KIND)
                try:
                    recs = [_current(EvaluationRecord.model_validate(r)) for r in doc["records"]]
                except (KeyError, TypeError, pydantic.ValidationError) as exc:
                    raise StoreError(f"{path} is malformed ({type(exc).__name__}); re-import") from None
                self._bundles[(label, intervention)] = {r.key: r for r in recs}
        return self._bundles[(label, intervention)]

    def get(
        self, label: str, intervention: str, train: str | None, eval_distribution: str
    ) -> EvaluationRecord | None:
        """The imported evaluation, or None if the paper has none."""
        key = self._keys.get((label, intervention, train, eval_distribution))
        if key is None:
            return None
        rec = self.bundle(label, intervention).get(key)
        if rec is None:
            raise StoreError(f"imported record {key} is missing from {self.root}; re-import")
        return rec

    def records(self) -> Iterator[EvaluationRecord]:
        """Every imported evaluation, one (model, intervention) bundle at a time (not cached)."""
        for label, iv in sorted({(k[0], k[1]) for k in self._keys}):
            doc = self._load(_bundle_path(self.root, label, iv), BUNDLE_KIND)
            for r in doc["records"]:
                yield _current(EvaluationRecord.model_validate(r))

    def ttc(self, label: str, target: str) -> UpstreamTTC | None:
        """The paper's target-tuned capability for ``target`` (keyed by target, not reference)."""
        if (label, target) not in self._ttc_index:
            return None
        if label not in self._ttc:
            path = _ttc_path(self.root, label)
            doc = self._load(path, TTC_KIND)
            try:
                self._ttc[label] = {e["target"]: UpstreamTTC.model_validate(e) for e in doc["entries"]}
            except (KeyError, TypeError, pydantic.ValidationError) as exc:
                raise StoreError(f"{path} is malformed ({type(exc).__name__}); re-import") from None
        return self._ttc[label].get(target)

    def ttc_labels(self) -> list[str]:
        """Models with imported target-tuned capabilities."""
        return sorted({label for label, _ in self._ttc_index})

    def covers(self, label: str, intervention: str, shifts: Sequence[Any]) -> bool:
        """True if the paper has a generalization evaluation for every shift (and TTCs for the model)."""
        return label in self.ttc_labels() and all(
            self.has(label, intervention, s.source, s.target) for s in shifts
        )


# --- rebuilding the published tables ---------------------------------------------------------------


def _stored(rec: EvaluationRecord | None, name: str) -> float | None:
    """The upstream's own stored value ``name`` (e.g. ``eval_accuracy``) of a record, if present."""
    if rec is None:
        return None
    value = rec.info.get("stored", {}).get(name)
    return None if value is None else float(value)


def paper_rows(
    model: str,
    intervention: str,
    suite: str = "genies",
    *,
    store: str | os.PathLike[str] | None = None,
    with_ci: bool = False,
    seed: int = 0,
    upstream: UpstreamStore | None = None,
) -> list[ShiftResult]:
    """The paper's numbers for ``model``/``intervention`` over ``suite`` (any suite name or file).

    Columns follow published-results.md: generalization and source-ID accuracy and the RMS
    calibration error are the upstream's stored values of ``<iv>/<model>-<source>/<target|source>``;
    the baseline is ``zero_shot/<model>-<source>/<target>``; the target-tuned capability is the
    imported best-of file keyed by the target; DE is computed here in float64. Missing evaluations
    give ``None``. ``extra_metrics`` holds genies' own metrics of the generalization evaluation
    (``generalization_<key>``). With ``with_ci``, bootstrap intervals (ties count as correct, as in
    the paper's accuracies; the TTC is a fixed number) are added where probabilities exist.
    """
    from genies.shifts import get_suite

    up = upstream or UpstreamStore(store)
    if model not in up.labels():
        raise UnknownNameError("paper model", model, up.labels())
    if intervention not in up.interventions(model):
        raise UnknownNameError(f"intervention for {model}", intervention, up.interventions(model))
    ci = CIPolicy("upstream", seed=seed) if with_ci else None
    rows = []
    for shift in get_suite(suite):
        gen = up.get(model, intervention, shift.source, shift.target)
        src = up.get(model, intervention, shift.source, shift.source)
        base = up.get(model, BASELINE_INTERVENTION, shift.source, shift.target)
        ttc = up.ttc(model, shift.target)
        rows.append(
            build_row(
                shift,
                shift.reference,
                generalization=Cell(_stored(gen, "eval_accuracy"), gen),
                baseline=Cell(_stored(base, "eval_accuracy"), base),
                target_tuned=Cell(ttc.best_intervention_accuracy if ttc else None),
                source=Cell(_stored(src, "eval_accuracy"), src),
                baseline_intervention=BASELINE_INTERVENTION,
                ttc_intervention=ttc.best_intervention if ttc else None,
                rms_calibration_error=_stored(gen, "eval_rms_calibration_error"),
                extra={f"generalization_{k}": v for k, v in (gen.metrics if gen else {}).items()},
                keys={
                    role: rec.key
                    for role, rec in (("generalization", gen), ("source_id", src), ("baseline", base))
                    if rec
                },
                ci=ci,
            )
        )
    return rows


#: The CSV writer is ``genies.rows``' (the one ``genies run`` uses); these names are kept for callers.
upstream_csv_text = csv_text
write_upstream_csv = write_csv


@dataclass
class ReproduceSummary:
    out: Path
    files: list[Path] = field(default_factory=list)
    rows: int = 0
    missing_cells: int = 0  # empty cells other than the RMS error of interventions without probabilities


def check_paper_suite(name: str) -> str:
    """Normalise a suite name for ``reproduce_paper``; only suites with a published table are allowed."""
    key = name.lower()
    if key not in PAPER_SUITES:
        raise UnknownNameError(
            "paper suite", name, PAPER_SUITES, hint="the paper published tables for genies and all-paper only"
        )
    return key


def _check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".genies-write-test-"):
            pass
    except OSError as exc:
        raise StoreError(f"cannot write to {out}: {exc.strerror or exc}") from None


def reproduce_paper(
    out: str | os.PathLike[str],
    suites: Sequence[str] = ("genies", "all-paper"),
    *,
    store: str | os.PathLike[str] | None = None,
) -> ReproduceSummary:
    """Rebuild every published table the imported results cover: ``out/<model>/<iv>/{GENIES,all}.csv``.

    A table is written for each (model, intervention) that has a generalization evaluation for every
    shift of the suite and imported target-tuned capabilities (exactly the paper's 50 tables).
    """
    from genies.shifts import get_suite

    keys = [check_paper_suite(s) for s in suites]
    up = UpstreamStore(store)
    out_dir = Path(out).expanduser()
    _check_writable(out_dir)
    summary = ReproduceSummary(out=out_dir)
    for suite in keys:
        shifts = get_suite(suite)
        for label in up.labels():
            for iv in up.interventions(label):
                if not up.covers(label, iv, shifts):
                    continue
                rows = paper_rows(label, iv, suite, upstream=up)
                try:
                    summary.files.append(write_upstream_csv(rows, out_dir / label / iv / PAPER_SUITES[suite]))
                except OSError as exc:
                    raise StoreError(f"cannot write to {out_dir}: {exc.strerror or exc}") from None
                summary.rows += len(rows)
                for r in rows:
                    values = [getattr(r, c) for c in UPSTREAM_CSV_COLUMNS if c != "RMS_calibration_error"]
                    summary.missing_cells += sum(v is None for v in values)
    if not summary.files:
        raise StoreError(f"the imported results cover no complete paper table for {', '.join(keys)}")
    return summary
