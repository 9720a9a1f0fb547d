"""``genies browse``: a local, read-only web app over the data store, shifts, evaluations and results.

Why Starlette with server-side Jinja2 templates (and no JavaScript at all):

* escaping lives in one place: Jinja2 autoescape is on for every template and nothing is marked
  safe, so every dataset string (the data holds code, HTML-like text and ``<script>``) reaches the
  page as text; a strict Content-Security-Policy (no scripts, no inline styles) is a second line;
* pages are plain links and GET forms (sorting, filters, paging, search are query parameters), so
  every view has a URL, works without JavaScript, and is tested both with Starlette's TestClient and
  in a real browser;
* no build step, CDN or node toolchain: three small dependencies (starlette, jinja2, uvicorn) that
  install from PyPI with the rest of genies. FastAPI would add request models and OpenAPI docs, which
  a read-only HTML app does not need; a static front end would have to ship the data as JSON and
  re-implement escaping, paging and search in the browser.

Start-up reads the data store's manifest (cached statistics), not the splits; see ``genies.web.index``.
Evaluations are read through one function, ``genies.web.evaluations.read_evaluation``.
"""

from __future__ import annotations

from genies.web.server import ServeError, serve


def create_app(*args, **kwargs):  # noqa: ANN002, ANN003 - thin lazy re-export
    """See ``genies.web.app.create_app`` (imported lazily: starlette is only needed to serve)."""
    from genies.web.app import create_app as _create

    return _create(*args, **kwargs)


__all__ = ["ServeError", "create_app", "serve"]
