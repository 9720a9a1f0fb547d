"""The rules a GENIES split must satisfy, reported as a list of problems instead of raised.

Reporting every problem at once (file, example index, reason) lets ``genies data validate`` show a
whole broken file in one go; loaders and the importer turn the first problem into a one-line error.

Record rules follow upstream-reference §1.3 in its recommended variant: a non-empty string
``prompt``, a non-empty ``responses`` object whose scores are the numbers 0 or 1, exactly one 1 and
at least one 0 (response counts may vary). On top of that, two distribution-level checks:

* *degenerate prompts* (an error): most examples of a split share one very short prompt, i.e. the
  prompt lost its content (``commonsense_qa``, whose 850 prompts are all ``"B"``);
* train/test overlap (warnings, upstream-reference §5.16): test examples that duplicate a train
  example exactly (``ranking_logic_easy``: 105), or reuse a train prompt with other responses.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

SPLITS = ("train", "test")
# A shared prompt shorter than this cannot state a task; longer shared prompts are a legitimate design
# (biology_with_literary_style asks one question 850 times and varies only the responses' style).
DEGENERATE_PROMPT_CHARS = 16

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Problem:
    """One broken rule: where (file, example index or None for the whole file) and why."""

    file: str
    index: int | None
    reason: str
    severity: Severity = "error"

    def __str__(self) -> str:
        where = self.file or "<records>"
        if self.index is not None:
            where += f": example {self.index}"
        return f"{where}: {self.reason}"

    def brief(self) -> str:
        """The reason, prefixed by the split file's name when it concerns one (for tables)."""
        name = Path(self.file).name
        at = f" example {self.index}" if self.index is not None else ""
        return f"{name}{at}: {self.reason}" if name.endswith(".json") else self.reason


def summarize(problems: Sequence[Problem], *, brief: bool = False) -> str:
    """The first problem and how many more there are, for one-line messages."""
    first = problems[0].brief() if brief else str(problems[0])
    return first + (f" (+{len(problems) - 1} more)" if len(problems) > 1 else "")


def _kind(value: Any) -> str:
    """JSON's name for a Python value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def short(text: str, limit: int = 40) -> str:
    """repr() of a dataset string, cut to ``limit`` characters, for one-line messages."""
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def _record_reasons(rec: Any) -> list[str]:
    if not isinstance(rec, dict):
        return [f"an example must be a JSON object, not {_kind(rec)}"]
    reasons = []
    if "prompt" not in rec:
        reasons.append("missing 'prompt'")
    elif not isinstance(rec["prompt"], str):
        reasons.append(f"'prompt' must be a string, not {_kind(rec['prompt'])}")
    elif not rec["prompt"].strip():
        reasons.append("'prompt' is empty")
    responses = rec.get("responses")
    if "responses" not in rec:
        reasons.append("missing 'responses'")
    elif not isinstance(responses, dict):
        reasons.append(
            f"'responses' must be an object mapping response text to score, not {_kind(responses)}"
        )
    elif not responses:
        reasons.append("'responses' is empty")
    else:
        reasons.extend(_score_reasons(responses))
    return reasons


def _score_reasons(responses: dict) -> list[str]:
    for text, score in responses.items():
        if isinstance(score, bool) or not isinstance(score, (int, float)):
            return [
                f"score of response {short(text)} is {_kind(score)} ({json.dumps(score)}); scores must be 0 or 1"
            ]
        if score not in (0, 1):
            return [f"score {score!r} of response {short(text)} is not 0 or 1"]
    ones = sum(1 for s in responses.values() if s == 1)
    if ones == 0:
        return ["no preferred response (no score 1)"]
    if ones > 1:
        return [f"{ones} responses have score 1; exactly one must be preferred"]
    if ones == len(responses):
        return ["no dispreferred response (no score 0)"]
    return []


def validate_records(records: Any, file: str = "") -> list[Problem]:
    """Check parsed JSON ``records`` (one split) against the record rules; [] means valid."""
    if not isinstance(records, list):
        return [Problem(file, None, f"a split must be a JSON list of examples, not {_kind(records)}")]
    if not records:
        return [Problem(file, None, "empty split (no examples)")]
    return [Problem(file, i, reason) for i, rec in enumerate(records) for reason in _record_reasons(rec)]


def check_prompts(records: Sequence[dict], file: str = "") -> list[Problem]:
    """Distribution-level prompt check of a valid split (see DEGENERATE_PROMPT_CHARS)."""
    if not records:
        return []
    prompt, n = Counter(r["prompt"] for r in records).most_common(1)[0]
    if n < 2 or 2 * n <= len(records):
        return []
    if len(prompt.strip()) < DEGENERATE_PROMPT_CHARS:
        reason = f"degenerate prompts: {n}/{len(records)} examples share the prompt {short(prompt)}"
        return [Problem(file, None, reason)]
    return [Problem(file, None, f"{n}/{len(records)} examples share one prompt", "warning")]


def _example_key(rec: dict) -> tuple:
    return rec["prompt"], tuple(sorted((str(t), float(s)) for t, s in rec["responses"].items()))


def overlap_counts(train: Sequence[dict], test: Sequence[dict]) -> tuple[int, int]:
    """(test examples that duplicate a train example, further test examples reusing a train prompt)."""
    train_keys = {_example_key(r) for r in train}
    train_prompts = {r["prompt"] for r in train}
    exact = shared = 0
    for rec in test:
        if _example_key(rec) in train_keys:
            exact += 1
        elif rec["prompt"] in train_prompts:
            shared += 1
    return exact, shared


def read_json(path: Path, label: str | None = None) -> tuple[Any, Problem | None]:
    """Parse a JSON file; a missing, unreadable or malformed file becomes a Problem."""
    label = str(path) if label is None else label
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None, Problem(label, None, "file not found")
    except IsADirectoryError:
        return None, Problem(label, None, "is a folder, not a JSON file")
    except OSError as exc:
        return None, Problem(label, None, f"cannot read: {exc.strerror or exc}")
    try:
        return json.loads(data), None
    except json.JSONDecodeError as exc:
        return None, Problem(label, None, f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}")
    except (UnicodeDecodeError, RecursionError) as exc:
        return None, Problem(label, None, f"invalid JSON: {type(exc).__name__}")


def check_split_file(path: Path, label: str | None = None) -> tuple[list | None, list[Problem]]:
    """Read and check one split file: (records if valid else None, problems incl. warnings)."""
    label = str(path) if label is None else label
    records, problem = read_json(path, label)
    if problem is not None:
        return None, [problem]
    problems = validate_records(records, label)
    if problems:
        return None, problems
    return records, check_prompts(records, label)


@dataclass
class DistributionReport:
    """Everything the rules say about one distribution folder.

    ``errors``: the files break the record rules (unusable). ``sanity``: the files parse but the
    distribution is meaningless (degenerate prompts). Warnings never make it invalid: those about
    one split (``split_warnings``) and the train/test ``overlap`` counts (see ``overlap_counts``).
    ``records`` holds the parsed splits when there are no ``errors``.
    """

    id: str
    path: Path
    label: str
    records: dict[str, list] = field(default_factory=dict, repr=False)
    errors: list[Problem] = field(default_factory=list)
    sanity: list[Problem] = field(default_factory=list)
    split_warnings: list[Problem] = field(default_factory=list)
    overlap: tuple[int, int] | None = None

    @property
    def warnings(self) -> list[Problem]:
        found = list(self.split_warnings)
        if self.overlap is not None:
            exact, shared = self.overlap
            n = len(self.records["test"])
            if exact:
                found.append(
                    Problem(
                        self.label, None, f"{exact}/{n} test examples duplicate a train example", "warning"
                    )
                )
            if shared:
                reason = f"{shared}/{n} further test examples reuse a train prompt (other responses)"
                found.append(Problem(self.label, None, reason, "warning"))
        return found

    @property
    def problems(self) -> list[Problem]:
        return self.errors + self.sanity + self.warnings

    @property
    def status(self) -> str:
        """``ok`` or ``invalid: <first reason>`` (with the number of further problems)."""
        bad = self.errors + self.sanity
        return f"invalid: {summarize(bad, brief=True)}" if bad else "ok"


def check_distribution(path: Path, label: str | None = None) -> DistributionReport:
    """Check a distribution folder (``train.json`` and ``test.json``; other files are ignored).

    ``label`` replaces the folder path in problem messages (e.g. ``distributions/<id>`` during an
    import, where the real path is a temporary folder).
    """
    path = Path(path)
    report = DistributionReport(path.name, path, str(path) if label is None else label)
    for split in SPLITS:
        records, problems = check_split_file(path / f"{split}.json", f"{report.label}/{split}.json")
        for p in problems:
            if p.severity == "warning":
                report.split_warnings.append(p)
            elif records is None:
                report.errors.append(p)
            else:
                report.sanity.append(p)
        if records is not None:
            report.records[split] = records
    if report.errors:
        report.records.clear()
    else:
        report.overlap = overlap_counts(report.records["train"], report.records["test"])
    return report
