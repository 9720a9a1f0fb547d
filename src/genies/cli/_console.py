"""Rich consoles shared by every command, and output that survives any terminal encoding."""

from __future__ import annotations

import codecs
import os
import sys
import unicodedata
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

#: The error handler ``safe_output_streams`` installs on stdout/stderr when they cannot encode text.
FALLBACK_ERRORS = "genies-fallback"
#: ASCII stand-ins of the symbols genies prints, each as wide as the symbol (tables stay aligned).
_FALLBACK = {
    "—": "-",
    "–": "-",
    "→": ">",
    "←": "<",
    "…": ".",
    "✓": "+",
    "✗": "x",
    "·": ".",
    "≈": "~",
    "≥": ">",
    "≤": "<",
    "×": "x",
    "•": "*",
    "’": "'",
    "‘": "'",
    "“": '"',
    "”": '"',
}
_PROBE = "".join(_FALLBACK)


def _fallback(exc: UnicodeError) -> tuple[str, int]:
    """Codec error handler: a same-width ASCII stand-in for each character the encoding lacks.

    Known symbols get their stand-in, accented letters their base letter (``é`` → ``e``), combining
    marks nothing, wide (CJK) characters ``??`` and anything else ``?``: text stays readable and
    rich's column widths, computed on the original text, stay right.
    """
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    out = []
    for ch in exc.object[exc.start : exc.end]:
        rep = _FALLBACK.get(ch)
        if rep is None:
            width = (
                0 if unicodedata.combining(ch) else 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
            )
            base = unicodedata.normalize("NFKD", ch).encode("ascii", "ignore").decode("ascii")
            rep = base if len(base) == width else "?" * width
        out.append(rep)
    return "".join(out), exc.end


codecs.register_error(FALLBACK_ERRORS, _fallback)


def _cannot_encode(stream: object) -> bool:
    encoding = getattr(stream, "encoding", None)
    # Python gives a C/POSIX locale's streams "surrogateescape", which fails on '—' like "strict";
    # any other policy was chosen by the user (PYTHONIOENCODING=…:replace) and is kept.
    if not encoding or getattr(stream, "errors", "strict") not in ("strict", "surrogateescape"):
        return False
    try:
        _PROBE.encode(encoding)
    except UnicodeEncodeError:
        return True
    except LookupError:
        return False
    return False


def safe_output_streams() -> None:
    """Make stdout and stderr unable to fail on a character (``LC_ALL=C``, ``PYTHONIOENCODING=latin-1``).

    Where the stream's encoding cannot represent genies' symbols, its error policy becomes the
    same-width ASCII fallback above; UTF-8 streams are left as they are.
    """
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None and _cannot_encode(stream):
            try:
                stream.flush()
                reconfigure(errors=FALLBACK_ERRORS)
            except (OSError, ValueError):  # a closed or detached stream: nothing to protect
                pass


def make_console(stderr: bool = False, piped_width: int = 160) -> Console:
    """A console that, when piped, is at least ``piped_width`` wide so ids are never folded (greppable).

    An explicit ``COLUMNS`` in the environment wins, piped or not (``COLUMNS=40 genies … | less``).
    """
    from rich.console import Console

    out = Console(stderr=stderr, highlight=False)
    if out.is_terminal or os.environ.get("COLUMNS", "").strip().isdigit():
        return out
    return Console(stderr=stderr, highlight=False, width=max(out.width, piped_width))
