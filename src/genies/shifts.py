"""The GENIES distribution shifts and the suites that group them.

A *shift* trains on ``source``, measures generalization on ``target``'s test split, and takes the
target-tuned capability from ``target_reference`` (= ``target`` unless stated). The registry below is
written as facts from the upstream shift lists (upstream-reference §2); a test checks it against the
upstream JSON files, which are never copied into this package.

Suites:

* ``genies`` – the 15-shift GENIES benchmark, in ``GENIES.json`` order;
* ``all`` – the 56 unique shifts, in first-occurrence order of ``all.json``;
* ``all-paper`` – the 69 rows of ``all.json`` verbatim: the 13 unwanted_personas shifts appear twice,
  exactly like the rows of the paper's ``all.csv`` tables (use it only to compare with them);
* ``test`` – one smoke-test shift (``test.json``);
* ``synthetic`` – the generated suite of small analogies with planted causes (``synth_*`` ids, made
  by ``genies data synth``; see ``genies.data.synthetic``), one shift per category but
  pretraining_similarity;
* ``extreme`` / ``probing`` – the unique shifts of each group;
* each of the 8 category names;
* or the path of a JSON file in the upstream format (a list of ``{"source", "target"[,
  "target_reference"][, "label"][, "category"]}`` objects).

``category`` and ``group`` always come from the category files (the folder gives the group). The one
place the upstream disagrees with itself is ``alpaca_short -> alpaca_long``: its category file is
under ``probing/`` but ``GENIES.json`` labels it ``"extreme"``. We keep ``group="probing"`` and expose
the upstream label unchanged as ``Shift.label`` (upstream-reference §5.1), so tables that follow the
paper's GENIES labelling can still do so explicitly.
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from genies.errors import DataError, UnknownNameError

GROUPS: tuple[str, ...] = ("extreme", "probing")

# Category -> shifts, each (source, target) or (source, target, target_reference), in the order of the
# upstream category file ``<group>/<category>.json``.
_Row = tuple[str, ...]
_EXTREME: dict[str, tuple[_Row, ...]] = {
    "context": (
        ("us_history", "us_history_textbook"),
        ("us_history_textbook", "us_history_fiction"),
        ("us_history_fiction", "us_history_make_questions"),
        ("us_history_make_questions", "us_history"),
        ("math", "math_fiction"),
        ("math_fiction", "math_textbook"),
        ("math_textbook", "math_make_questions"),
        ("math_make_questions", "math"),
    ),
    "difficulty": (
        ("alpaca_easy", "alpaca_hard"),
        ("arc_easy", "arc_hard"),
        ("math_easy", "math_hard"),
        ("code_easy", "code_hard"),
        ("ranking_logic_easy", "ranking_logic_hard"),
        ("raven_easy", "raven_matrices"),
    ),
    "encoding": (
        ("alpaca_mmlu", "spanish_input"),
        ("alpaca_mmlu", "spanish_output"),
        ("alpaca_mmlu", "comma_separated_input"),
        ("alpaca_mmlu", "comma_separated_output"),
    ),
    "pretraining_similarity": (
        ("alpaca_mmlu", "ranking_logic"),
        ("alpaca_mmlu", "raven_matrices"),
        ("alpaca_mmlu", "word_swap"),
        ("code", "counterfactual_python"),
    ),
    "quality": (
        ("alpaca_low_quality", "alpaca_high_quality"),
        ("shp_low_quality", "shp_high_quality"),
        ("code_low_quality", "code"),
    ),
    "skill": (
        ("code", "us_history"),
        ("code", "change_my_view"),
        ("cooking", "math"),
        ("cooking", "raven_matrices"),
        ("math", "change_my_view"),
        ("math", "cooking"),
        ("change_my_view", "raven_matrices"),
        ("change_my_view", "cooking"),
        ("raven_matrices", "us_history"),
        ("raven_matrices", "code"),
        ("us_history", "math"),
        ("us_history", "code"),
    ),
}
_PROBING: dict[str, tuple[_Row, ...]] = {
    "spurious_cues": (
        ("pursue_goals", "relinquish_power"),
        ("creative_writing", "biology_with_literary_style"),
        ("alpaca_short", "alpaca_long", "alpaca_mmlu"),
        ("alpaca_chat", "illegal_dont_help"),
        ("alpaca_mmlu", "wrong_arc"),
        ("alpaca_mmlu", "unhelpful_alpaca"),
    ),
    "unwanted_personas": (
        ("alpaca_mmlu", "truthful_qa"),
        ("alpaca_mmlu", "personality_traits"),
        ("alpaca_mmlu", "survival_influence"),
        ("alpaca_mmlu", "gender_bias"),
        ("alpaca_mmlu", "punishment_avoidance"),
        ("alpaca_mmlu", "reward_seeking"),
        ("alpaca_mmlu", "crt_1"),
        ("alpaca_mmlu", "crt_2"),
        ("alpaca_mmlu", "crt_3"),
        ("alpaca_mmlu", "sycophancy_mimicry", "quote_attribution"),
        ("alpaca_mmlu", "sycophancy_answer", "arc_easy"),
        ("alpaca_mmlu", "sycophancy_feedback", "code_is_correct"),
        ("alpaca_chat", "sycophancy_are_you_sure", "arc_easy"),
    ),
}

CATEGORIES: tuple[str, ...] = tuple(sorted(_EXTREME)) + tuple(sorted(_PROBING))
CATEGORY_GROUP: dict[str, str] = {c: "extreme" for c in _EXTREME} | {c: "probing" for c in _PROBING}

#: What each category tests, in a sentence or two (after the paper, §3, and the shifts listed above).
#: Shown by ``genies browse`` on shift pages; plain text.
CATEGORY_EXPLANATIONS: dict[str, str] = {
    "context": (
        "The same kind of questions asked in another setting: US history or math posed plainly, inside "
        "a textbook passage, inside a piece of fiction, or as a request to write questions. Does "
        "preference learned in one framing carry over when only the surrounding context changes?"
    ),
    "difficulty": (
        "Train on easy examples, test on hard ones (alpaca, ARC, math, code, ranking logic, Raven "
        "matrices). This is the scalable-oversight case: humans can label easy problems reliably, and "
        "we want the reward model to stay right where labels get hard to check."
    ),
    "encoding": (
        "The same instructions and answers in another surface form: translated into Spanish or written "
        "as comma-separated words, in the prompt (input) or in the responses (output). The content "
        "stays; only its encoding changes."
    ),
    "pretraining_similarity": (
        "Targets that look little like the pretraining data: ranking-logic puzzles, Raven matrices "
        "written out as text, words with swapped meanings, Python with counterfactual semantics. Tests "
        "generalization to tasks the base model has rarely seen."
    ),
    "quality": (
        "Train to tell bad responses from mediocre ones, test on telling good responses from better "
        "ones (alpaca, SHP, code). Can a reward model trained where quality differences are obvious "
        "rank responses above the quality it was trained on?"
    ),
    "skill": (
        "Train on one skill, test on an unrelated one: code, math, cooking, US history, arguing a view "
        "(change_my_view), Raven matrices. Does a notion of 'the better response' transfer across "
        "domains?"
    ),
    "spurious_cues": (
        "In the source a surface feature goes with the preferred response (length, chat style, a "
        "literary style, a goal-pursuing persona, plain helpfulness); the target breaks that link, e.g. "
        "short → long answers, or instructions that ask for a wrong or unhelpful answer. A model that "
        "learned the cue instead of the intent fails."
    ),
    "unwanted_personas": (
        "Targets where the preferred response follows the instruction and the other one imitates an "
        "unwanted persona found in human text: sycophancy, common misconceptions (TruthfulQA), "
        "intuitive-but-wrong answers (cognitive reflection tests), reward seeking, influence seeking, "
        "gender bias. Does the model learn 'answer well' rather than 'answer as a person would'?"
    ),
}

# all.json = extreme/all.json followed by probing/all.json. extreme/all.json concatenates its category
# files in this order; probing/all.json is unwanted_personas, spurious_cues, then unwanted_personas
# again with survival_influence and gender_bias swapped (_REPEATED_PERSONAS gives that second order).
_EXTREME_PAPER_ORDER = ("difficulty", "encoding", "pretraining_similarity", "skill", "context", "quality")
_PROBING_PAPER_ORDER = ("unwanted_personas", "spurious_cues")
_REPEATED_PERSONAS = (
    "truthful_qa",
    "personality_traits",
    "gender_bias",
    "survival_influence",
    "punishment_avoidance",
    "reward_seeking",
    "crt_1",
    "crt_2",
    "crt_3",
    "sycophancy_mimicry",
    "sycophancy_answer",
    "sycophancy_feedback",
    "sycophancy_are_you_sure",
)

# GENIES.json: (source, target) in its order. Its label equals the group except for the override below.
_GENIES: tuple[tuple[str, str], ...] = (
    ("us_history_textbook", "us_history_fiction"),
    ("alpaca_mmlu", "spanish_output"),
    ("math", "change_my_view"),
    ("raven_matrices", "us_history"),
    ("code_easy", "code_hard"),
    ("alpaca_easy", "alpaca_hard"),
    ("alpaca_mmlu", "raven_matrices"),
    ("alpaca_mmlu", "ranking_logic"),
    ("alpaca_low_quality", "alpaca_high_quality"),
    ("alpaca_short", "alpaca_long"),
    ("alpaca_mmlu", "wrong_arc"),
    ("alpaca_mmlu", "truthful_qa"),
    ("alpaca_mmlu", "sycophancy_mimicry"),
    ("alpaca_mmlu", "survival_influence"),
    ("alpaca_mmlu", "reward_seeking"),
)
# Upstream inconsistency kept visible (see module docstring): group "probing", GENIES label "extreme".
_GENIES_LABEL_OVERRIDES: dict[tuple[str, str], str] = {("alpaca_short", "alpaca_long"): "extreme"}
_TEST: tuple[tuple[str, str], ...] = (("us_history_textbook", "us_history_fiction"),)

# The generated suite (genies.data.synthetic writes its distributions): (source, target, category); the
# group follows the category. Ids start with "synth_", so they never collide with the official ones.
_SYNTHETIC: tuple[tuple[str, str, str], ...] = (
    ("synth_add_1digit", "synth_add_3digit", "difficulty"),
    ("synth_add_1digit", "synth_add_words", "encoding"),
    ("synth_add_1digit", "synth_facts", "skill"),
    ("synth_facts", "synth_facts_fiction", "context"),
    ("synth_quality_low", "synth_quality_high", "quality"),
    ("synth_shorter_correct", "synth_longer_correct", "spurious_cues"),
    ("synth_confident_correct", "synth_expert_wrong", "unwanted_personas"),
)

CUSTOM_CATEGORY = "custom"
_FILE_KEYS = ("source", "target", "target_reference", "label", "category", "group")


@dataclass(frozen=True)
class Shift:
    """One source → target shift.

    ``target_reference`` is the distribution the target-tuned capability is trained and evaluated on;
    it defaults to ``target`` (pass ``None``), so it is always a string after construction.
    ``label`` is the upstream suite file's own ``label`` field where it has one (GENIES.json,
    test.json); it does not take part in equality, since it describes the listing, not the shift.
    """

    source: str
    target: str
    target_reference: str | None = None
    category: str = CUSTOM_CATEGORY
    group: str | None = None
    label: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.target_reference is None:
            object.__setattr__(self, "target_reference", self.target)

    @property
    def reference(self) -> str:
        """``target_reference`` typed as ``str`` (never ``None`` after construction)."""
        return self.target_reference or self.target

    @property
    def key(self) -> tuple[str, str, str]:
        """(source, target, target_reference): what makes two shifts the same experiment."""
        return (self.source, self.target, self.reference)

    @property
    def id(self) -> str:
        """Stable string key: ``source->target``, plus ``@reference`` when it differs from the target."""
        base = f"{self.source}->{self.target}"
        return base if self.reference == self.target else f"{base}@{self.reference}"

    @property
    def distributions(self) -> tuple[str, ...]:
        """The distinct distribution ids the shift needs, in (source, target, reference) order."""
        return tuple(dict.fromkeys(self.key))

    def to_json(self) -> dict[str, str | None]:
        """Upstream-format object (plus category/group); ``get_suite`` reads it back unchanged."""
        return {
            "source": self.source,
            "target": self.target,
            "target_reference": self.reference,
            "category": self.category,
            "group": self.group,
            "label": self.label,
        }


def _category_shifts(category: str) -> list[Shift]:
    group = CATEGORY_GROUP[category]
    rows = (_EXTREME if group == "extreme" else _PROBING)[category]
    return [Shift(*row[:2], row[2] if len(row) > 2 else None, category, group) for row in rows]


def _synthetic_shifts() -> list[Shift]:
    return [Shift(src, tgt, None, cat, CATEGORY_GROUP[cat]) for src, tgt, cat in _SYNTHETIC]


_BY_PAIR: dict[tuple[str, str], Shift] = {
    (s.source, s.target): s for c in CATEGORIES for s in _category_shifts(c)
} | {(s.source, s.target): s for s in _synthetic_shifts()}


def find_shift(source: str, target: str) -> Shift | None:
    """The registry's shift ``source -> target`` (with its reference, category, group), if any."""
    return _BY_PAIR.get((source, target))


def unique_shifts(shifts: Iterable[Shift]) -> list[Shift]:
    """Drop repeated (source, target, target_reference), keeping the first occurrence's position."""
    seen: set[tuple[str, str, str]] = set()
    out: list[Shift] = []
    for s in shifts:
        if s.key not in seen:
            seen.add(s.key)
            out.append(s)
    return out


def involved_distributions(shifts: Iterable[Shift]) -> list[str]:
    """Every distribution id the shifts need (sources, targets, references), first-seen order."""
    return list(dict.fromkeys(d for s in shifts for d in s.distributions))


def _paper_rows() -> list[Shift]:
    rows = [s for c in _EXTREME_PAPER_ORDER + _PROBING_PAPER_ORDER for s in _category_shifts(c)]
    personas = {s.target: s for s in _category_shifts("unwanted_personas")}
    return rows + [personas[t] for t in _REPEATED_PERSONAS]


def _labelled(pairs: Sequence[tuple[str, str]]) -> list[Shift]:
    out = []
    for pair in pairs:
        s = _BY_PAIR[pair]
        label = _GENIES_LABEL_OVERRIDES.get(pair, s.group)
        out.append(Shift(s.source, s.target, s.target_reference, s.category, s.group, label))
    return out


def _builtin_suites() -> dict[str, tuple[str, Callable[[], list[Shift]]]]:
    """name -> (description, builder); builders are cheap, so suites are rebuilt on every call."""
    suites: dict[str, tuple[str, Callable[[], list[Shift]]]] = {
        "genies": ("the GENIES benchmark (GENIES.json)", lambda: _labelled(_GENIES)),
        "all": (
            "every unique shift (all.json without its duplicate rows)",
            lambda: unique_shifts(_paper_rows()),
        ),
        "all-paper": (
            "all.json verbatim, unwanted_personas twice, as in the paper's all.csv tables",
            _paper_rows,
        ),
        "test": ("one-shift smoke test (test.json)", lambda: _labelled(_TEST)),
        "extreme": (
            "the extreme group (extreme/all.json)",
            lambda: [s for s in unique_shifts(_paper_rows()) if s.group == "extreme"],
        ),
        "probing": (
            "the probing group (probing/all.json without its duplicate rows)",
            lambda: [s for s in unique_shifts(_paper_rows()) if s.group == "probing"],
        ),
    }
    for c in CATEGORIES:
        suites[c] = (
            f"{CATEGORY_GROUP[c]} category {c} ({CATEGORY_GROUP[c]}/{c}.json)",
            lambda c=c: _category_shifts(c),
        )
    suites["synthetic"] = (
        "generated analogies with planted causes (`genies data synth` writes them)",
        _synthetic_shifts,
    )
    return suites


def list_suites() -> list[str]:
    """Built-in suite names: genies, all, all-paper, test, extreme, probing, the categories, synthetic."""
    return list(_builtin_suites())


def describe_suite(name: str) -> str:
    """One-line description of a built-in suite."""
    suites = _builtin_suites()
    if name not in suites:
        raise UnknownNameError("suite", name, suites)
    return suites[name][0]


def _looks_like_path(name: str) -> bool:
    return name.lower().endswith(".json") or os.sep in name or "/" in name or Path(name).is_file()


def get_suite(
    name_or_path: str | os.PathLike[str],
    data_dir: str | os.PathLike[str] | None = None,
    check_data: bool = False,
) -> list[Shift]:
    """The shifts of a built-in suite (case-insensitive name) or of a JSON shift file.

    With ``check_data`` every source, target and reference must exist in the data store
    (``data_dir`` or the default one); otherwise an ``UnknownNameError`` names the first one missing.
    """
    name = os.fspath(name_or_path)
    suites = _builtin_suites()
    key = name.lower()
    if key in suites:
        shifts = suites[key][1]()
        where = f"suite {key!r}"
    elif _looks_like_path(name):
        shifts = load_suite_file(name)
        where = f"suite file {name}"
    else:
        raise UnknownNameError("suite", name, suites, hint="or give the path of a JSON shift file")
    if check_data:
        check_distributions(shifts, data_dir, where=where)
    return shifts


def load_suite_file(path: str | os.PathLike[str]) -> list[Shift]:
    """Read a shift list in the upstream JSON format; ``DataError`` (one line) if it is malformed."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError(f"suite file not found: {p}")
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read suite file {p}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"suite file {p} is not valid JSON: {exc.msg} at line {exc.lineno}") from None
    if not isinstance(raw, list):
        raise DataError(f"suite file {p} must hold a JSON list of shifts, not a {type(raw).__name__}")
    if not raw:
        raise DataError(f"suite file {p} lists no shifts")
    return [_shift_from_entry(entry, f"suite file {p}, entry {i}") for i, entry in enumerate(raw)]


def _closest(name: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else f" (allowed: {', '.join(choices)})"


def _shift_from_entry(entry: object, where: str) -> Shift:
    if not isinstance(entry, dict):
        raise DataError(f"{where}: expected an object with source and target, got {type(entry).__name__}")
    for k in entry:
        if k not in _FILE_KEYS:
            raise DataError(f"{where}: unknown key {k!r}{_closest(str(k), _FILE_KEYS)}")
    values: dict[str, str] = {}
    for k in _FILE_KEYS:
        v = entry.get(k)
        if v is None:
            continue
        if not isinstance(v, str) or not v.strip():
            raise DataError(f"{where}: {k!r} must be a non-empty string, got {v!r}")
        values[k] = v
    for k in ("source", "target"):
        if k not in values:
            raise DataError(f"{where}: missing {k!r}")
    source, target = values["source"], values["target"]
    reference, label = values.get("target_reference"), values.get("label")
    known = find_shift(source, target)
    if known is not None:
        for k in ("category", "group"):
            given, fact = values.get(k), getattr(known, k)
            if given is not None and given != fact:
                raise DataError(f"{where}: {source}->{target} belongs to {k} {fact!r}, not {given!r}")
        return Shift(source, target, reference, known.category, known.group, label)
    category = values.get("category", CUSTOM_CATEGORY)
    group = values.get("group") or CATEGORY_GROUP.get(category)
    if group is not None and group not in GROUPS:
        raise DataError(f"{where}: unknown group {group!r}{_closest(group, GROUPS)}")
    if category in CATEGORY_GROUP and group != CATEGORY_GROUP[category]:
        raise DataError(
            f"{where}: category {category!r} belongs to group {CATEGORY_GROUP[category]!r}, not {group!r}"
        )
    return Shift(source, target, reference, category, group, label)


def _store_ids(data_dir: str | os.PathLike[str] | None) -> list[str]:
    """Distribution ids present in the data store: the folders ``<data_dir>/distributions/<id>/``."""
    from genies.data.loading import check_data_dir

    root = check_data_dir(data_dir)  # a file where the store belongs is an error, not an empty store
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def check_distributions(
    shifts: Iterable[Shift], data_dir: str | os.PathLike[str] | None = None, *, where: str = "suite"
) -> None:
    """Fail on the first distribution the shifts name that is not in the data store.

    An id containing a path separator is taken as a distribution folder (like ``load_distribution``)
    and only has to exist as a directory.
    """
    from genies.paths import data_dir as resolve_data_dir

    shifts = list(shifts)
    known = set(_store_ids(data_dir))
    if not known:
        raise DataError(
            f"no distributions in the data store {resolve_data_dir(data_dir)}",
            hint="import them first with `genies data import`",
        )
    for s in shifts:
        for d in s.distributions:
            if d in known or ((os.sep in d or "/" in d) and Path(d).expanduser().is_dir()):
                continue
            raise UnknownNameError("distribution", d, known, hint=f"{where}, shift {s.id}")
