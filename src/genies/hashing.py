"""Every sha256 genies computes: canonical-JSON content hashes, file hashes and folder hashes.

* ``content_hash(obj)`` — sha256 of the canonical JSON of ``obj``: the key of every store entry;
* ``sha256_file(path)`` — streamed hash of one file;
* ``cached_sha256(path)`` — the same, remembered by ``(path, size, mtime, ctime, inode)`` under
  ``cache_dir()/hashes`` so a large file (a GGUF) is read once;
* ``folder_sha256(folder, files, sidecar)`` — one hash over named files (model weights), remembered in
  a sidecar JSON beside the folder and re-checked file by file when a file's stat changes.

Stat signatures include ``st_ctime_ns``: unlike the modification time, a program cannot set it back,
so an edited file is always rehashed even if its mtime was restored.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO

_CHUNK = 1 << 22


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace: the basis of every content hash."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=True)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sha256_bytes(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def content_hash(obj: Any, length: int = 16) -> str:
    """Short sha256 of the canonical JSON of ``obj``."""
    return sha256_text(canonical_json(obj))[:length]


def sha256_file(path: str | os.PathLike[str]) -> str:
    """sha256 of a file's bytes, read in 4 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def sha256_range(fh: BinaryIO, start: int, length: int) -> str | None:
    """sha256 of ``length`` bytes of an open file from offset ``start``, read in 4 MiB blocks;
    None when the file ends first (truncated)."""
    h = hashlib.sha256()
    fh.seek(start)
    left = length
    while left > 0:
        block = fh.read(min(left, _CHUNK))
        if not block:
            return None
        h.update(block)
        left -= len(block)
    return h.hexdigest()


def stat_signature(path: Path) -> list[int]:
    """What says a file is unchanged without reading it: size, mtime, ctime and inode."""
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_json_locked(path: Path, update: dict[str, Any]) -> None:
    """Merge ``update`` into the JSON object at ``path`` under a file lock (best effort: a read-only
    place only means the hash is computed again next time)."""
    from filelock import FileLock

    from genies.io import atomic_write_json

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path) + ".lock"):
            data = _read_json(path)
            data.update(update)
            atomic_write_json(path, data, indent=0)
    except OSError:
        pass


def cached_sha256(path: str | os.PathLike[str]) -> str:
    """``sha256_file`` remembered by the file's stat signature in ``cache_dir()/hashes/files.json``."""
    from genies.paths import cache_dir

    p = Path(path).resolve()
    key = f"{p}|{'|'.join(map(str, stat_signature(p)))}"
    cache_file = cache_dir() / "hashes" / "files.json"
    hit = _read_json(cache_file).get(key)
    if isinstance(hit, str):
        return hit
    digest = sha256_file(p)
    _write_json_locked(cache_file, {key: digest})
    return digest


def combine(named_digests: Iterable[tuple[str, str]]) -> str:
    """One sha256 over ``(name, digest)`` lines (names sorted)."""
    lines = "".join(f"{name} {digest}\n" for name, digest in sorted(named_digests))
    return sha256_text(lines)


def folder_sha256(folder: Path, files: Iterable[Path], sidecar: Path | None) -> str:
    """One hash over ``files`` (names relative to ``folder`` and contents).

    The per-file hashes and stat signatures are kept in ``sidecar`` (JSON) when given; a file whose
    signature is unchanged is not read again, any other is rehashed and the sidecar rewritten. Without
    a writable sidecar the stat-keyed file cache (``cached_sha256``) is used.
    """
    files = sorted(files)
    known = _read_json(sidecar).get("files", {}) if sidecar is not None else {}
    entries: dict[str, dict[str, Any]] = {}
    for f in files:
        rel = f.relative_to(folder).as_posix()
        sig = stat_signature(f)
        old = known.get(rel) if isinstance(known, dict) else None
        if isinstance(old, dict) and old.get("stat") == sig and isinstance(old.get("sha256"), str):
            entries[rel] = old
        else:
            entries[rel] = {"stat": sig, "sha256": sha256_file(f) if sidecar else cached_sha256(f)}
    digest = combine((rel, e["sha256"]) for rel, e in entries.items())
    if sidecar is not None and (entries != known or _read_json(sidecar).get("sha256") != digest):
        _write_json_locked(sidecar, {"folder": str(folder), "files": entries, "sha256": digest})
    return digest
