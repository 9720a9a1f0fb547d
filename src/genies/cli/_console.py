"""Rich consoles shared by every command."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console


def make_console(stderr: bool = False, piped_width: int = 160) -> Console:
    """A console that, when piped, is at least ``piped_width`` wide so ids are never folded (greppable)."""
    from rich.console import Console

    out = Console(stderr=stderr, highlight=False)
    return (
        out if out.is_terminal else Console(stderr=stderr, highlight=False, width=max(out.width, piped_width))
    )
