"""`genies show-state`: what a fitted state in the result store holds.

A run stores each fitted intervention state under ``<store>/states/<key>/`` (``genies.pipeline.store``).
``genies show-state --list`` lists them (key, intervention, training data, model, seed); ``genies
show-state KEY`` (a full key or a unique prefix; an evaluation key also works, meaning the state it
was scored with) prints the intervention, its config and training data, the state's files and
tensors, and what the method chose: for the representation methods the chosen heads / layers with
their probe accuracies, the calibrator, the per-unit probe accuracies (best first, ``--top``) and the
direction shapes; for trained adapters the training log's last entries. ``--json`` prints the same as
one JSON document. Nothing in the store is changed; a damaged state is one line and exit 1.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from genies.cli._console import make_console
from genies.errors import ConfigError, StoreError

if TYPE_CHECKING:
    from rich.console import Console

    from genies.pipeline.store import ResultStore

_HELP = """Show what a fitted state in the result store holds (or list the stored states).

KEY is a state key or a unique prefix of one (an evaluation key also works: the state it was scored
with). Find keys with 'genies show-state --list' (filter with --intervention), or in a run's
<suite>.json: each row's "evaluation_keys".
"""

#: Meta entries shown in their own sections (not repeated in the generic meta table).
_SECTIONED = {"intervention", "selected", "calibrator", "layer_accuracy", "train_log", "pool"}


def register(app: typer.Typer) -> None:
    app.command("show-state", help=_HELP)(show_state_command)


def show_state_command(
    key: str | None = typer.Argument(
        None, help="State key or unique prefix (or an evaluation key).", show_default=False
    ),
    store: Path | None = typer.Option(
        None, "--store", help="Result store \\[default: $GENIES_STORE_DIR or ~/.cache/genies/store]."
    ),
    list_: bool = typer.Option(False, "--list", "-l", help="List the stored states (KEY filters by prefix)."),
    intervention: str | None = typer.Option(
        None, "--intervention", "-i", help="With --list: only states of this intervention."
    ),
    top: int = typer.Option(10, "--top", min=1, help="Per-unit probe accuracies shown (best first)."),
    log_tail: int = typer.Option(5, "--log-tail", min=0, help="Last training-log entries shown."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document instead of tables."),
) -> None:
    from genies.paths import store_dir
    from genies.pipeline.store import ResultStore

    rs = ResultStore(store_dir(store))
    if not rs.root.is_dir():
        raise StoreError(f"result store {rs.root} does not exist (see --store)")
    console = make_console(piped_width=160)
    if list_:
        rows = list_states(rs, key or "", intervention)
        if as_json:
            typer.echo(json.dumps(rows, indent=2))
        else:
            _print_list(console, rs, rows)
        return
    if key is None:
        raise ConfigError("give a state KEY (or --list to see the stored states)")
    full, via = resolve_state_key(rs, key)
    summary = state_summary(rs, full, top=top, log_tail=log_tail)
    if via is not None:
        summary["via_evaluation"] = via
    if as_json:
        typer.echo(json.dumps(summary, indent=2, default=str))
    else:
        _print_summary(console, summary)


# ---------------------------------------------------------------- finding states


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def list_states(rs: ResultStore, prefix: str = "", intervention: str | None = None) -> list[dict[str, Any]]:
    """One row per state directory whose key starts with ``prefix`` (damaged ones marked)."""
    from genies.pipeline.store import INPUTS_FILE

    rows = []
    for k in rs.state_keys():
        if not k.startswith(prefix):
            continue
        inputs = _read_json(rs.state_path(k) / INPUTS_FILE) or {}
        if intervention is not None and inputs.get("intervention") != intervention:
            continue
        sentinel = rs.state_sentinel(k) or {}
        train = inputs.get("train") or {}
        model = inputs.get("model") or {}
        rows.append(
            {
                "key": k,
                "intervention": inputs.get("intervention"),
                "train": train.get("distribution"),
                "limit": train.get("limit"),
                "model": model.get("name"),
                "seed": inputs.get("seed"),
                "activation_dtype": inputs.get("activation_dtype", "float32") if train else None,
                "created": sentinel.get("created"),
                "bytes": _dir_bytes(rs.state_path(k)),
                "complete": bool(sentinel),
            }
        )
    return rows


def resolve_state_key(rs: ResultStore, key: str) -> tuple[str, str | None]:
    """``(state key, evaluation key or None)`` for a state key / unique prefix, or an evaluation key."""
    key = key.strip()
    if not key:
        raise ConfigError("the state key is empty")
    matches = [k for k in rs.state_keys() if k.startswith(key)]
    if len(matches) == 1:
        return matches[0], None
    if len(matches) > 1:
        shown = ", ".join(matches[:3]) + (", …" if len(matches) > 3 else "")
        raise ConfigError(f"state key prefix {key!r} is ambiguous: {len(matches)} states match ({shown})")
    evals = _evaluation_matches(rs, key)
    if len(evals) == 1:
        from genies.pipeline.graph import node_key

        doc = _read_json(evals[0]) or {}
        state_inputs = (doc.get("inputs") or {}).get("state")
        if isinstance(state_inputs, dict):
            return node_key(state_inputs), evals[0].stem
    raise StoreError(
        f"no state with key {key!r} in {rs.root} (list them with 'genies show-state --list --store {rs.root}')"
    )


def _evaluation_matches(rs: ResultStore, key: str) -> list[Path]:
    if len(key) < 2 or not all(c.isalnum() for c in key):
        return []
    folder = rs.evaluations_dir / key[:2]
    return sorted(folder.glob(f"{key}*.json")) if folder.is_dir() else []


def _dir_bytes(d: Path) -> int:
    try:
        return sum(p.stat().st_size for p in d.iterdir() if p.is_file())
    except OSError:
        return 0


# ---------------------------------------------------------------- what a state holds


def state_summary(rs: ResultStore, key: str, *, top: int = 10, log_tail: int = 5) -> dict[str, Any]:
    """Everything ``show-state`` prints about ``key``'s state, as JSON-able data.

    Raises StoreError (one line) when the state is missing or fails the store's checks."""
    from genies.api.intervention import InterventionState
    from genies.pipeline.store import INPUTS_FILE

    d = rs.state_path(key)
    if not d.is_dir():
        raise StoreError(f"state {key} is not in {rs.root}")
    problem = rs.state_problem(key)
    if problem is not None:
        raise StoreError(f"state {key} is damaged ({problem}); the next run that needs it refits it")
    state = InterventionState.load(d)  # StoreError (one line) on unreadable bytes
    inputs = _read_json(d / INPUTS_FILE) or {}
    sentinel = rs.state_sentinel(key) or {}
    meta = state.meta
    out: dict[str, Any] = {
        "key": key,
        "store": str(rs.root),
        "intervention": inputs.get("intervention"),
        "label": sentinel.get("label"),
        "generation": sentinel.get("generation"),
        "created": sentinel.get("created"),
        "fit_s": sentinel.get("fit_s"),
        "train": inputs.get("train"),
        "model": inputs.get("model"),
        "seed": inputs.get("seed"),
        "activation_dtype": inputs.get("activation_dtype", "float32"),
        "config": inputs.get("config"),
        "files": [{"name": p.name, "bytes": p.stat().st_size} for p in sorted(d.iterdir()) if p.is_file()],
        "tensors": [
            {"name": n, "shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch.")}
            for n, t in sorted(state.tensors.items())
        ],
        "meta": {k: _short(v) for k, v in meta.items() if k not in _SECTIONED},
    }
    if "selected" in meta:
        out["selected"] = meta["selected"]
    if "calibrator" in meta:
        out["calibrator"] = meta["calibrator"]
    units = unit_accuracies(state)
    if units is not None:
        what, acc = units
        order = sorted(range(len(acc)), key=lambda i: (-acc[i][1], i))
        vals = [a for _, a in acc]
        out["unit_accuracy"] = {
            "units": what,
            "n": len(acc),
            "mean": sum(vals) / len(vals),
            "max": max(vals),
            "min": min(vals),
            "top": [{"unit": acc[i][0], "accuracy": acc[i][1]} for i in order[:top]],
        }
    log = _train_log(d, meta)
    if log:
        out["train_log_entries"] = len(log)
        out["train_log_tail"] = log[-log_tail:] if log_tail else []
    if "pool" in meta:
        out["meta"]["pool"] = f"{len(meta['pool'])} examples"
    return out


def unit_accuracies(state: Any) -> tuple[str, list[tuple[str, float]]] | None:
    """``(what, [(unit name, probe accuracy)])`` of a representation state, in unit order, or None.

    Mass-mean states (mms, lat_stim_*, cra) hold ``probe_accuracy`` [U] with ``unit_shape`` (layers ×
    heads, or layers); lat_pca / linear_probe hold ``layer_accuracy`` (one per residual layer)."""
    meta = state.meta
    if "probe_accuracy" in state.tensors:
        acc = [float(a) for a in state.tensors["probe_accuracy"].reshape(-1).tolist()]
        shape = list(meta.get("unit_shape") or [len(acc)])
        if len(shape) == 2 and shape[0] * shape[1] == len(acc):
            h = shape[1]
            return "attention heads", [(f"layer {i // h} head {i % h}", a) for i, a in enumerate(acc)]
        return "layers", [(f"layer {i}", a) for i, a in enumerate(acc)]
    if isinstance(meta.get("layer_accuracy"), list) and meta["layer_accuracy"]:
        return "layers", [(f"layer {i}", float(a)) for i, a in enumerate(meta["layer_accuracy"])]
    return None


def _train_log(d: Path, meta: dict[str, Any]) -> list[dict[str, Any]]:
    log = meta.get("train_log")
    if isinstance(log, list):
        return [e for e in log if isinstance(e, dict)]
    path = d / "train_log.jsonl"
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            out.append(entry)
    return out


def _short(v: Any) -> Any:
    """A meta value as shown: scalars and small containers as they are, big ones summarised."""
    if isinstance(v, (list, tuple)) and len(v) > 8:
        return f"<{len(v)} items>"
    if isinstance(v, dict) and len(json.dumps(v, default=str)) > 200:
        return f"<{len(v)} entries>"
    return v


# ---------------------------------------------------------------- printing


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def _print_list(console: Console, rs: ResultStore, rows: list[dict[str, Any]]) -> None:
    from rich.table import Table

    if not rows:
        console.print(f"no states in {rs.root}", markup=False)
        return
    console.print(f"states in {rs.root}", markup=False)
    table = Table()
    for col, justify in (
        ("key", "left"),
        ("intervention", "left"),
        ("trained on", "left"),
        ("limit", "right"),
        ("model", "left"),
        ("seed", "right"),
        ("activations", "left"),
        ("size", "right"),
        ("created", "left"),
    ):
        table.add_column(col, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for r in rows:
        table.add_row(
            r["key"] + ("" if r["complete"] else " (incomplete)"),
            str(r["intervention"]),
            r["train"] or "—",
            "—" if r["limit"] is None else str(r["limit"]),
            Path(str(r["model"])).name if r["model"] else "—",
            str(r["seed"]),
            r["activation_dtype"] or "—",
            _size(r["bytes"]),
            str(r["created"] or "—"),
        )
    console.print(table)
    console.print("show one: genies show-state KEY (a unique prefix is enough)", markup=False)


def _kv_table(items: list[tuple[str, str]]) -> Any:
    from rich.table import Table

    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for k, v in items:
        table.add_row(k, v)
    return table


def _print_summary(console: Console, s: dict[str, Any]) -> None:
    from rich.table import Table

    train = s["train"] or {}
    model = s["model"] or {}
    trained = (
        f"{train['distribution']} ({train['split']}, limit {train['limit']}, "
        f"{len(train.get('drop') or [])} over-length dropped)"
        if train
        else "no data (the base model)"
    )
    compute = ", ".join(str(model[k]) for k in ("device_type", "dtype") if k in model)
    head = [
        ("state", s["key"]),
        ("intervention", str(s["intervention"])),
        ("trained on", trained),
        ("model", f"{model.get('name')} ({compute})" if model else "—"),
        ("seed", str(s["seed"])),
        ("config", json.dumps(s["config"], sort_keys=True)),
        ("fitted", f"{s['created']}, generation {s['generation']}, {s['fit_s']} s"),
    ]
    if train:
        head.insert(4, ("activations", str(s["activation_dtype"])))
    if s.get("via_evaluation"):
        head.insert(1, ("evaluation", f"{s['via_evaluation']} (scored with this state)"))
    console.print(_kv_table(head))

    console.print("files", markup=False)
    files = Table()
    files.add_column("file")
    files.add_column("size", justify="right")
    for f in s["files"]:
        files.add_row(f["name"], _size(f["bytes"]))
    console.print(files)
    if s["tensors"]:
        console.print("tensors", markup=False)
        tensors = Table()
        tensors.add_column("tensor")
        tensors.add_column("shape")
        tensors.add_column("dtype")
        for t in s["tensors"]:
            tensors.add_row(t["name"], " × ".join(map(str, t["shape"])) or "scalar", t["dtype"])
        console.print(tensors)
    if "selected" in s:
        _print_selected(console, s)
    if "calibrator" in s:
        cal = s["calibrator"]
        how = "p = sigmoid(coef·x + intercept)" if cal.get("fitted") else "not fitted: p = x"
        console.print(
            f"calibrator: coef {cal.get('coef'):.6g}, intercept {cal.get('intercept'):.6g} ({how})",
            markup=False,
        )
    if "unit_accuracy" in s:
        _print_units(console, s["unit_accuracy"])
    scalars = [(k, json.dumps(v, default=str)) for k, v in s["meta"].items()]
    if scalars:
        console.print("meta", markup=False)
        console.print(_kv_table(scalars))
    if s.get("train_log_tail"):
        _print_log(console, s["train_log_tail"], s["train_log_entries"])


def _unit(u: Any) -> str:
    if isinstance(u, list) and len(u) == 2:
        return f"layer {u[0]} head {u[1]}"
    return f"layer {u}"


def _print_selected(console: Console, s: dict[str, Any]) -> None:
    from rich.table import Table

    sel = s["selected"]
    site = s["meta"].get("site", "")
    console.print(
        f"chosen units ({len(sel)}, site {site}, {s['meta'].get('template_name', '')})", markup=False
    )
    table = Table()
    table.add_column("rank", justify="right")
    table.add_column("unit")
    table.add_column("probe accuracy", justify="right")
    for i, entry in enumerate(sel, 1):
        table.add_row(str(i), _unit(entry.get("unit")), f"{float(entry.get('probe_accuracy', 0)):.3f}")
    console.print(table)


def _print_units(console: Console, ua: dict[str, Any]) -> None:
    from rich.table import Table

    console.print(
        f"probe accuracy per unit: top {len(ua['top'])} of {ua['n']} {ua['units']} "
        f"(mean {ua['mean']:.3f}, min {ua['min']:.3f}, max {ua['max']:.3f})",
        markup=False,
    )
    table = Table()
    table.add_column("rank", justify="right")
    table.add_column("unit")
    table.add_column("accuracy", justify="right")
    for i, entry in enumerate(ua["top"], 1):
        table.add_row(str(i), entry["unit"], f"{entry['accuracy']:.3f}")
    console.print(table)


def _print_log(console: Console, tail: list[dict[str, Any]], total: int) -> None:
    from rich.table import Table

    cols = list(dict.fromkeys(k for e in tail for k in e))
    console.print(f"training log: last {len(tail)} of {total} entries", markup=False)
    table = Table()
    for c in cols:
        table.add_column(c, justify="right")
    for e in tail:
        table.add_row(*(_fmt(e.get(c)) for c in cols))
    console.print(table)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)
