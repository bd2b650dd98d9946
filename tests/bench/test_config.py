import tomllib

import pytest

from bench.config import config_from_dict, load_config
from bench.config_toml import to_toml
from bench.errors import ConfigError


def test_default_config_loads_and_round_trips_through_print_config():
    config = load_config(None)
    again = config_from_dict(tomllib.loads(to_toml(config)), "printed")
    assert again == config
    assert config.baseline.model == "edgecnn"


def test_print_config_comments_every_key():
    text = to_toml(load_config(None))
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if "=" in line and not line.startswith("#") and not line.startswith("name") and not line.startswith("passes"):
            assert lines[i - 1].startswith("#"), f"no comment above {line!r}"


@pytest.mark.parametrize("raw, message", [
    ({"bogus": {}}, "unknown section [bogus]"),
    ({"benchmak": {}}, "did you mean 'benchmark'"),
    ({"baseline": {"epoch": 3}}, "did you mean 'epochs'"),
    ({"baseline": {"epochs": "3"}}, "expected int"),
    ({"baseline": {"epochs": -1}}, "must be >= 0"),
    ({"benchmark": {"threads": [0]}}, "integers >= 1"),
    ({"benchmark": {"batch_sizes": []}}, "non-empty"),
    ({"benchmark": {"paired_rounds": 1}}, "must be 0 (off) or at least 2"),
    ({"benchmark": {"runtimes": ["onnxruntim"]}}, "did you mean 'onnxruntime'"),
    ({"export": {"formats": ["tflit"]}}, "unknown value 'tflit'"),
    ({"export": {"tflite_precisions": ["int4"]}}, "unknown value 'int4'"),
    ({"baseline": {"model": "resnet19"}}, "did you mean 'resnet18'"),
    ({"variants": [{"name": "a", "passes": ["prune.structured(ratio=1.5)"]}]}, "must be in [0, 1)"),
    ({"variants": [{"name": "a", "passes": ["prune.structured(importance='l3')"]}]}, "not one of"),
    ({"variants": [{"name": "a", "passes": ["prune.structrued()"]}]}, "did you mean 'prune.structured'"),
    ({"variants": [{"name": "a", "passes": ["quantize.static()", "finetune()"]}]}, "cannot follow"),
    ({"variants": [{"name": "a", "passes": ["finetune()"]}, {"name": "a", "passes": ["finetune()"]}]}, "duplicate"),
    ({"variants": [{"name": "a b", "passes": ["finetune()"]}]}, "name must"),
    ({"variants": [{"name": "baseline", "passes": ["finetune()"]}]}, "'baseline' is reserved"),
    # variant names name folders: '..' would write beside artifacts/, '.x' would be hidden
    ({"variants": [{"name": "..", "passes": ["finetune()"]}]}, "name must start with a letter or digit"),
    ({"variants": [{"name": ".hidden", "passes": ["finetune()"]}]}, "name must start with a letter or digit"),
    ({"variants": [{"name": "a", "passes": ["distill(width=1.5, init='teacher')"]}]}, "init='teacher' needs a width <= 1"),
    # TOML has inf and nan: no setting means them (an infinite warm-up never ends)
    ({"benchmark": {"warmup_seconds": float("inf")}}, "warmup_seconds = inf: must be a finite number"),
    ({"baseline": {"lr": float("nan")}}, "lr = nan: must be a finite number"),
    ({"baseline": {"train_precision": "fp16"}}, "expected one of ['auto', 'fp32', 'bf16']"),
    ({"baseline": {"width": float("inf")}}, "width = inf: must be a finite number"),
    ({"variants": [{"name": "a"}]}, "missing required key 'passes'"),
    ({"variants": [{"name": "a", "passes": ["distill(student='mobilenetv2')"]}]},
     "distill(student=...) = 'mobilenetv2': unknown model (did you mean 'mobilenet_v2'?)"),
    # lists that name a value twice would make two rows with one name, writing the same files
    ({"export": {"tflite_precisions": ["fp32", "int8", "fp32"]}}, "lists 'fp32' twice"),
    ({"benchmark": {"threads": [1, 2, 1]}}, "lists 1 twice"),
    ({"benchmark": {"runtimes": ["torch", "onnxruntime", "litert", "torch"]}}, "lists 'torch' twice"),
    # an artifact that no enabled runtime runs would get no row at all
    ({"benchmark": {"runtimes": ["torch", "onnxruntime"]}}, "[export].formats has 'tflite' but [benchmark].runtimes has no runtime that runs it (add 'litert'"),
    ({"export": {"formats": ["torch"]}, "benchmark": {"runtimes": ["torch"]},
      "variants": [{"name": "q", "passes": ["quantize.dynamic()"]}]}, "quantize.dynamic makes an ONNX artifact"),
])
def test_invalid_configs_name_the_problem(raw, message):
    with pytest.raises(ConfigError) as err:
        config_from_dict(raw, "test.toml")
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_no_tflite_precisions_is_fine_without_tflite():
    config = config_from_dict({"export": {"formats": ["onnx"], "tflite_precisions": []},
                               "benchmark": {"runtimes": ["onnxruntime"]}})
    assert config.export.tflite_precisions == []


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "none.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[data\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_digest_changes_with_config():
    a, b = load_config(None), load_config(None)
    b.baseline.epochs += 1
    assert a.digest() != b.digest()
