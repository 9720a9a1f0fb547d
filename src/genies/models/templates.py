"""Templates: how a (prompt, response) pair becomes the text a representation method reads.

A template is a plain string with the fields ``{prompt}`` and ``{response}``, each exactly once, in
any order, e.g. upstream's LAT stimulus 2::

    "{prompt}Consider the extent to which the responder follows the instruction below.\\n{response}"
    "\\n\\nThe probability that the responder followed the instruction"

``None`` means ``"{prompt}{response}"``. Templates are JSON-serialisable, so they travel in job-graph
nodes and cache keys. :func:`render` is the one renderer: it substitutes the fields *positionally*
(the template is split at the two fields and the pieces are joined with the data), never with
``str.format``, because prompts and responses hold braces (code, JSON, LaTeX).
"""

from __future__ import annotations

from collections.abc import Sequence

from genies.errors import ConfigError

FIELDS = ("{prompt}", "{response}")
Text = str | tuple[str, str]


def check_template(template: str | None) -> None:
    """Raise a ConfigError unless ``template`` is None or a string with each field exactly once."""
    if template is None:
        return
    if not isinstance(template, str):
        raise ConfigError(f"a template must be a string or None, not {type(template).__name__}")
    for field in FIELDS:
        count = template.count(field)
        if count != 1:
            raise ConfigError(
                f"template {template[:60]!r} has the field {field} {count} times; it needs it exactly once"
            )


def render(template: str | None, prompt: str, response: str) -> str:
    """The text for ``(prompt, response)``: each field replaced by its value, data never re-scanned."""
    if template is None:
        return prompt + response
    check_template(template)
    first = "{prompt}" if template.index("{prompt}") < template.index("{response}") else "{response}"
    second = "{response}" if first == "{prompt}" else "{prompt}"
    head, rest = template.split(first, 1)
    middle, tail = rest.split(second, 1)
    values = {"{prompt}": prompt, "{response}": response}
    return head + values[first] + middle + values[second] + tail


def render_all(texts: Sequence[Text], template: str | None = None) -> list[str]:
    """Render each text: a ``(prompt, response)`` pair through the template, a plain string as is.

    Plain strings are only accepted without a template (a template needs both fields).
    """
    check_template(template)
    out = []
    for i, text in enumerate(texts):
        if isinstance(text, str):
            if template is not None:
                raise ConfigError(
                    f"text {i} is a plain string, but the template needs (prompt, response) pairs"
                )
            out.append(text)
        elif isinstance(text, tuple | list) and len(text) == 2 and all(isinstance(x, str) for x in text):
            out.append(render(template, text[0], text[1]))
        else:
            raise ConfigError(f"text {i} is neither a string nor a (prompt, response) pair of strings")
    return out


def template_key(template: str | None) -> str:
    """A short stable name of a template for cache paths (``plain`` for None)."""
    if template is None:
        return "plain"
    check_template(template)
    from genies.hashing import sha256_text

    return sha256_text(template)[:16]
