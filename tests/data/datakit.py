"""Builders for small, throw-away GENIES datasets and archives used by the data tests."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any


def records(n: int = 3, k: int = 2, tag: str = "x", best: int = 0) -> list[dict[str, Any]]:
    """``n`` valid examples with ``k`` responses each, the ``best``-th preferred."""
    return [
        {
            "prompt": f"### Instruction:\n{tag} question {i}\n\n### Response:\n",
            "responses": {f"{tag} answer {i}.{j}": float(j == best) for j in range(k)},
            "instruction": f"{tag} question {i}",
        }
        for i in range(n)
    ]


def dist_files(dist_id: str, train: Any = None, test: Any = None) -> dict[str, bytes]:
    """Archive members of one distribution (valid defaults; pass raw bytes to break a file)."""
    train = records(4, 2, dist_id) if train is None else train
    test = records(3, 3, dist_id + "-test") if test is None else test
    return {
        f"distributions/{dist_id}/train.json": train
        if isinstance(train, bytes)
        else json.dumps(train).encode(),
        f"distributions/{dist_id}/test.json": test if isinstance(test, bytes) else json.dumps(test).encode(),
        f"distributions/{dist_id}/metadata.json": json.dumps({"id": dist_id}).encode(),
    }


def good_files() -> dict[str, bytes]:
    files = {**dist_files("alpha"), **dist_files("beta")}
    files["distributions/beta/extra.json"] = b"[]"  # junk the importer must skip
    return files


def make_tar(
    path: Path, files: dict[str, bytes], *, gz: bool = False, extra: list[tarfile.TarInfo] = ()
) -> Path:
    """Write a tar(.gz) with ``files`` (name → content) and any hand-made ``extra`` members."""
    with tarfile.open(path, "w:gz" if gz else "w") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1_700_000_000
            tf.addfile(info, io.BytesIO(data))
        for info in extra:
            tf.addfile(info, io.BytesIO(b"x" * info.size) if info.isfile() else None)
    return path


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def tree_hash(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (relative posix path → digest)."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }
