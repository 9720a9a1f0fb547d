"""Per-role configs: TOML tables, --set overrides, --ttc parsing, validation before any work."""

from __future__ import annotations

import pytest

from genies.errors import ConfigError
from genies.interventions.registry import get_intervention
from genies.pipeline.config import (
    intervention_values,
    load_toml,
    merge,
    parse_sets,
    parse_ttc,
    parse_value,
    resolve_configs,
)


def _resolve(raw, main="test_length", baseline="test_length", ttc="single", ttc_iv=None):
    spec = parse_ttc(ttc, ttc_iv, main)
    return resolve_configs(
        raw,
        main=get_intervention(main),
        baseline=get_intervention(baseline),
        ttc=spec,
        ttc_interventions={n: get_intervention(n) for n in spec.interventions},
    )


def test_parse_value_reads_toml_literals_and_falls_back_to_text():
    assert parse_value("4") == 4
    assert parse_value("0.5") == 0.5
    assert parse_value("true") is True
    assert parse_value('"x y"') == "x y"
    assert parse_value("[1, 2]") == [1, 2]
    assert parse_value("mean") == "mean"


def test_parse_sets_nests_roles_and_candidates():
    got = parse_sets(["intervention.scale=2", "baseline.scale=0.5", "ttc.test_bias.weight=3"])
    assert got == {
        "intervention": {"scale": 2},
        "baseline": {"scale": 0.5},
        "ttc": {"test_bias": {"weight": 3}},
    }


@pytest.mark.parametrize("bad", ["scale=2", "intervention.=2", "intervention.scale", ".scale=1"])
def test_parse_sets_rejects_malformed(bad):
    with pytest.raises(ConfigError, match="ROLE.KEY=VALUE"):
        parse_sets([bad])


def test_parse_ttc():
    assert parse_ttc("single", None, "few_shot").interventions == ("few_shot",)
    assert parse_ttc("single", "zero_shot", "few_shot").interventions == ("zero_shot",)
    spec = parse_ttc("best-of:a, b", None, "x")
    assert spec.mode == "best-of" and spec.interventions == ("a", "b") and spec.label == "best-of:a,b"
    for bad in ("best", "best-of:", "best-of:a,,b", "best-of:a,a"):
        with pytest.raises(ConfigError):
            parse_ttc(bad, None, "x")
    with pytest.raises(ConfigError, match="--ttc-intervention"):
        parse_ttc("best-of:a,b", "a", "x")


def test_merge_is_deep_and_overrides_win():
    assert merge({"a": {"x": 1, "y": 2}, "b": 1}, {"a": {"y": 3}}) == {"a": {"x": 1, "y": 3}, "b": 1}


def test_each_role_gets_its_own_validated_config():
    cfgs = _resolve(
        {"intervention": {"scale": 2.0}, "baseline": {"scale": 0.5}, "ttc": {"weight": 4.0}},
        ttc_iv="test_bias",
    )
    assert cfgs.intervention.scale == 2.0
    assert cfgs.baseline.scale == 0.5
    assert cfgs.ttc["test_bias"].weight == 4.0
    assert cfgs.ttc_inherited == ()


def test_ttc_of_the_main_intervention_inherits_its_config_unless_given():
    cfgs = _resolve({"intervention": {"scale": 3.0}})
    assert cfgs.ttc["test_length"].scale == 3.0 and cfgs.ttc_inherited == ("test_length",)
    cfgs = _resolve({"intervention": {"scale": 3.0}, "ttc": {"scale": 1.5}})
    assert cfgs.ttc["test_length"].scale == 1.5 and cfgs.ttc_inherited == ()


def test_unknown_key_of_a_role_is_an_error_naming_the_role():
    with pytest.raises(ConfigError, match=r"^baseline config: .*'test_length'.*keys: batch_size, scale"):
        _resolve({"baseline": {"num_shots": 2}})
    with pytest.raises(ConfigError, match=r"^intervention config: "):
        _resolve({"intervention": {"scale": "big"}})


def test_unknown_table_is_an_error():
    with pytest.raises(ConfigError, match="unknown config table 'trainer'"):
        _resolve({"trainer": {}})


def test_best_of_configs_are_per_candidate():
    cfgs = _resolve({"ttc": {"test_bias": {"weight": 2.0}}}, ttc="best-of:test_length,test_bias")
    assert cfgs.ttc["test_bias"].weight == 2.0
    assert cfgs.ttc["test_length"].scale == 1.0
    with pytest.raises(ConfigError, match="per intervention"):
        _resolve({"ttc": {"weight": 2.0}}, ttc="best-of:test_length,test_bias")
    with pytest.raises(ConfigError, match="not a --ttc best-of"):
        _resolve({"ttc": {"few": {"x": 1}}}, ttc="best-of:test_length,test_bias")
    with pytest.raises(ConfigError, match="weight"):
        _resolve({"ttc": {"test_length": {"weight": 2.0}}}, ttc="best-of:test_length,test_bias")


def test_single_ttc_rejects_nested_tables():
    with pytest.raises(ConfigError, match="--ttc single"):
        _resolve({"ttc": {"test_length": {"scale": 2}}})


def test_key_config_leaves_out_result_neutral_keys():
    iv = get_intervention("test_length")
    a = iv.key_config(iv.make_config({"batch_size": 4}))
    b = iv.key_config(iv.make_config({}))
    assert a == b == {"scale": 1.0}
    fs = get_intervention("few_shot")
    assert "batch_size" not in fs.key_config(fs.make_config({"batch_size": 2}))


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"num_shots": True}, "num_shots"),  # a bool is not an int (no coercion to 1)
        ({"num_shots": 2.0}, "num_shots"),
        ({"num_shots": "2"}, "num_shots"),
        ({"exclude_same_prompt": 1}, "exclude_same_prompt"),
        ({"batch_size": False}, "batch_size"),
        ({"scoring": 1}, "scoring"),
    ],
)
def test_config_types_are_strict(values, field):
    with pytest.raises(ConfigError, match=rf"invalid config for intervention 'few_shot': {field}"):
        get_intervention("few_shot").make_config(values)


def test_set_true_for_an_int_is_refused_from_the_command_line_grammar():
    raw = parse_sets(["intervention.num_shots=true"])
    assert raw == {"intervention": {"num_shots": True}}
    with pytest.raises(ConfigError, match="num_shots: Input should be a valid integer"):
        _resolve(raw, main="few_shot", baseline="zero_shot")
    # ints are still fine for float fields
    assert _resolve({"intervention": {"scale": 2}}).intervention.scale == 2.0


def test_evaluate_grammar_is_runs_with_one_role(tmp_path):
    assert intervention_values(None, ["intervention.num_shots=2"]) == {"num_shots": 2}
    with pytest.raises(ConfigError, match="ROLE.KEY=VALUE with ROLE one of intervention"):
        intervention_values(None, ["num_shots=2"])
    with pytest.raises(ConfigError, match="unknown role 'baseline'"):
        intervention_values(None, ["baseline.scale=2"])
    cfg = tmp_path / "c.toml"
    cfg.write_text("[intervention]\nnum_shots = 1\nscoring = 'mean'\n")
    assert intervention_values(cfg, ["intervention.num_shots=3"]) == {"num_shots": 3, "scoring": "mean"}
    cfg.write_text("[ttc]\nnum_shots = 1\n")
    with pytest.raises(ConfigError, match="unknown config table 'ttc'"):
        intervention_values(cfg, [])


def test_load_toml_errors_are_one_line(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_toml(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[intervention\nscale = 1\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_toml(bad)
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        load_toml(binary)
    good = tmp_path / "good.toml"
    good.write_text("[intervention]\nscale = 2.5\n[ttc.test_bias]\nweight = 1\n")
    assert load_toml(good) == {"intervention": {"scale": 2.5}, "ttc": {"test_bias": {"weight": 1}}}
