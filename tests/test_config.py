"""Config: defaults, YAML, flags, precedence, the same reading of a value everywhere, and
one-line errors naming the option."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from unetzoo.config import TrainConfig, add_config_arguments, build_config, parse_yaml
from unetzoo.errors import ConfigError, UnetzooError


def parse(argv: list[str]) -> dict:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    return vars(parser.parse_args(argv))


def yaml_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return path


def test_reference_script_flags() -> None:
    given = parse(["--dataset", "d", "--csvfile", "f.csv", "--loss", "dice", "--batch", "16",
                   "--lr", "0.001", "--epoch", "200", "--model-args", "base_channels=32",
                   "norm=group", "--no-progress"])
    config = build_config(given)
    assert (config.dataset, config.csvfile, config.loss, config.batch, config.epoch) == (
        "d", "f.csv", "dice", 16, 200)
    assert config.model_args == {"base_channels": 32, "norm": "group"}
    assert config.progress is False and config.lr == 0.001
    aliases = build_config(parse(["--epochs", "3", "--batch-size", "2", "--output", "r"]))
    assert (aliases.epoch, aliases.batch, aliases.out) == (3, 2, "r")


def test_yaml_then_flags(tmp_path: Path) -> None:
    cfg = yaml_file(tmp_path, "lr: 1\nimg-size: 128\nmodel_args: {depth: 4}\nbatch: 4\n")
    config = build_config({"batch": "2"}, cfg)
    assert (config.lr, config.img_size, config.batch, config.model_args) == (1.0, 128, 2,
                                                                            {"depth": 4})
    assert isinstance(config.lr, float)


@pytest.mark.parametrize("text, expected", [
    ("1e-3", 0.001), ("1E-3", 0.001), ("2.5e-4", 2.5e-4), (".5", 0.5), ("+1", 1.0),
    ("1_000", 1000.0), ("3", 3.0),
])
def test_a_float_reads_the_same_from_yaml_and_from_a_flag(tmp_path: Path, text: str,
                                                          expected: float) -> None:
    from_yaml = build_config({}, yaml_file(tmp_path, f"lr: {text}\n")).lr
    from_flag = build_config(parse(["--lr", text])).lr
    assert from_yaml == from_flag == pytest.approx(expected)
    assert type(from_yaml) is type(from_flag) is float


@pytest.mark.parametrize("text, expected", [("1_000", 1000), ("+4", 4), ("010", 10)])
def test_an_integer_reads_the_same_from_yaml_and_from_a_flag(tmp_path: Path, text: str,
                                                             expected: int) -> None:
    from_yaml = build_config({}, yaml_file(tmp_path, f"epoch: {text}\n")).epoch
    assert from_yaml == build_config(parse(["--epoch", text])).epoch == expected


def test_yaml_numbers_follow_python_not_yaml_1_1() -> None:
    assert parse_yaml("a: 1e-3\nb: 010\nc: 1:30\nd: .inf\ne: [1e-3, .5]\nf: ~\ng: yes") == {
        "a": 0.001, "b": 10, "c": "1:30", "d": float("inf"), "e": [0.001, 0.5], "f": None,
        "g": True}


def test_null_unsets_an_optional_value_and_lists_convert(tmp_path: Path) -> None:
    cfg = yaml_file(tmp_path, "grad_clip: null\nds_weights: [1, '5e-1', 2.5e-1]\n"
                              "class_names: [background, nucleus]\nmodel_args: {dropout: 1e-1}\n")
    config = build_config({}, cfg)
    assert config.grad_clip is None
    assert config.ds_weights == [1.0, 0.5, 0.25]
    assert config.class_names == ["background", "nucleus"]
    assert build_config(parse(["--model-args", "dropout=1e-1"])).model_args == {"dropout": 0.1}


def test_a_model_arg_split_by_the_shell_is_refused_in_one_line() -> None:
    # `--model-args widths=[8, 16]` unquoted: the shell gives "widths=[8," and "16]"
    with pytest.raises(ConfigError, match=r"^cannot read the value of 'widths=\[8,' as YAML; "
                                          r"a value with spaces needs quotes"):
        build_config(parse(["--model-args", "widths=[8,", "16]"]))
    assert build_config(parse(["--model-args", "widths=[8, 16]"])).model_args == {
        "widths": [8, 16]}
    assert build_config(parse(["--ds-weights", "1", "5e-1"])).ds_weights == [1.0, 0.5]


@pytest.mark.parametrize("yaml_text, message", [
    ("lr: fast\n", r"cfg.yaml: lr expects a number, got 'fast'$"),
    ("learning_rat: 0.1\n", r"cfg.yaml: unknown option learning_rat$"),
    ("- a\n- b\n", "must be a mapping"),
    ("batch: [1\n", "invalid YAML"),
    ("epoch: null\n", r"cfg.yaml: epoch expects an integer, got None$"),
    ("epoch: 2.5\n", r"epoch expects an integer, got 2.5$"),
    ("lr: yes\n", r"lr expects a number, got True$"),
    ("ds_weights: 0.5\n", r"ds_weights expects a list of numbers, got 0.5$"),
    ("optimizer: lion\n", r"optimizer expects one of adam, adamw, sgd, got 'lion'$"),
    ("batch: 0\n", r"cfg.yaml: batch must be >= 1, got 0$"),
])
def test_a_wrong_yaml_value_is_one_line_naming_file_and_key(tmp_path: Path, yaml_text: str,
                                                            message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        build_config({}, yaml_file(tmp_path, yaml_text))
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("values, message", [
    ({"batch": 0}, r"^--batch must be >= 1, got 0$"),
    ({"batch": "two"}, r"^--batch expects an integer, got 'two'$"),
    ({"lr": -1.0}, r"^--lr must be > 0, got -1.0$"),
    ({"lr": "nan"}, r"^--lr expects a number, got 'nan'$"),
    ({"val_fraction": 1}, r"^--val-fraction must be < 1, got 1$"),
    ({"loss": "hausdorff"}, "unknown loss"),
    ({"optimizer": "lion"}, r"^--optimizer expects one of adam, adamw, sgd, got 'lion'$"),
    ({"precision": "int8"}, r"^--precision expects one of auto, fp32, bf16, fp16"),
    ({"warmup": 5, "epoch": 5}, r"^--warmup must be in \[0, epoch\), got 5$"),
    ({"resume": "auto"}, "--resume auto needs --out"),
    ({"model": "unet", "model_args": {"depthh": 3}}, "does not take depthh"),
])
def test_validation(values: dict, message: str) -> None:
    with pytest.raises(UnetzooError, match=message):
        build_config(values)


def test_flags_override_yaml_and_are_named_as_flags(tmp_path: Path) -> None:
    cfg = yaml_file(tmp_path, "batch: 4\n")
    with pytest.raises(ConfigError, match=r"^--batch must be >= 1, got 0$"):
        build_config({"batch": 0}, cfg)


def test_direct_construction_is_validated_and_converted() -> None:
    config = TrainConfig(lr="2e-3", epoch="5").validate()  # type: ignore[arg-type]
    assert (config.lr, config.epoch) == (0.002, 5)
    with pytest.raises(ConfigError, match="--img-size must be >= 1"):
        TrainConfig(img_size=0).validate()


def test_config_round_trips_through_a_dict() -> None:
    config = TrainConfig(dataset="d", model_args={"depth": 3})
    assert build_config(config.to_dict()) == config


def test_the_options_are_declared_in_groups_and_stay_flat(tmp_path: Path) -> None:
    from dataclasses import fields

    from unetzoo.config import (
        GROUPS,
        RUNTIME_OPTIONS,
        DataOptions,
        ModelOptions,
        OptimOptions,
        RunOptions,
        RuntimeOptions,
    )

    # every option in exactly one group; the config is their union, in the groups' order
    names = [f.name for group in GROUPS for f in fields(group)]
    assert len(names) == len(set(names))
    assert tuple(names) == TrainConfig.names() == tuple(f.name for f in fields(TrainConfig))
    assert {"dataset", "img_size", "fg_oversample"} <= set(DataOptions.names())
    assert set(ModelOptions.names()) == {"model", "preset", "model_args", "init"}
    assert {"loss", "optimizer", "schedule", "batch", "lr", "epoch", "ema"} <= set(
        OptimOptions.names())
    assert {"out", "resume", "seed", "val_every", "test", "report", "checkpoint_every",
            "logger", "mlflow"} <= set(RunOptions.names())
    assert RUNTIME_OPTIONS == RuntimeOptions.names() == (
        "device", "precision", "channels_last", "compile", "threads", "progress", "sync_bn")
    # flat: attributes, the dict config.yaml and checkpoints store, an old flat YAML
    config = build_config({"lr": "2e-3", "device": "cpu"},
                          yaml_file(tmp_path, "img_size: 64\nmonitor: loss\nsync_bn: true\n"))
    assert (config.lr, config.device, config.img_size, config.monitor, config.sync_bn) == (
        0.002, "cpu", 64, "loss", True)
    assert list(config.to_dict()) == list(names)
    # a part is its own instance with the same values; the config is an instance of each
    runtime = config.part(RuntimeOptions)
    assert type(runtime) is RuntimeOptions and runtime.to_dict() == {
        n: getattr(config, n) for n in RUNTIME_OPTIONS}
    assert config.part(OptimOptions).lr == 0.002 and isinstance(config, RunOptions)
    with pytest.raises(TypeError, match="TrainConfig is not a part of RuntimeOptions"):
        runtime.part(TrainConfig)


def test_a_group_is_checked_alone_as_the_config_is() -> None:
    from unetzoo.config import DataOptions, OptimOptions, RunOptions, RuntimeOptions

    assert build_config({"precision": "fp32", "threads": "2"}, cls=RuntimeOptions) == \
        RuntimeOptions(precision="fp32", threads=2)
    with pytest.raises(ConfigError, match=r"^--precision expects one of auto, fp32"):
        build_config({"precision": "int8"}, cls=RuntimeOptions)
    with pytest.raises(ConfigError, match=r"^unknown option lr$"):
        build_config({"lr": 1.0}, cls=RuntimeOptions)  # not a runtime option
    with pytest.raises(ConfigError, match=r"^--warmup must be in \[0, epoch\), got 3$"):
        OptimOptions(warmup=3, epoch=3).validate()
    with pytest.raises(ConfigError, match="--resume auto needs --out"):
        RunOptions(resume="auto").validate()
    with pytest.raises(ConfigError, match=r"^--fg-oversample must be <= 1, got 1.5$"):
        DataOptions(fg_oversample=1.5).validate()
    # the cross-group check: the loss for the task
    with pytest.raises(ConfigError, match="unknown loss"):
        TrainConfig(loss="hausdorff").validate()


def test_runtime_options_resolve_to_a_runtime() -> None:
    from unetzoo.config import RuntimeOptions

    runtime = RuntimeOptions(device="cpu", precision="fp32", channels_last=False).runtime()
    assert (runtime.device.type, runtime.precision, runtime.channels_last, runtime.backend) == (
        "cpu", "fp32", False, "torch")
    with pytest.raises(ConfigError, match="torch options"):
        RuntimeOptions(device="cpu", compile=True).runtime(backend="onnxruntime")
