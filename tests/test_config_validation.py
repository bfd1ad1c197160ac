"""The config is validated data: every bad value fails when the config is built, naming its key.

Typed fields (``Literal`` choices, ``Annotated`` ranges, finite floats) are checked for the
run config, for every method's options (also when built in code, not from YAML) and for the
method/protocol combination, before any data or weight is touched.
"""
from __future__ import annotations

import dataclasses
import typing

import pytest

from dvpt.cli import main
from dvpt.config import build_config
from dvpt.config.fields import check, describe
from dvpt.config.loader import method_preset, validate_method_options
from dvpt.config.schema import OptimConfig, PositiveInt, RunConfig
from dvpt.errors import ConfigError
from dvpt.methods import METHODS, get_method
from dvpt.methods.dvpt import DVPTOptions

BAD_TOP_LEVEL = [
    ("optim.epochs", "0"), ("optim.epochs", "1.5"), ("data.shots", "0"), ("optim.batch_size", "0"),
    ("seed", "-1"), ("optim.lr", "0"), ("optim.lr", "-0.1"), ("optim.lr", ".nan"), ("optim.lr", ".inf"),
    ("optim.lr", "fast"), ("device", "gpu"), ("device", "cuda:x"), ("precision", "fp8"),
    ("optim.optimizer", "adam"), ("optim.scheduler", "step"), ("threads", "0"), ("eval_batch_size", "0"),
    ("cache.views", "-1"), ("text.chunk", "-2"), ("data.shots_list", "[1, 0]"), ("optim.weight_decay", "-1"),
]


@pytest.mark.parametrize("key,value", BAD_TOP_LEVEL)
def test_bad_run_value_names_the_key(key, value):
    with pytest.raises(ConfigError) as err:
        build_config(method="coop", overrides=[f"{key}={value}"])
    message = str(err.value)
    assert f"'{key}'" in message and "expects" in message and "\n" not in message


@pytest.mark.parametrize("value", ["auto", "cpu", "cuda", "cuda:0", "cuda:12", "mps"])
def test_every_documented_device_is_accepted(value):
    assert build_config(overrides=[f"device={value}"]).device == value


BAD_OPTIONS = [
    ("dvpt", "lambda_mi", "-1"), ("dvpt", "ensemble_weight", "1.5"), ("dvpt", "proxy_prob", "-0.1"),
    ("dvpt", "mi", "mine"), ("dvpt", "visual_aug", "cutmix"), ("dvpt", "mi_temperature", "0"),
    ("dvpt", "feature_shrink", "2"), ("dvpt", "lambda_aug", ".nan"), ("coop", "n_ctx", "0"),
    ("coop", "class_specific", "maybe"), ("zeroshot", "templates", "all"), ("promptsrc", "gpa_std", "0"),
    ("promptsrc", "teacher_templates", "mine"), ("prograd", "temperature", "0"), ("maple", "prompt_depth", "0"),
    ("kgcoop", "weight", "-8"), ("cocoop", "image_chunk", "-1"),
]


@pytest.mark.parametrize("method,key,value", BAD_OPTIONS)
def test_bad_option_names_the_key(method, key, value):
    with pytest.raises(ConfigError, match=f"'options.{key}' expects"):
        build_config(method=method, overrides=[f"options.{key}={value}"])


def test_options_built_in_code_are_checked_too():
    with pytest.raises(ConfigError, match="'options.mi' expects one of infonce | iic | none"):
        DVPTOptions(mi="mine")
    with pytest.raises(ConfigError, match="'optim.lr' expects a finite number > 0"):
        OptimConfig(lr=float("nan"))
    assert DVPTOptions(lambda_mi=1).lambda_mi == 1.0 and type(DVPTOptions(lambda_mi=1).lambda_mi) is float


@pytest.mark.parametrize("protocol", ["base2novel", "crossdataset", "transfer"])
def test_class_specific_context_is_refused_where_classes_change(protocol):
    with pytest.raises(ConfigError, match="options.class_specific=true .* set options.class_specific=false"):
        build_config(method="coop", flags={"protocol": protocol, "options": {"class_specific": True}})


def test_class_specific_context_is_accepted_on_the_trained_classes():
    cfg = build_config(method="coop", flags={"protocol": "all", "options": {"class_specific": True}})
    assert validate_method_options(cfg).class_specific is True


def test_unknown_protocol_lists_the_known_ones():
    with pytest.raises(ConfigError, match="unknown protocol 'novel2base'; known: all, base2novel"):
        build_config(overrides=["protocol=novel2base"])


@pytest.mark.parametrize("name", METHODS.names())
def test_defaults_and_presets_are_valid(name):
    """Defaults live once, in the options dataclass: it builds without arguments, and a
    preset holds only keys the dataclass knows."""
    options_cls = get_method(name).Options
    defaults = options_cls()
    preset = method_preset(name).get("options", {})
    assert set(preset) <= {f.name for f in dataclasses.fields(options_cls)}
    resolved = validate_method_options(build_config(method=name))
    for f in dataclasses.fields(options_cls):
        assert getattr(resolved, f.name) == preset.get(f.name, getattr(defaults, f.name))


def test_every_field_has_a_checkable_annotation():
    """No config or options field falls through to 'anything goes'."""
    def walk(cls):
        for name, annotation in typing.get_type_hints(cls, include_extras=True).items():
            if name == "config_key":
                continue
            if dataclasses.is_dataclass(annotation):
                yield from walk(annotation)
            else:
                yield cls, name, annotation

    classes = [RunConfig] + [get_method(n).Options for n in METHODS.names()]
    for cls in classes:
        for owner, name, annotation in walk(cls):
            default = next(f for f in dataclasses.fields(owner) if f.name == name)
            value = default.default if default.default is not dataclasses.MISSING else default.default_factory()
            check(value, annotation, f"{owner.__name__}.{name}")  # the default itself passes
    with pytest.raises(TypeError, match="unsupported config annotation"):
        check({1}, set, "x")


def test_describe_says_the_range_in_words():
    assert describe(PositiveInt) == "int >= 1"
    with pytest.raises(ConfigError, match=r"^config key 'data.shots' expects int >= 1, got 0; set data.shots to"):
        check(0, PositiveInt, "data.shots")


def test_cli_refuses_a_bad_value_in_one_line_and_writes_nothing(capsys, tmp_path):
    out_dir = tmp_path / "out"
    code = main(["train", "--backbone", "tiny-random", "--epochs", "1", "--protocol", "all", "--lr", "-1",
                 "-o", str(out_dir)])
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if line]
    assert code == 2 and len(lines) == 1 and "optim.lr" in lines[0] and "Traceback" not in err
    assert not out_dir.exists()
