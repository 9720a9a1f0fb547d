"""The intervention context: everything ``fit`` and ``score_pairs`` may use, passed explicitly.

An ``InterventionContext`` is built by the pipeline for one node (a fit or an evaluation) and
offers (seams.md §1):

==========================  ====================================================================
``ctx.seed``                the run's seed: the only source of randomness
``ctx.model``               the base ``LoadedModel``, loaded on first access (a cached run never
                            loads it)
``ctx.engine``              the model's one forward engine (one per loaded model and process)
``ctx.scores(requests)``    log-prob scoring of ``(prompt, response)`` pairs through the engine
``ctx.activations(...)``    activations through the activation cache under ``<store>/activations``
``ctx.adapter(config)``     attach a peft adapter to the shared model; restored bit-identically
``ctx.checkpoint_dir``      private to the node, under its key's lock, kept across kills and
                            removed when the node completes
``ctx.progress(n, what)``   ``with ctx.progress(n, "what") as advance: advance(k)``
``ctx.log(msg)``            one line to the run's console (or the worker's node log)
==========================  ====================================================================

Nothing travels through globals, ContextVars or ``lm.info``: a ``ModelSession`` holds a process's
model and engine and every context of that process shares it. ``InterventionContext.for_model(lm)``
wraps an already loaded model for library use and tests.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genies.errors import GeniesError, ModelError

if TYPE_CHECKING:
    import torch

    from genies.models.loading import LoadedModel
    from genies.models.scoring import ResponseScore

ProgressFactory = Callable[[int, str], contextlib.AbstractContextManager[Callable[[int], None]]]


# ---------------------------------------------------------------- the engine factory


def make_engine(lm: LoadedModel) -> Any:
    """The one forward engine of ``lm`` (created once per loaded model by ``ModelSession``), so its
    self-checks run once per model and process and its counters add up over every node."""
    from genies.models.engine import ForwardEngine

    return ForwardEngine(lm)


def open_activation_cache(root: Path, model_key: str, dtype: str = "float32") -> Any:
    """``genies.models.activation_cache.ActivationCache(root, model_key, dtype=dtype)`` (seams.md §3)."""
    from genies.models.activation_cache import ActivationCache

    return ActivationCache(root, model_key, dtype=dtype)  # type: ignore[arg-type]


# ---------------------------------------------------------------- the model of a process


class ModelSession:
    """One model of one process, loaded on first use, with its forward engine.

    ``expect_sha256`` (from a node's model identity) is checked against the weights actually loaded,
    so a worker that resolves the same name to other weights refuses to compute. ``count(name, n)``
    receives ``model_loads`` and ``forward_passes`` (counted by a hook on the input embeddings: every
    forward embeds its inputs exactly once, whichever module the caller invoked).
    """

    def __init__(
        self,
        name: str,
        *,
        device: str = "auto",
        dtype: str | None = None,
        expect_sha256: str | None = None,
        loader: Callable[[], LoadedModel] | None = None,
        count: Callable[[str, int], None] | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.name, self.device, self.dtype = name, device, dtype
        self.expect_sha256 = expect_sha256
        self._count = count or (lambda name, n: None)
        self._loader = loader
        self._log = log or (lambda msg: None)
        self._lm: LoadedModel | None = None
        self._engine: Any = None

    @classmethod
    def of(cls, lm: LoadedModel) -> ModelSession:
        """A session around an already loaded model."""
        session = cls(lm.name)
        session._lm = lm
        return session

    @property
    def loaded(self) -> bool:
        return self._lm is not None

    def model(self) -> LoadedModel:
        if self._lm is None:
            self._log(f"loading the model {self.name}…")
            if self._loader is not None:
                lm = self._loader()
            else:
                from genies.models.loading import load_model

                lm = load_model(self.name, device=self.device, dtype=self.dtype)
            got = (getattr(lm, "identity", None) or {}).get("weights_sha256")
            if self.expect_sha256 is not None and got is not None and got != self.expect_sha256:
                raise ModelError(
                    f"model {self.name!r} resolves to weights {got[:12]}… here, "
                    f"but the plan was made for {self.expect_sha256[:12]}…"
                )
            self._count("model_loads", 1)
            self._count_forward_passes(lm)
            self._lm = lm
        return self._lm

    def engine(self) -> Any:
        if self._engine is None:
            self._engine = make_engine(self.model())
        return self._engine

    def _count_forward_passes(self, lm: Any) -> None:
        module = getattr(lm, "model", None)
        get_emb = getattr(module, "get_input_embeddings", None)
        target = get_emb() if callable(get_emb) else None
        target = target if target is not None else module
        if hasattr(target, "register_forward_hook"):

            def hook(*_: Any) -> None:
                self._count("forward_passes", 1)

            target.register_forward_hook(hook)


# ---------------------------------------------------------------- adapters


def _model_fingerprint(model: Any) -> list[tuple[Any, ...]]:
    """What must be identical after an adapter is removed: every module (name, class, training flag)
    and every parameter and buffer (name, identity, storage, shape, dtype, in-place version,
    requires_grad). Cheap: no tensor is read."""
    out: list[tuple[Any, ...]] = [(n, type(m).__name__, m.training) for n, m in model.named_modules()]
    for n, t in list(model.named_parameters(remove_duplicate=False)) + list(
        model.named_buffers(remove_duplicate=False)
    ):
        out.append((n, id(t), t.data_ptr(), tuple(t.shape), str(t.dtype), t._version, t.requires_grad))
    return out


# ---------------------------------------------------------------- the context


class InterventionContext:
    """The services of one node (see the module docstring)."""

    def __init__(
        self,
        *,
        seed: int,
        session: ModelSession | None = None,
        activations_root: Path | None = None,
        checkpoint_dir: Path | None = None,
        progress: ProgressFactory | None = None,
        log: Callable[[str], None] | None = None,
        model_key: str | None = None,
        activation_dtype: str = "float32",
    ) -> None:
        self.seed = int(seed)
        self.activation_dtype = activation_dtype
        self._session = session
        self._activations_root = activations_root
        self._checkpoint_dir = checkpoint_dir
        self._own_checkpoint = False
        self._progress = progress
        self._log = log
        self._model_key = model_key
        self._cache: Any = None

    @classmethod
    def for_model(cls, lm: LoadedModel, *, seed: int = 0, **kwargs: Any) -> InterventionContext:
        """A context around an already loaded model (library use, notebooks, tests)."""
        return cls(seed=seed, session=ModelSession.of(lm), **kwargs)

    def __enter__(self) -> InterventionContext:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Remove a checkpoint directory this context created itself (library use)."""
        if self._own_checkpoint and self._checkpoint_dir is not None:
            shutil.rmtree(self._checkpoint_dir, ignore_errors=True)

    # ------------------------------------------------------------ model and engine

    def _need_session(self) -> ModelSession:
        if self._session is None:
            raise GeniesError("this step runs without a model (its requirements say fit_model=False)")
        return self._session

    @property
    def model(self) -> LoadedModel:
        return self._need_session().model()

    @property
    def engine(self) -> Any:
        return self._need_session().engine()

    def scores(
        self, requests: Sequence[tuple[str, str]], *, batch_size: int | None = None
    ) -> list[ResponseScore]:
        """Summed log-probabilities of each ``(prompt, response)`` (``genies.models.scoring`` rules)."""
        if not requests:
            return []
        with self.progress(len(requests), "scoring") as advance:
            return self.engine.score(list(requests), batch_size=batch_size, progress=advance)

    def activations(
        self, texts: Sequence[Any], sites: Sequence[str], template: str | None = None
    ) -> Mapping[str, torch.Tensor]:
        """Activations of ``texts`` at ``sites`` through the activation cache (seams.md §3); the model
        is loaded only if some text is not cached yet."""
        return self._activation_cache().get(lambda: self.engine, list(texts), tuple(sites), template)

    def activation_reader(self, texts: Sequence[Any], site: str, template: str | None = None) -> Any:
        """One ``site`` of ``texts`` as a block reader (``ActivationCache.reader``): ``read(slice)``
        gives float32 ``[n, layers in the slice, ...]`` read memory-mapped from the cache's shards, so
        probe fitting holds one block of layers at a time instead of the whole site."""
        return self._activation_cache().reader(lambda: self.engine, list(texts), site, template)

    def _activation_cache(self) -> Any:
        if self._cache is None:
            if self._activations_root is None:
                raise GeniesError("no activation cache is configured for this context")
            key = self._model_key
            if key is None:
                from genies.hashing import content_hash

                key = content_hash(dict(self.model.identity), 32)
            self._cache = open_activation_cache(self._activations_root, key, self.activation_dtype)
        return self._cache

    @contextlib.contextmanager
    def adapter(
        self,
        peft_config: Any,
        *,
        state_dict: Mapping[str, Any] | None = None,
        trainable: bool = True,
        adapter_name: str = "default",
    ) -> Iterator[Any]:
        """Attach a peft adapter to the shared model for the block; restore the model as found on exit.

        Yields the ``peft.PeftModel``. LoRA-style adapters are injected into the model's own modules,
        so ``ctx.scores`` and ``ctx.activations`` inside the block see them; prompt-learning adapters
        wrap the model and are run through the yielded object. ``state_dict`` loads saved adapter
        weights; ``trainable=False`` freezes them (scoring). On exit the adapter is unloaded, training
        flags and ``requires_grad`` are restored, and the model is checked to be exactly as found
        (same modules, same parameter and buffer tensors, none modified in place), else GeniesError.
        """
        import peft

        model = self.model.model
        before = _model_fingerprint(model)
        training = {n: m.training for n, m in model.named_modules()}
        grads = {n: p.requires_grad for n, p in model.named_parameters(remove_duplicate=False)}
        wrapped = peft.get_peft_model(model, peft_config, adapter_name=adapter_name)
        try:
            if state_dict is not None:
                from peft import set_peft_model_state_dict

                set_peft_model_state_dict(wrapped, dict(state_dict), adapter_name=adapter_name)
            if not trainable:
                for n, p in wrapped.named_parameters():
                    if adapter_name in n:
                        p.requires_grad_(False)
            yield wrapped
        finally:
            if isinstance(wrapped.base_model, peft.tuners.tuners_utils.BaseTuner):
                restored = wrapped.base_model.unload()
                if restored is not model:
                    raise GeniesError("peft returned another model object when unloading the adapter")
            for n, m in model.named_modules():
                if n in training:
                    m.training = training[n]
            for n, p in model.named_parameters(remove_duplicate=False):
                if n in grads:
                    p.requires_grad_(grads[n])
            if _model_fingerprint(model) != before:
                raise GeniesError("the model was not restored as found after the adapter block")

    # ------------------------------------------------------------ checkpoints, progress, log

    @property
    def checkpoint_dir(self) -> Path:
        """A directory private to this node: kept across kills, removed when the node completes."""
        if self._checkpoint_dir is None:
            self._checkpoint_dir = Path(tempfile.mkdtemp(prefix="genies-checkpoint-"))
            self._own_checkpoint = True
        self._checkpoint_dir.mkdir(parents=True, exist_ok=True)
        return self._checkpoint_dir

    @contextlib.contextmanager
    def progress(self, total: int, description: str) -> Iterator[Callable[[int], None]]:
        """``with ctx.progress(n, "what") as advance: advance(k)``; a no-op when progress is off."""
        if self._progress is None:
            yield lambda n=1: None
            return
        with self._progress(int(total), description) as advance:
            yield advance

    def log(self, message: str) -> None:
        """One line to the run's console (or the worker's node log)."""
        if self._log is not None:
            self._log(str(message))
