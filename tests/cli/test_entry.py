"""The CLI's entry: one-line usage errors, Ctrl-C at any point, output on any terminal encoding."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

import genies.shifts
from genies.cli import INTERRUPTED, main
from genies.cli._console import FALLBACK_ERRORS, make_console, safe_output_streams


def _err_lines(capsys) -> list[str]:
    return [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--bogus"], "error: No such option: --bogus (see 'genies --help')"),
        (["run", "-i", "zero_shot", "--limit", "x"], "Invalid value for '--limit' / '-n'"),
        (["data", "show"], "error: Missing argument 'distribution'. (see 'genies data show --help')"),
        (["shifts", "suites", "extra"], "unexpected extra argument(s) (extra)"),
    ],
)
def test_usage_errors_are_one_line(argv, says, capsys):
    assert main(argv) == 2
    (line,) = _err_lines(capsys)
    assert line.startswith("error: ") and says in line


def test_a_bare_group_shows_its_help(capsys):
    assert main(["data"]) == 2  # click's convention for no_args_is_help
    cap = capsys.readouterr()
    assert "Usage: genies data" in cap.out and "import" in cap.out
    assert "Traceback" not in cap.out + cap.err and not cap.err.strip()


def test_ctrl_c_inside_a_command_says_so(monkeypatch, capsys):
    # typer turns a KeyboardInterrupt inside a command into a silent exit 130: main names it.
    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(genies.shifts, "list_suites", interrupted)
    assert main(["shifts", "suites"]) == 130
    assert _err_lines(capsys) == [INTERRUPTED]


def test_main_restores_the_callers_sigint_handler():
    import signal

    def mine(signum, frame):  # pragma: no cover - never called
        pass

    previous = signal.signal(signal.SIGINT, mine)
    try:
        main(["shifts", "suites", "--json"])
        assert signal.getsignal(signal.SIGINT) is mine
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_closed_pipe_is_quiet():
    # `genies shifts list | head -1`: the reader is gone before genies writes; no BrokenPipeError.
    import os

    read_end, write_end = os.pipe()
    os.close(read_end)  # every write to write_end now fails with EPIPE
    try:
        proc = subprocess.run(
            [sys.executable, "-c", "import sys, _genies_entry; sys.exit(_genies_entry.main())",
             "shifts", "list", "--suite", "all-paper"],
            stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120, check=False,
        )  # fmt: skip
    finally:
        os.close(write_end)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr
    assert not proc.stderr.strip(), proc.stderr


# ------------------------------------------------------------------------------------------- encodings


def _stream(encoding: str, errors: str = "strict") -> io.TextIOWrapper:
    return io.TextIOWrapper(io.BytesIO(), encoding=encoding, errors=errors, write_through=True)


def test_fallback_keeps_widths_and_meaning(monkeypatch):
    out = _stream("ascii")
    monkeypatch.setattr(sys, "stdout", out)
    safe_output_streams()
    assert out.errors == FALLBACK_ERRORS
    out.write("crt_1 → crt_2 — 0.72 (0.60…0.84) ✓ café 中 x\u0301\n")
    assert out.buffer.getvalue() == b"crt_1 > crt_2 - 0.72 (0.60.0.84) + cafe ?? x\n"


def test_latin1_keeps_what_it_can_encode(monkeypatch):
    out = _stream("latin-1")
    monkeypatch.setattr(sys, "stdout", out)
    safe_output_streams()
    out.write("café · → ✗\n")
    assert out.buffer.getvalue() == "café · > x\n".encode("latin-1")


@pytest.mark.parametrize(("encoding", "errors"), [("utf-8", "strict"), ("ascii", "replace")])
def test_streams_that_cannot_fail_are_left_alone(encoding, errors, monkeypatch):
    out = _stream(encoding, errors)
    monkeypatch.setattr(sys, "stdout", out)
    safe_output_streams()
    assert out.errors == errors  # UTF-8 needs nothing; a policy the user chose is kept


def test_columns_wins_over_the_piped_width(monkeypatch):
    monkeypatch.setenv("COLUMNS", "40")
    assert make_console(piped_width=200).width == 40
    monkeypatch.delenv("COLUMNS")
    assert make_console(piped_width=200).width >= 200  # piped (pytest captures): wide and greppable
