"""An on-disk cache of activations: computed once per (model, text), read back memory-mapped.

Layout (``root`` is ``<store>/activations``; trunk passes it)::

    <root>/<model_key>/<template_key>/<dtype>/
        meta.json                        {"format": 1, "shapes": {"resid": [L, D], ...}}
        shard-<time>-<random>.safetensors
            tensors   resid [n, L, D], heads [n, L, H, head_dim], final [n, D]   (one row per text)
            metadata  texts: JSON list of the n texts' sha256; sha256 of each tensor's bytes

* Key: the model key (a hash of the model identity incl. compute settings, from the caller), the
  template, the storage dtype, the sha256 of the rendered text, and the site.
* One forward pass per (model, text) fills **every** site (``resid``, ``heads``, ``final``), so a
  method that later reads another site of the same texts finds it cached.
* ``get`` takes ``engine`` as a *callable*: a fully cached read never loads the model.
* Texts are computed one prompt per forward (``extraction_units``), so what is stored does not depend
  on which request computed a text first, nor on what else it asked for.
* Writes are atomic (temporary file + fsync + rename); concurrent writers write distinct shards.
* A shard that is truncated, unreadable, of the wrong shape or whose bytes do not match their
  recorded sha256 is reported (a warning and ``stats["bad_shards"]``), renamed to ``*.bad`` (kept for
  inspection, never read again), and its texts are recomputed.
* ``dtype="bfloat16"`` halves the disk size; reads always return float32.
* ``reader`` serves one site of many texts block by block along its second axis (layers), through
  safetensors' memory-mapped slices, so probe fitting never holds a whole site of a split: each
  shard's bytes are verified against their sha256 by streaming the file (never loaded whole).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from genies.errors import ConfigError, ModelError, StoreError
from genies.hashing import sha256_bytes, sha256_text
from genies.io import atomic_path, atomic_write_json
from genies.models.forward import SITES
from genies.models.templates import Text, render_all, template_key

if TYPE_CHECKING:
    import torch

    from genies.models.engine import ForwardEngine

FORMAT = 1
_SAFE = re.compile(r"[A-Za-z0-9._-]{1,128}")


def text_sha256(text: str) -> str:
    return sha256_text(text)


def _tensor_sha256(t: torch.Tensor) -> str:
    import torch

    raw = t.contiguous().view(torch.uint8) if t.dtype != torch.uint8 else t.contiguous()
    return sha256_bytes(raw.numpy().tobytes())


class BadShard(Exception):
    """A shard that must not be used (the message says why)."""


class ActivationCache:
    """Activations of one model under one storage dtype (see the module docstring)."""

    def __init__(
        self, root: Path, model_key: str, *, dtype: Literal["float32", "bfloat16"] = "float32"
    ) -> None:
        if dtype not in ("float32", "bfloat16"):
            raise ConfigError(f"activation cache dtype must be 'float32' or 'bfloat16' (got {dtype!r})")
        if not isinstance(model_key, str) or not model_key:
            raise ConfigError("the activation cache needs a non-empty model key")
        self.root = Path(root)
        self.model_key = model_key if _SAFE.fullmatch(model_key) else text_sha256(model_key)[:32]
        self.dtype = dtype
        self.stats: dict[str, int] = {
            "texts_cached": 0,
            "texts_computed": 0,
            "forward_tokens": 0,
            "bad_shards": 0,
        }
        self._index: dict[str, dict[str, tuple[Path, int]]] = {}  # template key -> text sha -> (shard, row)
        self._seen: dict[str, set[Path]] = {}
        self._verified: set[tuple[Path, str]] = set()  # (shard, site) whose bytes matched their sha256

    # ------------------------------------------------------------ public API

    def folder(self, template: str | None = None) -> Path:
        return self.root / self.model_key / template_key(template) / self.dtype

    def missing(
        self, texts: Sequence[Text], sites: Sequence[str] = SITES, template: str | None = None
    ) -> list[int]:
        """Indices of ``texts`` whose activations are not cached (for planning and dry runs)."""
        _check_sites(sites)
        hashes = [text_sha256(t) for t in render_all(texts, template)]
        index = self._refresh(template)
        return [i for i, h in enumerate(hashes) if h not in index]

    def get(
        self,
        engine: Callable[[], ForwardEngine],
        texts: Sequence[Text],
        sites: Sequence[str] = ("resid", "heads"),
        template: str | None = None,
        *,
        overlength: Literal["error", "drop"] = "error",
        progress: Callable[[int], None] | None = None,
    ) -> dict[str, torch.Tensor]:
        """``{site: float32 [n, ...]}`` for ``texts``: cached rows are read, the others computed (all
        sites, one forward per distinct text), stored, then read. ``overlength`` as in
        ``ForwardEngine.extract`` (dropped texts are not stored)."""
        import torch

        wanted = _check_sites(sites)
        hashes = [text_sha256(t) for t in render_all(texts, template)]
        dropped: set[str] = set()
        computed: set[str] = set()
        for attempt in range(2):  # a shard found corrupt while reading is quarantined; then once more
            index = self._refresh(template)
            todo = {h for h in hashes if h not in index and h not in dropped}
            if todo:
                units = extraction_units(texts, hashes, todo)
                dropped |= self._compute(engine, units, todo, template, overlength, progress)
                computed |= todo - dropped
                index = self._refresh(template)
            try:
                out = self._read(self.folder(template), index, hashes, wanted, dropped)
                break
            except BadShard:
                if attempt:
                    raise StoreError(
                        f"activation cache {self.folder(template)}: shards keep going bad"
                    ) from None
        self.stats["texts_cached"] += sum(1 for h in hashes if h not in computed and h not in dropped)
        if overlength == "drop":
            out["kept"] = torch.tensor([h not in dropped for h in hashes], dtype=torch.bool)
        return out

    def reader(
        self,
        engine: Callable[[], ForwardEngine],
        texts: Sequence[Text],
        site: str,
        template: str | None = None,
    ) -> SiteReader:
        """A block reader of ``site`` for ``texts`` (computing the texts not cached first, as ``get``).

        Every shard it reads is verified first (sha256 of the site's bytes, streamed from the file);
        a bad one is quarantined and its texts recomputed, as in ``get``."""
        (site,) = _check_sites((site,))
        hashes = [text_sha256(t) for t in render_all(texts, template)]
        for attempt in range(2):
            index = self._refresh(template)
            todo = [i for i, h in enumerate(hashes) if h not in index]
            if todo:
                self.get(engine, [texts[i] for i in todo], (site,), template)
                index = self._refresh(template)
            by_shard: dict[Path, list[tuple[int, int]]] = {}
            for i, h in enumerate(hashes):
                path, row = index[h]
                by_shard.setdefault(path, []).append((i, row))
            try:
                for path in by_shard:
                    self._verify(path, site)
            except BadShard:
                if attempt:
                    raise StoreError(
                        f"activation cache {self.folder(template)}: shards keep going bad"
                    ) from None
                continue
            self.stats["texts_cached"] += len(hashes) - len(todo)
            shape = (_read_meta(self.folder(template) / "meta.json") or {}).get(site)
            return SiteReader(site, (len(hashes), *(shape or [])), by_shard)
        raise AssertionError("unreachable")

    def _verify(self, path: Path, site: str) -> None:
        """Check ``site``'s bytes in ``path`` against the shard's recorded sha256 (streamed, once)."""
        import struct

        from genies.hashing import sha256_range

        if (path, site) in self._verified:
            return
        with self._guarded(path), open(path, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(n))
            start, end = header[site]["data_offsets"]
            want = (header.get("__metadata__") or {}).get(f"sha256:{site}")
            got = sha256_range(fh, 8 + n + start, end - start)
            if got is None:
                raise BadShard("truncated")
        if got != want:
            self._quarantine(path, f"corrupt: the bytes of {site!r} do not match their sha256")
            raise BadShard("corrupt")
        self._verified.add((path, site))

    # ------------------------------------------------------------ computing and writing

    def _compute(
        self, engine, units: list[list[tuple[str, Text]]], todo: set[str], template, overlength, progress
    ) -> set[str]:
        """Run the engine once per extraction unit; write the texts of ``todo`` as one shard; return
        the dropped hashes. A unit's siblings that were cached already are recomputed with it (so the
        unit's forward is the same as in any other request) but not written again."""
        import torch

        from genies.models.lengths import encode_texts

        eng = engine()
        limit = eng.lm.max_length
        flat = [item for unit in units for item in unit]
        lengths = encode_texts(eng.lm.tokenizer, [t for _, t in flat], template)
        too_long = {h for (h, _), ids in zip(flat, lengths, strict=True) if len(ids) > limit}
        if too_long and overlength == "error":
            n = max(len(ids) for ids in lengths)
            raise ModelError(
                f"a text has {n} tokens, more than the model's {limit}",
                hint="drop over-length texts first (genies.models.lengths.text_lengths)",
            )
        before = eng.counters["real_tokens"]
        written: list[str] = []
        parts: dict[str, list[torch.Tensor]] = {s: [] for s in SITES}
        for unit in units:
            keep = [(h, t) for h, t in unit if h not in too_long]
            if not keep:
                continue
            acts = eng.extract([t for _, t in keep], SITES, template, progress=progress)
            rows = [k for k, (h, _) in enumerate(keep) if h in todo]
            written += [keep[k][0] for k in rows]
            for s in SITES:
                parts[s].append(acts[s][rows])
        self.stats["forward_tokens"] += eng.counters["real_tokens"] - before
        self.stats["texts_computed"] += len(written)
        if written:
            self._write(template, written, {s: torch.cat(parts[s]) for s in SITES})
        return too_long & todo

    def _write(self, template: str | None, hashes: list[str], acts: dict[str, torch.Tensor]) -> None:
        import torch
        from safetensors.torch import save_file

        folder = self.folder(template)
        folder.mkdir(parents=True, exist_ok=True)
        shapes = {s: list(acts[s].shape[1:]) for s in SITES}
        meta_path = folder / "meta.json"
        known = _read_meta(meta_path)
        if known is None:
            atomic_write_json(meta_path, {"format": FORMAT, "shapes": shapes})
        elif known != shapes:
            raise StoreError(
                f"activation cache {folder} holds shapes {known}, but the model gives {shapes}: "
                "its model key does not identify one model"
            )
        store = torch.bfloat16 if self.dtype == "bfloat16" else torch.float32
        tensors = {s: acts[s].to(store).contiguous() for s in SITES}
        metadata = {"format": str(FORMAT), "texts": json.dumps(hashes)}
        metadata.update({f"sha256:{s}": _tensor_sha256(t) for s, t in tensors.items()})
        name = f"shard-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:12]}.safetensors"
        with atomic_path(folder / name) as tmp:
            save_file(tensors, str(tmp), metadata=metadata)

    # ------------------------------------------------------------ index and reading

    def _refresh(self, template: str | None) -> dict[str, tuple[Path, int]]:
        """Index shards not seen yet (headers only); bad ones are quarantined."""
        from safetensors import safe_open

        tkey = template_key(template)
        index = self._index.setdefault(tkey, {})
        seen = self._seen.setdefault(tkey, set())
        folder = self.folder(template)
        if not folder.is_dir():
            return index
        shapes = _read_meta(folder / "meta.json")
        for path in sorted(folder.glob("shard-*.safetensors")):
            if path in seen:
                continue
            seen.add(path)
            try:
                with safe_open(str(path), framework="pt") as f:
                    texts = _shard_texts(f, shapes)
            except BadShard as exc:
                self._quarantine(path, str(exc))
                continue
            except Exception as exc:  # noqa: BLE001 - safetensors reports truncation in several ways
                self._quarantine(path, f"unreadable ({_first_line(exc)})")
                continue
            for row, h in enumerate(texts):
                index.setdefault(h, (path, row))
        return index

    def _read(
        self,
        folder: Path,
        index: dict[str, tuple[Path, int]],
        hashes: list[str],
        wanted: Sequence[str],
        dropped: set[str],
    ) -> dict[str, torch.Tensor]:
        """Gather rows shard by shard (each needed tensor read once through safetensors' mmap)."""
        import torch
        from safetensors import safe_open

        by_shard: dict[Path, list[tuple[int, int]]] = {}
        for i, h in enumerate(hashes):
            if h in dropped:
                continue
            if h not in index:
                raise StoreError(f"activation cache {folder}: text {i} was computed but cannot be read back")
            path, row = index[h]
            by_shard.setdefault(path, []).append((i, row))
        out: dict[str, torch.Tensor] = {}
        for path, places in by_shard.items():
            dest = torch.tensor([i for i, _ in places])
            rows = torch.tensor([r for _, r in places])
            with self._guarded(path), safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                for s in wanted:
                    t = f.get_tensor(s)
                    if meta.get(f"sha256:{s}") != _tensor_sha256(t):
                        raise BadShard(f"corrupt: the bytes of {s!r} do not match their sha256")
                    if s not in out:
                        out[s] = torch.full((len(hashes), *t.shape[1:]), float("nan"))
                    out[s][dest] = t.index_select(0, rows).float()
        if not out:  # nothing to read (all dropped): empty rows of the known shapes
            shapes = _read_meta(folder / "meta.json") or {}
            for s in wanted:
                out[s] = torch.full((len(hashes), *shapes.get(s, [])), float("nan"))
        return out

    @contextlib.contextmanager
    def _guarded(self, path: Path) -> Iterator[None]:
        """Reading ``path``: a bad or unreadable shard is quarantined and raised as ``BadShard``."""
        try:
            yield
        except BadShard as exc:
            self._quarantine(path, str(exc))
            raise
        except Exception as exc:  # noqa: BLE001 - truncated since it was indexed, I/O errors
            self._quarantine(path, f"unreadable ({_first_line(exc)})")
            raise BadShard(str(exc)) from exc

    def _quarantine(self, path: Path, why: str) -> None:
        self.stats["bad_shards"] += 1
        warnings.warn(f"activation cache: shard {path} is {why}; its texts are recomputed", stacklevel=3)
        for index in self._index.values():
            for h in [h for h, (p, _) in index.items() if p == path]:
                del index[h]
        with contextlib.suppress(OSError):  # another process may have moved it already
            os.replace(path, path.with_suffix(path.suffix + ".bad"))


class SiteReader:
    """One site of ``n`` texts, read block by block: ``read(slice(l0, l1))`` is the float32 numpy
    array ``[n, l1 − l0, ...]`` of layers ``l0 … l1−1`` (rows in the texts' order). Each call opens
    the shards memory-mapped, copies only the block's bytes, and closes them again, so what stays
    resident is the block (verified shards only: ``ActivationCache.reader``)."""

    def __init__(
        self, site: str, shape: tuple[int, ...], by_shard: dict[Path, list[tuple[int, int]]]
    ) -> None:
        self.site = site
        self.shape = tuple(int(s) for s in shape)
        self._by_shard = by_shard

    def read(self, block: slice = slice(None)) -> Any:
        import numpy as np
        import torch
        from safetensors import safe_open

        width = len(range(*block.indices(self.shape[1])))
        out = np.empty((self.shape[0], width, *self.shape[2:]), dtype=np.float32)
        for path, places in self._by_shard.items():
            dest = np.array([i for i, _ in places])
            rows = torch.tensor([r for _, r in places])
            try:
                with safe_open(str(path), framework="pt") as f:
                    part = f.get_slice(self.site)[:, block]
            except Exception as exc:  # noqa: BLE001 - a shard removed or truncated after verification
                raise StoreError(f"activation cache: cannot read {path} ({_first_line(exc)})") from None
            out[dest] = part.index_select(0, rows).float().numpy()
        return out


def extraction_units(
    texts: Sequence[Text], hashes: Sequence[str], todo: set[str]
) -> list[list[tuple[str, Text]]]:
    """The forward passes that compute ``todo``: one per prompt, holding every distinct text of that
    prompt in the request, sorted by hash (a plain string is a unit of its own).

    Why: the engine packs a forward's texts into token trees, so a text's activations depend, at float
    rounding (~1e-4 in SmolLM2's residual stream), on the other texts of its forward pass. Packing
    only the texts of one prompt, in a fixed order, makes what the cache stores the same whichever
    node asks first and whatever else that node asks for (as long as the requests that hold a prompt
    hold the same responses of it, as the planner's pair selections do); sharing the prompt inside a
    unit keeps most of the speed of packing. Units holding no text of ``todo`` are skipped.
    """
    by_prompt: dict[object, dict[str, Text]] = {}
    for h, t in zip(hashes, texts, strict=True):
        key = ("prompt", t[0]) if isinstance(t, tuple | list) else ("text", h)
        by_prompt.setdefault(key, {}).setdefault(h, t)
    units = []
    for members in by_prompt.values():
        if todo.intersection(members):
            units.append(sorted(members.items()))
    return units


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:160] if text else type(exc).__name__


def _check_sites(sites: Sequence[str]) -> tuple[str, ...]:
    if isinstance(sites, str):
        sites = (sites,)
    wanted = tuple(dict.fromkeys(sites))
    bad = [s for s in wanted if s not in SITES]
    if bad or not wanted:
        raise ConfigError(
            f"unknown activation site {bad[0] if bad else '(none)'!r}; choose from {', '.join(SITES)}"
        )
    return wanted


def _read_meta(path: Path) -> dict[str, list[int]] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {k: list(v) for k, v in data["shapes"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _shard_texts(f: Any, shapes: dict[str, list[int]] | None) -> list[str]:
    """Validate a shard's header: its text list, and every site [n, *shape] as the folder's meta says."""
    meta = f.metadata() or {}
    try:
        texts = json.loads(meta["texts"])
    except (KeyError, ValueError) as exc:
        raise BadShard("missing its text list") from exc
    if not isinstance(texts, list) or not all(isinstance(h, str) for h in texts):
        raise BadShard("holding a malformed text list")
    keys = set(f.keys())
    for s in SITES:
        if s not in keys:
            raise BadShard(f"missing the site {s!r}")
        shape = list(f.get_slice(s).get_shape())
        if shape[:1] != [len(texts)] or (shapes is not None and shape[1:] != shapes.get(s)):
            raise BadShard(
                f"mis-shaped: {s} is {shape}, expected [{len(texts)}, *{shapes.get(s) if shapes else '?'}]"
            )
    return texts
