"""The ``genies browse`` ASGI app: routes, one handler per page, security middleware.

Pages (all GET/HEAD; every other method is answered 405 before routing):

=====================================  ===========================================================
``/``                                  distributions with counts, responses per example, status
``/d/{id}?split=&q=&wrong=&page=``     one split's examples, paged; search; "pairs KEY gets wrong"
``/d/{id}/{split}/{i}?q=&wrong=``      one example: prompt, responses (preferred marked), p(correct)
``/shifts?suite=``                     shifts by category, with what each category tests
``/shifts/{source}/{target}?i=``       source (train) and target (test) examples side by side
``/results?category=&intervention=…``  every ``genies run`` row under the results folder; sortable
``/results/{path}``                    one results file: rows, category means, run metadata
``/evaluations``                       the result store's evaluations, linked to their splits
``/static/…``                          the style sheet
=====================================  ===========================================================

Handlers are plain (sync) functions: Starlette runs them in its thread pool, so parsing a split on
its first view never blocks the event loop. A new page is one handler plus one template; the report's
plots and the paired comparisons of issue 12 fit in as ``/results/…`` pages the same way.

Security: Jinja2 autoescape is on for every template (and nothing is marked safe), so dataset text is
always escaped; a strict Content-Security-Policy forbids scripts and inline styles as a second line;
names in URLs are looked up in the indexes built at start-up and never joined to a path; the Host
header must name the bound address (DNS-rebinding guard).
"""

from __future__ import annotations

import difflib
import json
import math
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from genies.data import Example
from genies.errors import GeniesError
from genies.shifts import CATEGORIES, CATEGORY_EXPLANATIONS, CATEGORY_GROUP, get_suite
from genies.web.evaluations import WRONG_BELOW, Evaluation, EvaluationIndex
from genies.web.hosts import LOCAL_HOSTS
from genies.web.index import SPLITS, DataIndex, SplitView
from genies.web.report_views import PLOT_KINDS, PlotCache, draw, plots_of
from genies.web.results import ResultsIndex
from genies.web.tables import COLUMNS, results_table

HERE = Path(__file__).parent
PAGE_SIZE = 25
PREVIEW_CHARS = 220
SIMILAR = 0.5  # share of unchanged characters above which a response's edits are marked
MAX_WORD_DIFF = 4000  # longer line pairs are marked as wholly changed
SAFE_METHODS = ("GET", "HEAD")
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-resource-policy", b"same-origin"),
]


# ------------------------------------------------------------------------------------- middleware


class ReadOnlyMiddleware:
    """405 for every method but GET and HEAD, on every path (before routing), plus security headers."""

    def __init__(self, app: ASGIApp, allowed_hosts: Sequence[str] | None) -> None:
        self.app = app
        self.allowed_hosts = None if allowed_hosts is None else {h.lower() for h in allowed_hosts}

    def _host_ok(self, scope: Scope) -> bool:
        if self.allowed_hosts is None:
            return True
        host = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1").lower()
        if host.startswith("["):  # [::1]:8765
            host = host[: host.find("]") + 1]
        else:
            host = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        return host in self.allowed_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + SECURITY_HEADERS
            await send(message)

        if scope["method"] not in SAFE_METHODS:
            response: Response = PlainTextResponse(
                "405 Method Not Allowed: genies browse is read-only\n",
                status_code=405,
                headers={"Allow": ", ".join(SAFE_METHODS)},
            )
        elif not self._host_ok(scope):
            response = PlainTextResponse("400 Bad Request: unexpected Host header\n", status_code=400)
        else:
            await self.app(scope, receive, send_with_headers)
            return
        await response(scope, receive, send_with_headers)


# ------------------------------------------------------------------------------------- helpers


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def _link(path: str, **params: Any) -> str:
    """``path?k=v…`` without empty parameters (Jinja escapes the ``&`` in attributes)."""
    kept = {k: v for k, v in params.items() if v not in (None, "", False)}
    return path + ("?" + urlencode(kept) if kept else "")


def _p_class(p: float | None) -> str:
    if p is None:
        return "na"
    return "wrong" if p < WRONG_BELOW else ("tie" if p == WRONG_BELOW else "right")


_TOKEN = re.compile(r"\w+\s*|[^\w\s]+\s*|\s+")  # words (or punctuation runs) with their trailing spaces
Segments = list[tuple[str, bool]]  # (text, differs from the preferred response)


def _token_diff(best: str, text: str) -> Segments:
    """``text`` cut into runs of words that are / are not in the same place in ``best``."""
    if len(best) + len(text) > MAX_WORD_DIFF:
        return [(text, True)]
    a, b = _TOKEN.findall(best), _TOKEN.findall(text)
    out: Segments = []
    for op, _, _, b0, b1 in difflib.SequenceMatcher(None, a, b).get_opcodes():
        if b1 > b0:
            out.append(("".join(b[b0:b1]), op != "equal"))
    return out


def response_marks(example: Example) -> dict[int, list[tuple[str, Segments]]]:
    """For each response that is an edit of the preferred one: its lines, marked against it.

    Many distributions (code_hard, math_hard, ...) make the worse responses by editing the
    preferred one; marking the edits shows at a glance what a reward model has to notice. Each line
    is ``(kind, segments)``: kind ``same`` (unchanged), ``chg`` (changed or new; a line that
    replaces one line has its changed words marked) or ``gone`` (a note that non-blank lines of the
    preferred response are missing here). Lines are diffed first and words only inside lines
    replaced one for one, which keeps it to a few ms per example; responses of which less than
    ``SIMILAR`` of the characters are unchanged are left unmarked.
    """
    best = example.best.splitlines()
    out: dict[int, list[tuple[str, Segments]]] = {}
    for j, (text, _) in enumerate(example.responses):
        if j == example.best_index:
            continue
        lines = text.splitlines()
        marked: list[tuple[str, Segments]] = []
        for op, a0, a1, b0, b1 in difflib.SequenceMatcher(None, best, lines, autojunk=False).get_opcodes():
            if op == "equal":
                marked += [("same", [(line, False)]) for line in lines[b0:b1]]
            elif op == "replace" and a1 - a0 == b1 - b0:
                marked += [("chg", _token_diff(x, y)) for x, y in zip(best[a0:a1], lines[b0:b1], strict=True)]
            else:
                marked += [("chg", [(line, True)]) for line in lines[b0:b1]]
            missing = sum(1 for line in best[a0:a1] if line.strip()) if op == "delete" else 0
            if missing:
                note = f"[{missing} line{'s' if missing > 1 else ''} of the preferred response missing here]"
                marked.append(("gone", [(note, False)]))
        kept = sum(
            len(part) for kind, segs in marked if kind != "gone" for part, changed in segs if not changed
        )
        if 2 * kept >= SIMILAR * (len(example.best) + len(text)):
            out[j] = marked
    return out


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,  # every template, whatever its name: dataset strings are never trusted
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["fmt"] = _fmt
    env.filters["pclass"] = _p_class
    env.filters["urlpath"] = lambda s: quote(str(s), safe="/")
    env.filters["preview"] = lambda s, n=PREVIEW_CHARS: s if len(s) <= n else s[:n].rstrip() + " …"
    env.filters["thousands"] = lambda n: "–" if n is None else f"{n:,}"
    env.globals["link"] = _link
    env.globals["wrong_below"] = WRONG_BELOW
    env.globals["letters"] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return env


def _int(request: Request, name: str, default: int, lo: int = 0) -> int:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise HTTPException(400, f"{name} must be a whole number, not {raw!r}") from None
    return max(lo, value)


# ------------------------------------------------------------------------------------- the app


class Browser:
    """The indexes and the page handlers of one ``genies browse`` server."""

    def __init__(self, data_dir: Path, store: Path | None, results_dir: Path) -> None:
        start = time.perf_counter()
        self.data = DataIndex(data_dir)
        self.evaluations = EvaluationIndex(store)
        self.results = ResultsIndex(results_dir)
        self.store, self.results_dir = store, results_dir
        self.env = _environment()
        self.plots = PlotCache()
        self.genies_ids = {s.id for s in get_suite("genies")}
        self.index_seconds = time.perf_counter() - start

    # ---------------------------------------------------------------- rendering

    def render(self, request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        html = self.env.get_template(template).render(
            request=request, path=request.url.path, data_dir=str(self.data.data_dir), **context
        )
        return HTMLResponse(html, status_code=status_code)

    def _view(self, dist_id: str, split: str) -> SplitView:
        try:
            view = self.data.split(dist_id, split)
        except GeniesError as exc:
            raise HTTPException(422, f"{dist_id}/{split} cannot be shown: {exc}") from None
        if view is None:
            raise HTTPException(404, f"no distribution {dist_id!r} with split {split!r} in the data store")
        return view

    def _evaluations(self, view: SplitView) -> tuple[list[Evaluation], list[Evaluation]]:
        """(evaluations of this exact split content, evaluations of an older version of it)."""
        found = self.evaluations.for_split(view.distribution, view.split.name)
        fp = view.split.fingerprint
        fresh = [e for e in found if e.eval_fingerprint in (None, fp)]
        return fresh, [e for e in found if e.eval_fingerprint not in (None, fp)]

    def _selection(
        self, request: Request, view: SplitView, fresh: list[Evaluation]
    ) -> tuple[list[int], Evaluation | None]:
        """The example indices selected by ``q`` (search) and ``wrong`` (an evaluation key)."""
        matches = self.data.search(view, request.query_params.get("q", ""))
        wrong_key = request.query_params.get("wrong") or None
        wrong = None
        if wrong_key is not None:
            wrong = next((e for e in fresh if e.key == wrong_key), None)
            if wrong is None:
                raise HTTPException(
                    404, f"no evaluation {wrong_key!r} of {view.distribution}/{view.split.name}"
                )
            bad = wrong.wrong_examples()
            matches = [i for i in matches if i in bad]
        return matches, wrong

    def _split_context(self, request: Request, dist_id: str, split: str) -> tuple[SplitView, list[int], dict]:
        """The split, the selected example indices, and the context its pages share."""
        view = self._view(dist_id, split)
        fresh, stale = self._evaluations(view)
        matches, wrong = self._selection(request, view, fresh)
        context = {
            "info": self.data.info(dist_id),
            "view": view,
            "split": split,
            "splits": SPLITS,
            "q": request.query_params.get("q", ""),
            "wrong": wrong,
            "fresh": fresh,
            "stale": stale,
        }
        return view, matches, context

    # ---------------------------------------------------------------- pages

    def index(self, request: Request) -> Response:
        q = request.query_params.get("q", "").strip()
        infos = [i for i in self.data.infos.values() if q.casefold() in i.id.casefold()]
        counts = self.evaluations.counts()
        totals = {
            "train": sum(i.train_examples or 0 for i in self.data.infos.values()),
            "test": sum(i.test_examples or 0 for i in self.data.infos.values()),
            "test_pairs": sum(i.test_pairs or 0 for i in self.data.infos.values()),
        }
        return self.render(
            request,
            "index.html",
            infos=infos,
            q=q,
            counts=counts,
            totals=totals,
            n_all=len(self.data.infos),
            shift_counts={i: len(self.data.shifts_of(i)) for i in self.data.infos},
        )

    def distribution(self, request: Request) -> Response:
        dist_id = request.path_params["dist"]
        split = request.query_params.get("split", "test")
        view, matches, context = self._split_context(request, dist_id, split)
        if request.query_params.get("goto"):
            i = _int(request, "goto", 0)
            if i >= len(view.split):
                raise HTTPException(
                    404, f"{dist_id}/{split} has {len(view.split)} examples; there is no example {i}"
                )
            return RedirectResponse(f"/d/{dist_id}/{split}/{i}", status_code=303)
        n_pages = max(1, math.ceil(len(matches) / PAGE_SIZE))
        page = min(_int(request, "page", 1, lo=1), n_pages)
        shown = matches[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
        examples = [view.split.examples[i] for i in shown]
        wrong = context["wrong"]
        q, wrong_key = context["q"], wrong.key if wrong else None
        # The selected evaluation's lowest p(correct) over each shown example's pairs.
        worst = {i: min(ps.values()) for i in shown if (ps := wrong.pairs_of(i))} if wrong else {}
        head, tail = self.data.template(view)

        def core(prompt: str) -> str:
            return prompt[len(head) : len(prompt) - len(tail)] if prompt.startswith(head) else prompt

        def page_link(p: int) -> str:
            return _link(f"/d/{dist_id}", split=split, q=q, wrong=wrong_key, page=p)

        return self.render(
            request,
            "distribution.html",
            **context,
            page_link=page_link,
            worst=worst,
            head=head,
            tail=tail,
            core=core,
            matches=matches,
            examples=examples,
            page=page,
            n_pages=n_pages,
            shifts=self.data.shifts_of(dist_id),
            genies_ids=self.genies_ids,
        )

    def example(self, request: Request) -> Response:
        dist_id, split, index = (request.path_params[k] for k in ("dist", "split", "index"))
        view, matches, context = self._split_context(request, dist_id, split)
        if not 0 <= index < len(view.split):
            raise HTTPException(
                404, f"{dist_id}/{split} has {len(view.split)} examples; there is no example {index}"
            )
        # Prev/next move within the selection; an example outside it still shows, with plain neighbours.
        order = matches if index in matches else list(range(len(view.split)))
        pos = order.index(index)
        example = view.split.examples[index]
        pairs = {e.key: e.pairs_of(index) for e in context["fresh"]}
        marks = response_marks(example)
        return self.render(
            request,
            "example.html",
            **context,
            example=example,
            marks=marks,
            index=index,
            pairs=pairs,
            pos=pos,
            n_sel=len(order),
            in_selection=index in matches,
            prev=order[pos - 1] if pos > 0 else None,
            next=order[pos + 1] if pos + 1 < len(order) else None,
            extra=json.dumps(example.extra, indent=2, ensure_ascii=False) if example.extra else "",
        )

    def shifts(self, request: Request) -> Response:
        suite = request.query_params.get("suite", "all")
        choices = ["all", "genies", *CATEGORIES]
        if suite not in choices:
            raise HTTPException(404, f"unknown suite {suite!r}; choose from {', '.join(choices)}")
        shifts = get_suite(suite)
        by_cat: dict[str, list] = {}
        for s in shifts:
            by_cat.setdefault(s.category, []).append(s)
        return self.render(
            request,
            "shifts.html",
            suite=suite,
            choices=choices,
            by_cat=by_cat,
            explanations=CATEGORY_EXPLANATIONS,
            groups=CATEGORY_GROUP,
            genies_ids=self.genies_ids,
            known=self.data.infos,
            n=len(shifts),
        )

    def shift(self, request: Request) -> Response:
        source, target = request.path_params["source"], request.path_params["target"]
        shift = self.data.find_shift(source, target)
        if shift is None:
            raise HTTPException(404, f"no shift {source} → {target} in the registry")
        src, tgt = self._view(shift.source, "train"), self._view(shift.target, "test")
        n = min(len(src.split), len(tgt.split))
        i = min(_int(request, "i", 0), max(n - 1, 0))
        table = results_table(self.results.loaded())
        rows = [r for r in table.rows if r.source == source and r.target == target]
        return self.render(
            request,
            "shift.html",
            shift=shift,
            explanation=CATEGORY_EXPLANATIONS.get(shift.category, ""),
            src=src,
            tgt=tgt,
            i=i,
            n=n,
            rows=rows,
            genies=shift.id in self.genies_ids,
            src_ex=src.split.examples[i] if n else None,
            src_marks=response_marks(src.split.examples[i]) if n else {},
            tgt_marks=response_marks(tgt.split.examples[i]) if n else {},
            tgt_ex=tgt.split.examples[i] if n else None,
        )

    def results_page(self, request: Request) -> Response:
        params = {
            k: request.query_params.get(k) or None for k in ("category", "intervention", "suite", "model")
        }
        sort = request.query_params.get("sort") or None
        descending = request.query_params.get("order") == "desc"
        table = results_table(self.results.loaded(), sort=sort, descending=descending, **params)
        return self.render(
            request,
            "results.html",
            evals={e.key for e in self.evaluations.all()},
            table=table,
            files=self.results.files(),
            results_dir=str(self.results_dir),
            base="/results",
            title="Results",
            params=params,
        )

    def result_file(self, request: Request) -> Response:
        rid = request.path_params["rid"]
        entry = self.results.get(rid)
        if entry is None:
            raise HTTPException(404, f"no results file {rid!r} under {self.results_dir}")
        if entry.result is None:
            raise HTTPException(422, entry.error or f"{rid} cannot be read")
        params = {"category": request.query_params.get("category") or None}
        sort = request.query_params.get("sort") or None
        descending = request.query_params.get("order") == "desc"
        table = results_table([(rid, entry.result)], sort=sort, descending=descending, **params)
        meta = entry.result.model_dump(mode="json", exclude={"rows"})
        return self.render(
            request,
            "result_file.html",
            evals={e.key for e in self.evaluations.all()},
            table=table,
            entry=entry,
            res=entry.result,
            params=params,
            base="/results/" + quote(rid, safe="/"),
            title=rid,
            meta=json.dumps(meta, indent=2, ensure_ascii=False),
            plots=plots_of(entry.result, self.store),
            others=[f for f in self.results.files() if f.result is not None and f.id != rid],
        )

    def _result(self, rid: str | None, what: str):
        entry = self.results.get(rid) if rid else None
        if entry is None:
            raise HTTPException(404, f"no results file {rid!r} under {self.results_dir} ({what})")
        if entry.result is None:
            raise HTTPException(422, entry.error or f"{rid} cannot be read")
        return entry

    def plot(self, request: Request) -> Response:
        """``/plot/KIND?r=RID`` (a results file's plot) or ``/plot/compare?a=RID&b=RID``: PNG bytes."""
        kind = request.path_params["kind"]
        if kind == "compare":
            a, b = (
                self._result(request.query_params.get("a"), "a"),
                self._result(request.query_params.get("b"), "b"),
            )
            key = ("compare", a.id, b.id, a.path.stat().st_mtime_ns, b.path.stat().st_mtime_ns)
            png = self.plots.get(key, lambda: self._compare_png(a, b))
        elif kind in PLOT_KINDS:
            entry = self._result(request.query_params.get("r"), "r")
            label = f"{entry.result.intervention} · {entry.result.suite}"
            key = (kind, entry.id, entry.path.stat().st_mtime_ns)
            png = self.plots.get(key, lambda: draw(kind, label, entry.result, self.store))
        else:
            raise HTTPException(404, f"no plot {kind!r}")
        if png is None:
            raise HTTPException(404, f"{kind}: no such plot for this result")
        return Response(png, media_type="image/png", headers={"Cache-Control": "no-cache"})

    def _comparison(self, a, b):
        from genies.report.compare import compare_results

        if self.store is None:
            raise HTTPException(422, "comparisons need the result store (--store)")
        try:
            return compare_results(a.path, b.path, store=self.store)
        except GeniesError as exc:
            raise HTTPException(422, f"{a.id} and {b.id} cannot be compared: {exc}") from None

    def _compare_png(self, a, b) -> bytes:
        from genies.report import plots

        c = self._comparison(a, b)
        return plots.comparison_plot(c.shifts, f"B = {c.b.label}, A = {c.a.label}")

    def compare_page(self, request: Request) -> Response:
        """``/compare?a=RID&b=RID``: the paired comparison of two results files (B − A)."""
        a, b = (
            self._result(request.query_params.get("a"), "a"),
            self._result(request.query_params.get("b"), "b"),
        )
        c = self._comparison(a, b)
        return self.render(
            request,
            "compare.html",
            c=c,
            a=a,
            b=b,
            title=f"compare {b.id} − {a.id}",
            plot_url="/plot/compare?" + urlencode({"a": a.id, "b": b.id}),
        )

    def evaluations_page(self, request: Request) -> Response:
        evals = self.evaluations.all()
        return self.render(
            request,
            "evaluations.html",
            evals=evals,
            store=str(self.store) if self.store else None,
            known=self.data.infos,
        )

    # ---------------------------------------------------------------- errors

    def http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return self.render(
            request, "error.html", status_code=exc.status_code, status=exc.status_code, message=exc.detail
        )

    def server_error(self, request: Request, exc: Exception) -> Response:
        return self.render(
            request,
            "error.html",
            status_code=500,
            status=500,
            message=f"internal error: {type(exc).__name__}: {exc}",
        )


def create_app(
    data_dir: Path,
    store: Path | None = None,
    results_dir: Path = Path("genies-results"),
    *,
    allowed_hosts: Sequence[str] | None = LOCAL_HOSTS,
) -> Starlette:
    """The browser app over one data store, result store and results folder (see module docstring).

    Builds the data index now (raises ``GeniesError`` for a missing or empty store); evaluations and
    results are read when a page first needs them. ``allowed_hosts=None`` accepts any Host header.
    """
    b = Browser(Path(data_dir), None if store is None else Path(store), Path(results_dir))
    get = list(SAFE_METHODS)
    routes = [
        Route("/", b.index, methods=get),
        Route("/d/{dist}", b.distribution, methods=get),
        Route("/d/{dist}/{split}/{index:int}", b.example, methods=get),
        Route("/shifts", b.shifts, methods=get),
        Route("/shifts/{source}/{target}", b.shift, methods=get),
        Route("/results", b.results_page, methods=get),
        Route("/results/{rid:path}", b.result_file, methods=get),
        Route("/evaluations", b.evaluations_page, methods=get),
        Route("/compare", b.compare_page, methods=get),
        Route("/plot/{kind}", b.plot, methods=get),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    handlers: dict[Any, Callable] = {HTTPException: b.http_error, 500: b.server_error}
    app = Starlette(routes=routes, exception_handlers=handlers)
    app.router.redirect_slashes = False  # "/d/../" is a 404, not a redirect to "/d/.."
    app.state.browser = b
    app.add_middleware(ReadOnlyMiddleware, allowed_hosts=allowed_hosts)
    return app


__all__ = ["COLUMNS", "Browser", "create_app"]
