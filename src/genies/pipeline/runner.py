"""Execute a plan against the result store: reuse what exists, compute the rest, never lose work.

For each evaluation in plan order the runner either reuses a valid stored record or, holding the
key's file lock, re-checks the store, fits (or loads) the state it needs and scores the pairs. Every
finished state and evaluation is written before the next step starts, so an interrupted run loses at
most the step in flight; rerunning the same command picks up from there.

The model is loaded lazily, the first time something must actually be computed, so a fully cached
run never loads it. Forward passes are counted with a hook on the model's input embeddings (each
forward through the network embeds its inputs exactly once, whichever module the caller invoked).

An evaluation records the id of the state it was computed from (``info.state_id``). When that state
is later recomputed (``--force`` in some run) the evaluation no longer matches it and is recomputed
too: that is how ``--force`` invalidates what depended on the state.
"""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from genies.api.intervention import InterventionState
from genies.errors import InterruptedRun
from genies.pipeline.config import cache_config
from genies.pipeline.plan import EvalTask, Plan, StateTask
from genies.pipeline.store import ResultStore
from genies.records import SCORING_VERSION, EvaluationRecord

if TYPE_CHECKING:
    from rich.console import Console

    from genies.models.loading import LoadedModel


def versions() -> dict[str, str]:
    """genies, torch and transformers versions and the git commit of the source tree (if any)."""
    import subprocess
    from importlib.metadata import PackageNotFoundError, version
    from pathlib import Path

    import genies

    out = {"genies": genies.__version__}
    for pkg in ("torch", "transformers"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    pkg = Path(genies.__file__).resolve().parent
    commit = "unknown"
    try:
        top, head = subprocess.run(
            ["git", "rev-parse", "--show-toplevel", "HEAD"],
            cwd=pkg,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.split()
        # Only genies' own checkout counts (not, say, a user's repository around a virtualenv).
        if (Path(top) / "src" / "genies").resolve() == pkg:
            commit = head
    except (OSError, ValueError, subprocess.SubprocessError):
        pass
    out["git_commit"] = commit
    return out


class Runner:
    """Runs plans against one store with one (lazily loaded) model."""

    def __init__(
        self,
        store: ResultStore,
        *,
        model_loader: Callable[[], LoadedModel],
        seed: int,
        limit: int | None,
        force: bool = False,
        console: Console | None = None,
        progress: bool = True,
    ) -> None:
        self.store = store
        self.counters = store.counters
        self.seed, self.limit, self.force = seed, limit, force
        self.console = console
        self.show_progress = progress and console is not None
        self._model_loader = model_loader
        self._model: LoadedModel | None = None
        self._states: dict[str, tuple[InterventionState, str]] = {}
        self._forced: set[str] = set()  # keys recomputed by this run under --force
        self._versions: dict[str, str] | None = None

    # ------------------------------------------------------------ model

    @property
    def model_loaded(self) -> bool:
        return self._model is not None

    def model(self) -> LoadedModel:
        if self._model is None:
            self._log("loading the model…")
            self._model = self._model_loader()
            self.counters.model_loads += 1
            self._count_forward_passes(self._model)
        return self._model

    def _count_forward_passes(self, lm: LoadedModel) -> None:
        module = getattr(lm, "model", None)
        get_emb = getattr(module, "get_input_embeddings", None)
        target = get_emb() if callable(get_emb) else None
        target = target if target is not None else module
        if hasattr(target, "register_forward_hook"):

            def hook(*_: Any) -> None:
                self.counters.forward_passes += 1

            target.register_forward_hook(hook)

    def versions(self) -> dict[str, str]:
        """Software versions of this run, computed once (a git subprocess) and shared by all records."""
        if self._versions is None:
            self._versions = versions()
        return self._versions

    # ------------------------------------------------------------ logging

    def _log(self, message: str) -> None:
        if self.console is not None:
            self.console.print(message, highlight=False, markup=False)

    # ------------------------------------------------------------ validity

    def _reusable(self, task: EvalTask, record: EvaluationRecord | None, *, report: bool = True) -> bool:
        """A stored record is reusable unless it was made from a state that has since been replaced."""
        if record is None:
            return False
        sentinel = self.store.state_sentinel(task.state.key)
        made_from = record.info.get("state_id")
        if sentinel is not None and made_from is not None and sentinel.get("state_id") != made_from:
            if report:
                self.counters.stale_entries += 1
                self.store.warn(
                    f"evaluation {task.key} ({task.label}) was made from an older state; recomputing it"
                )
            return False
        return True

    # ------------------------------------------------------------ execution

    def run(self, plan: Plan) -> dict[str, EvaluationRecord]:
        """Every evaluation of ``plan`` as a record (reused or computed). Ctrl-C → InterruptedRun."""
        records: dict[str, EvaluationRecord] = {}
        todo: list[EvalTask] = []
        for task in plan.evaluations:
            rec = None if self.force else self.store.load_evaluation(task.key)
            if self._reusable(task, rec):
                assert rec is not None
                records[task.key] = rec
                self.counters.evaluations_reused += 1
            else:
                todo.append(task)
        n_total = len(plan.evaluations)
        self._log(
            f"{n_total} evaluations: {n_total - len(todo)} already in the store, {len(todo)} to compute"
            f" (store: {self.store.root})"
        )
        if not todo:
            return records
        done = 0
        try:
            with self._progress(sum(t.n_pairs for t in todo)) as advance:
                for task in todo:
                    advance(0, f"[{done + 1}/{len(todo)}] {task.label}")
                    records[task.key] = self._evaluation(task)
                    done += 1
                    advance(task.n_pairs, None)
        except KeyboardInterrupt:
            raise InterruptedRun(
                f"interrupted after {done} of {len(todo)} evaluations to compute; finished work is saved "
                f"in {self.store.root} — rerun the same command to resume"
            ) from None
        return records

    @contextmanager
    def _progress(self, total_units: int) -> Iterator[Callable[[int, str | None], None]]:
        if not self.show_progress:
            yield lambda units, desc: None
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("pairs"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        with progress:
            tid = progress.add_task("starting", total=max(total_units, 1))

            def advance(units: int, desc: str | None) -> None:
                progress.update(tid, advance=units, **({"description": desc} if desc else {}))

            yield advance

    def _evaluation(self, task: EvalTask) -> EvaluationRecord:
        with self.store.lock(task.key):
            if not (self.force and task.key not in self._forced):
                rec = self.store.load_evaluation(task.key, report=False)
                if self._reusable(task, rec, report=False):  # another process finished it meanwhile
                    assert rec is not None
                    self.counters.evaluations_reused += 1
                    return rec
            record = self._compute_evaluation(task)
            self.store.save_evaluation(record)
            self._forced.add(task.key)
            self.counters.evaluations_computed += 1
            return record

    def _state(self, task: StateTask) -> tuple[InterventionState, str, float | None]:
        """The state for ``task`` (memory, store, or fitted now) with its id and fit time if fitted now."""
        if task.key in self._states:
            state, sid = self._states[task.key]
            return state, sid, None
        if not self.force:
            loaded = self.store.load_state(task.key)
            if loaded is not None:
                self._states[task.key] = loaded
                self.counters.states_reused += 1
                return loaded[0], loaded[1], None
        with self.store.lock(task.key):
            if not self.force:
                loaded = self.store.load_state(task.key, report=False)  # fitted meanwhile by another run?
                if loaded is not None:
                    self._states[task.key] = loaded
                    self.counters.states_reused += 1
                    return loaded[0], loaded[1], None
            model = self.model() if task.intervention.trains else None
            if task.intervention.trains:
                self._log(f"fitting {task.label} ({len(task.train)} training examples)…")
            t0 = time.perf_counter()
            state = task.intervention.fit(model, task.train, task.config, seed=self.seed)  # type: ignore[arg-type]
            fit_s = time.perf_counter() - t0
            sid = self.store.save_state(task.key, state, {**task.inputs, "fit_s": round(fit_s, 3)})
            self.counters.states_computed += 1
        self._states[task.key] = (state, sid)
        return state, sid, fit_s

    def _compute_evaluation(self, task: EvalTask) -> EvaluationRecord:
        from genies import metrics

        st = task.state
        state, state_id, fit_s = self._state(st)
        lm = self.model()
        pairs = task.test.to_pairs("all")
        if self.limit is not None:
            pairs = pairs[: self.limit]
        t0 = time.perf_counter()
        scored = st.intervention.score_pairs(lm, state, pairs, st.config, seed=self.seed)
        score_s = time.perf_counter() - t0
        p = [float(x) for x in scored.p_correct]
        timings = {"score_s": round(score_s, 3)}
        if fit_s is not None:
            timings["fit_s"] = round(fit_s, 3)
        record = EvaluationRecord(
            key=task.key,
            intervention=st.intervention.name,
            config=cache_config(st.intervention, st.config),
            model=dict(st.inputs["model"]),
            train_distribution=st.train_distribution,
            train_fingerprint=st.train_fingerprint,
            eval_distribution=task.eval_distribution,
            eval_split="test",
            eval_fingerprint=task.eval_fingerprint,
            seed=self.seed,
            limit=self.limit,
            scoring_version=SCORING_VERSION,
            pair_ids=list(scored.pair_ids),
            p_correct=p,
            n=len(p),
            ties=metrics.tie_count(p),
            dropped=int(scored.dropped),
            metrics=metrics.summarize(p),
            info={
                "state_key": st.key,
                "state_id": state_id,
                "pairs_requested": len(pairs),
                "device": str(getattr(lm, "device", "")),
                "dtype": str(getattr(lm, "dtype", "")),
                "intervention": dict(scored.info),
            },
            timings=timings,
            versions=self.versions(),
            created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        )
        acc = record.metrics.get("accuracy", float("nan"))
        self._log(f"  {task.label}: accuracy {acc:.3f} over {record.n} pairs ({score_s:.1f} s)")
        return record
