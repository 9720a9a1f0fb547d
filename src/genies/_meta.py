"""The package's version (from its installed metadata) and the software versions records carry.

Lower modules import this instead of the package root (``import genies`` pulls in the whole public
API); the root re-exports ``__version__`` from here.
"""

from __future__ import annotations

import functools
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


def package_version() -> str:
    """genies' version as installed (pyproject's ``version``); ``0+unknown`` when not installed."""
    try:
        return version("genies")
    except PackageNotFoundError:  # pragma: no cover - running from a bare source tree
        return "0+unknown"


__version__ = package_version()


def _git_commit() -> str:
    """The commit of genies' own checkout, or ``unknown`` (not a checkout, no git)."""
    pkg = Path(__file__).resolve().parent
    try:
        top, head = subprocess.run(
            ["git", "rev-parse", "--show-toplevel", "HEAD"],
            cwd=pkg,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.split()
    except (OSError, ValueError, subprocess.SubprocessError):
        return "unknown"
    # Only genies' own checkout counts (not, say, a user's repository around a virtualenv).
    return head if (Path(top) / "src" / "genies").resolve() == pkg else "unknown"


@functools.lru_cache(maxsize=1)
def software_versions() -> dict[str, str]:
    """genies, torch and transformers versions and the git commit (computed once per process)."""
    out = {"genies": __version__}
    for pkg in ("torch", "transformers"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    out["git_commit"] = _git_commit()
    return out
