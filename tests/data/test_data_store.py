"""Importing into the data store: the official release, safety, atomicity, downloads, listing."""

from __future__ import annotations

import gzip
import http.server
import json
import shutil
import socket
import tarfile
import threading
import time
from pathlib import Path

import pytest
from datakit import dist_files, good_files, make_tar, records, tree_hash, write_tree

from genies.cli import main
from genies.data import import_data, list_distribution_ids, list_distributions
from genies.data.store import read_manifest
from genies.errors import DataError, ValidationError

# upstream-reference §1.7: train, test, responses per example, test pairs (all-pairs mode)
SPEC_TABLE = {
    "alpaca_chat": (600, 250, 4, 750),
    "alpaca_easy": (600, 250, 4, 750),
    "alpaca_hard": (600, 250, 4, 750),
    "alpaca_high_quality": (1800, 750, 2, 750),
    "alpaca_long": (600, 250, 2, 250),
    "alpaca_low_quality": (1800, 750, 2, 750),
    "alpaca_mmlu": (600, 250, 4, 750),
    "alpaca_short": (600, 250, 2, 250),
    "arc_easy": (600, 250, 4, 750),
    "arc_hard": (600, 250, 4, 750),
    "biology_with_literary_style": (600, 250, 4, 750),
    "change_my_view": (600, 250, 2, 250),
    "code": (600, 250, 4, 750),
    "code_easy": (600, 250, 4, 750),
    "code_hard": (600, 250, 4, 750),
    "code_is_correct": (600, 250, 2, 250),
    "code_low_quality": (600, 250, 3, 500),
    "code_with_cooking_style": (600, 250, 4, 750),
    "comma_separated_input": (600, 250, 4, 750),
    "comma_separated_output": (600, 250, 4, 750),
    "commonsense_qa": (600, 250, 4, 750),
    "cooking": (600, 250, 4, 750),
    "counterfactual_python": (600, 250, 4, 750),
    "creative_writing": (600, 250, 3, 500),
    "crt_1": (600, 250, 2, 250),
    "crt_2": (600, 250, 2, 250),
    "crt_3": (600, 250, 2, 250),
    "gender_bias": (600, 250, 3, 500),
    "illegal_dont_help": (595, 246, 3, 492),
    "math": (600, 250, 4, 750),
    "math_easy": (600, 250, 4, 750),
    "math_fiction": (600, 250, 4, 750),
    "math_hard": (598, 250, 4, 750),
    "math_make_questions": (591, 250, 4, 750),
    "math_textbook": (600, 250, 4, 750),
    "modus_tollens": (600, 250, 2, 250),
    "personality_traits": (1200, 500, 2, 500),
    "punishment_avoidance": (1800, 750, 2, 750),
    "pursue_goals": (600, 250, 2, 250),
    "quote_attribution": (600, 250, 2, 250),
    "ranking_logic": (600, 250, 4, 750),
    "ranking_logic_easy": (600, 250, 3, 500),
    "ranking_logic_hard": (600, 250, 4, 750),
    "raven_easy": (600, 250, 4, 750),
    "raven_matrices": (600, 250, 4, 750),
    "relinquish_power": (600, 250, 2, 250),
    "reward_seeking": (1800, 750, 2, 750),
    "shp_high_quality": (600, 250, 2, 250),
    "shp_low_quality": (600, 250, 2, 250),
    "spanish_input": (600, 250, 4, 750),
    "spanish_output": (600, 250, 4, 750),
    "survival_influence": (600, 250, 2, 250),
    "sycophancy_answer": (600, 250, 2, 250),
    "sycophancy_are_you_sure": (600, 250, 2, 250),
    "sycophancy_feedback": (600, 250, 2, 250),
    "sycophancy_mimicry": (600, 250, 2, 250),
    "truthful_alpaca": (1034, 500, 4, 1500),
    "truthful_qa": (434, 250, 4, 750),
    "unhelpful_alpaca": (600, 250, 3, 500),
    "us_history": (600, 250, 4, 750),
    "us_history_exam_questions": (600, 250, 4, 750),
    "us_history_fiction": (585, 250, 4, 750),
    "us_history_make_questions": (600, 250, 4, 750),
    "us_history_textbook": (600, 250, 4, 750),
    "word_swap": (600, 250, 4, 750),
    "wrong_arc": (600, 250, 2, 250),
}
# §1.7 train/test contamination: exact duplicates, and test prompts shared with train (other responses)
SPEC_DUPLICATES = {"ranking_logic_easy": 105, "quote_attribution": 15}
SPEC_SHARED_PROMPTS = {
    "change_my_view": 110,
    "illegal_dont_help": 146,
    "code_with_cooking_style": 214,
    "unhelpful_alpaca": 86,
}


def test_official_release_matches_the_spec_table(data_dir):
    infos = {i.id: i for i in list_distributions(data_dir)}
    assert sorted(infos) == sorted(SPEC_TABLE) == list_distribution_ids(data_dir)
    for dist_id, (train, test, k, pairs) in SPEC_TABLE.items():
        i = infos[dist_id]
        assert (i.train_examples, i.test_examples, i.responses_per_example, i.test_pairs) == (
            train,
            test,
            [k],
            pairs,
        )
    assert sum(i.train_examples for i in infos.values()) == 45_237
    assert sum(i.test_examples for i in infos.values()) == 18_996
    assert sum(i.test_pairs for i in infos.values()) == 38_992
    assert sum(i.train_pairs for i in infos.values()) == 92_516
    bad = {i.id: i.status for i in infos.values() if not i.ok}
    assert bad == {
        "commonsense_qa": "invalid: train.json: degenerate prompts: 600/600 examples share the prompt 'B' (+1 more)"
    }
    for dist_id, n in SPEC_DUPLICATES.items():
        assert infos[dist_id].test_duplicates == n
    for dist_id, n in SPEC_SHARED_PROMPTS.items():
        assert infos[dist_id].test_shared_prompts == n


def test_store_layout_and_manifest(data_dir, datasets_tarball):
    root = data_dir / "distributions"
    assert sorted(p.name for p in (root / "personality_traits").iterdir()) == [
        "metadata.json",
        "test.json",
        "train.json",
    ]
    assert not (root / "alpaca_mmlu" / "hps").exists()
    manifest = read_manifest(data_dir)
    assert manifest["source"] == str(datasets_tarball.resolve())
    assert manifest["skipped_files"] == 25  # extra.json, *-copy.json, hps/, .swp
    files = manifest["distributions"]["arc_easy"]["files"]
    assert set(files) == {"train.json", "test.json", "metadata.json"}
    assert files["test.json"]["size"] == (root / "arc_easy" / "test.json").stat().st_size
    assert tree_hash(root / "arc_easy")["test.json"] == files["test.json"]["sha256"]
    assert not [p for p in data_dir.iterdir() if p.name.startswith((".import-", ".old-"))]


def test_importing_twice_gives_the_same_store(tmp_path):
    tar = make_tar(tmp_path / "d.tar.gz", good_files(), gz=True)
    store = tmp_path / "store"
    first = import_data(tar, store)
    before = tree_hash(store / "distributions")
    second = import_data(str(tar), store)
    after = tree_hash(store / "distributions")
    assert (
        before.keys()
        == after.keys()
        == {
            "alpha/metadata.json",
            "alpha/test.json",
            "alpha/train.json",
            "beta/metadata.json",
            "beta/test.json",
            "beta/train.json",
            "manifest.json",
        }
    )
    assert {k: v for k, v in before.items() if k != "manifest.json"} == {
        k: v for k, v in after.items() if k != "manifest.json"
    }
    assert first.distributions == second.distributions and second.skipped_files == 1
    m1 = read_manifest(store)["distributions"]
    assert m1["alpha"]["info"]["test_pairs"] == 6 and m1["beta"]["info"]["train_pairs"] == 4


def test_import_from_a_folder_and_a_plain_tar_agree(tmp_path):
    files = good_files()
    a, b = tmp_path / "a", tmp_path / "b"
    import_data(make_tar(tmp_path / "d.tar", files), a)
    import_data(write_tree(tmp_path / "src", {**files, "distributions/.cache/train.json": b"junk"}), b)
    ha, hb = tree_hash(a / "distributions"), tree_hash(b / "distributions")
    del ha["manifest.json"], hb["manifest.json"]
    assert ha == hb
    # the distributions folder itself, or an existing store, are folders in the same layout too
    import_data(tmp_path / "src" / "distributions", b)
    import_data(a, b)
    assert list_distribution_ids(b) == ["alpha", "beta"]


def test_import_replaces_the_previous_content(tmp_path):
    store = tmp_path / "store"
    import_data(make_tar(tmp_path / "one.tar", good_files()), store)
    import_data(make_tar(tmp_path / "two.tar", dist_files("gamma")), store)
    assert list_distribution_ids(store) == ["gamma"]
    assert not [p for p in store.iterdir() if p.name.startswith((".import-", ".old-"))]


def test_import_of_the_official_tarball_is_quick(datasets_tarball, tmp_path):
    # a generous bound: the brief asks for < 30 s, measured ~2-6 s on 2 shared cores
    start = time.perf_counter()
    result = import_data(datasets_tarball, tmp_path)
    assert time.perf_counter() - start < 30 and len(result.distributions) == 66


def test_listing_uses_the_manifest_and_notices_edits(tmp_path):
    store = tmp_path / "store"
    import_data(make_tar(tmp_path / "d.tar", good_files()), store)
    (store / "distributions" / "beta" / "test.json").write_text(
        json.dumps(records(5, 2) + records(1, 4, "q"))
    )
    infos = {i.id: i for i in list_distributions(store)}
    assert (infos["beta"].test_examples, infos["beta"].test_pairs, infos["beta"].responses_per_example) == (
        6,
        8,
        [2, 4],
    )
    # the refreshed statistics were written back to the manifest
    assert read_manifest(store)["distributions"]["beta"]["info"]["test_examples"] == 6
    (store / "distributions" / "alpha" / "train.json").write_text("[")
    infos = {i.id: i for i in list_distributions(store)}
    assert infos["alpha"].status.startswith("invalid: train.json: invalid JSON")
    assert infos["alpha"].train_examples is None


# ---------------------------------------------------------------- bad input leaves the store untouched


@pytest.fixture(scope="module")
def good_store(tmp_path_factory, data_dir) -> Path:
    """A private copy of the imported official store (bad imports are attempted into it)."""
    store = tmp_path_factory.mktemp("good-store") / "data"
    shutil.copytree(data_dir, store)
    return store


def _member(name: str, kind: bytes, **attrs) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    for key, value in attrs.items():
        setattr(info, key, value)
    return info


def _bad_sources(tmp: Path) -> dict[str, tuple[Path, str]]:
    """name → (source path, expected start of the error message after 'error: ')."""
    good_tar = make_tar(tmp / "good.tar", good_files())
    raw = good_tar.read_bytes()
    cases: dict[str, tuple[Path, str]] = {}

    def tar(name, files, expect, **kw):
        cases[name] = (make_tar(tmp / f"{name}.tar", files, **kw), expect)

    cases["missing"] = (tmp / "nope.tar", "no such file or folder")
    (tmp / "text.tar").write_text("hello, I am not an archive\n")
    cases["not-a-tar"] = (tmp / "text.tar", f"{tmp / 'text.tar'} is not a tar archive")
    (tmp / "trunc.tar").write_bytes(raw[: len(raw) // 2 + 7])
    cases["truncated-tar"] = (tmp / "trunc.tar", f"{tmp / 'trunc.tar'} is truncated or corrupt")
    gz = gzip.compress(raw)
    (tmp / "trunc.tar.gz").write_bytes(gz[: len(gz) // 2])
    cases["truncated-gz"] = (tmp / "trunc.tar.gz", f"{tmp / 'trunc.tar.gz'} is truncated or corrupt")
    (tmp / "empty-dir").mkdir()
    cases["folder-without-distributions"] = (
        tmp / "empty-dir",
        f"{tmp / 'empty-dir'} has no distributions/ folder",
    )
    tar("dotdot", {**good_files(), "distributions/../evil.json": b"[]"}, "refusing to import")
    tar("absolute", {**good_files(), "/tmp/evil.json": b"[]"}, "refusing to import")
    tar(
        "symlink",
        good_files(),
        "refusing to import",
        extra=[_member("distributions/alpha/link", tarfile.SYMTYPE, linkname="/etc/passwd")],
    )
    tar(
        "hardlink",
        good_files(),
        "refusing to import",
        extra=[
            _member("distributions/alpha/hard", tarfile.LNKTYPE, linkname="distributions/alpha/train.json")
        ],
    )
    tar(
        "device",
        good_files(),
        "refusing to import",
        extra=[_member("distributions/alpha/dev", tarfile.CHRTYPE, devmajor=1, devminor=3)],
    )
    tar("no-distributions", {"README.md": b"hi"}, "no distributions found")
    tar("bad-id", {**good_files(), **dist_files("has space")}, "refusing to import")
    files = good_files()
    del files["distributions/alpha/test.json"]
    tar("missing-test", files, "refusing to import")

    r = records(3)
    bad_json = {
        "json-syntax": b'[{"prompt": "p", ',
        "not-a-list": json.dumps({"prompt": "p"}).encode(),
        "no-prompt": json.dumps([{"responses": {"a": 1.0, "b": 0.0}}]).encode(),
        "two-ones": json.dumps(r[:1] + [{"prompt": "p", "responses": {"a": 1.0, "b": 1.0}}]).encode(),
        "no-one": json.dumps([{"prompt": "p", "responses": {"a": 0.0, "b": 0.0}}]).encode(),
        "no-zero": json.dumps([{"prompt": "p", "responses": {"a": 1.0}}]).encode(),
        "half-score": json.dumps([{"prompt": "p", "responses": {"a": 1.0, "b": 0.5}}]).encode(),
        "string-score": json.dumps([{"prompt": "p", "responses": {"a": 1.0, "b": "zero"}}]).encode(),
        "empty-split": b"[]",
    }
    for name, data in bad_json.items():
        tar(name, {**good_files(), **dist_files("gamma", train=data)}, "refusing to import")
    return cases


BAD_CASES = [
    "missing", "not-a-tar", "truncated-tar", "truncated-gz", "folder-without-distributions", "dotdot",
    "absolute", "symlink", "hardlink", "device", "no-distributions", "bad-id", "missing-test", "json-syntax",
    "not-a-list", "no-prompt", "two-ones", "no-one", "no-zero", "half-score", "string-score", "empty-split",
]  # fmt: skip
REASONS = {
    "dotdot": "member 'distributions/../evil.json' points outside the archive ('..')",
    "absolute": "member '/tmp/evil.json' has an absolute path",
    "symlink": "member 'distributions/alpha/link' is a link",
    "hardlink": "member 'distributions/alpha/hard' is a link",
    "device": "member 'distributions/alpha/dev' is a device or special file",
    "bad-id": "bad distribution folder name 'has space'",
    "missing-test": "distributions/alpha/test.json: file not found",
    "json-syntax": "distributions/gamma/train.json: invalid JSON at line 1",
    "not-a-list": "distributions/gamma/train.json: a split must be a JSON list of examples, not an object",
    "no-prompt": "distributions/gamma/train.json: example 0: missing 'prompt'",
    "two-ones": "distributions/gamma/train.json: example 1: 2 responses have score 1",
    "no-one": "example 0: no preferred response (no score 1)",
    "no-zero": "example 0: no dispreferred response (no score 0)",
    "half-score": "example 0: score 0.5 of response 'b' is not 0 or 1",
    "string-score": "example 0: score of response 'b' is a string (\"zero\"); scores must be 0 or 1",
    "empty-split": "distributions/gamma/train.json: empty split (no examples)",
}


@pytest.fixture(scope="module")
def bad_sources(tmp_path_factory) -> dict[str, tuple[Path, str]]:
    return _bad_sources(tmp_path_factory.mktemp("bad"))


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_import_is_one_line_and_leaves_the_store_untouched(case, bad_sources, good_store, capsys):
    before = tree_hash(good_store / "distributions")
    source, expect = bad_sources[case]
    rc = main(["data", "import", str(source), "--data-dir", str(good_store)])
    captured = capsys.readouterr()
    assert rc != 0
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {expect}"), captured.err
    assert REASONS.get(case, "") in lines[0]
    assert "Traceback" not in captured.err + captured.out
    assert tree_hash(good_store / "distributions") == before
    assert sorted(p.name for p in good_store.iterdir() if p.name != ".import.lock") == ["distributions"]


def test_failed_import_into_a_new_folder_creates_no_store(tmp_path):
    tar = make_tar(tmp_path / "bad.tar", dist_files("gamma", train=b"[]"))
    with pytest.raises(ValidationError, match="empty split"):
        import_data(tar, tmp_path / "store")
    assert list_distribution_ids(tmp_path / "store") == []
    with pytest.raises(DataError, match="no such file"):
        import_data(tmp_path / "missing.tar", tmp_path / "other")
    assert not (tmp_path / "other").exists()


def test_leftovers_of_a_killed_import_are_cleaned(tmp_path):
    store = tmp_path / "store"
    import_data(make_tar(tmp_path / "d.tar", good_files()), store)
    (store / ".import-dead" / "distributions").mkdir(parents=True)
    (store / ".old-dead").mkdir()
    import_data(make_tar(tmp_path / "d.tar", good_files()), store)
    assert sorted(p.name for p in store.iterdir() if p.name != ".import.lock") == ["distributions"]


# ---------------------------------------------------------------- URLs (localhost only, never the internet)


@pytest.fixture
def http_server(tmp_path):
    """Serve ``tmp_path/www`` on localhost in a thread."""
    www = tmp_path / "www"
    www.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(www), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_import_from_a_url(http_server, tmp_path):
    www, base = http_server
    make_tar(www / "genies-datasets.tar", good_files())
    result = import_data(f"{base}/genies-datasets.tar", tmp_path / "store")
    assert [i.id for i in result.distributions] == ["alpha", "beta"]
    assert read_manifest(tmp_path / "store")["source"] == f"{base}/genies-datasets.tar"
    with pytest.raises(DataError, match="HTTP 404"):
        import_data(f"{base}/missing.tar", tmp_path / "store")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_download_offline_fails_fast_with_a_hint(tmp_path, capsys):
    url = f"http://127.0.0.1:{_closed_port()}/genies-datasets.tar"
    start = time.perf_counter()
    rc = main(["data", "download", "--url", url, "--data-dir", str(tmp_path / "store")])
    err = capsys.readouterr().err
    assert rc == 1 and time.perf_counter() - start < 10
    assert err.startswith(f"error: cannot download {url}: ") and "genies data import FILE" in err
    assert len(err.strip().splitlines()) == 1
    assert list_distribution_ids(tmp_path / "store") == []


def test_download_from_a_silent_server_times_out(tmp_path):
    with socket.socket() as srv:  # accepts connections (backlog) but never answers
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        url = f"http://127.0.0.1:{srv.getsockname()[1]}/genies-datasets.tar"
        start = time.perf_counter()
        with pytest.raises(DataError, match="cannot download .*timed out") as exc:
            import_data(url, tmp_path / "store", timeout=0.5)
        assert time.perf_counter() - start < 10
        assert "genies data import FILE" in str(exc.value)
