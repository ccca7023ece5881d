"""Config: defaults, YAML, flags, precedence and validation."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from unetzoo.config import TrainConfig, add_config_arguments, build_config
from unetzoo.errors import ConfigError


def parse(argv: list[str]) -> dict:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    return vars(parser.parse_args(argv))


def test_reference_script_flags() -> None:
    given = parse(["--dataset", "d", "--csvfile", "f.csv", "--loss", "dice", "--batch", "16",
                   "--lr", "0.001", "--epoch", "200", "--model-args", "base_channels=32",
                   "norm=group", "--no-progress"])
    config = build_config(given)
    assert (config.dataset, config.csvfile, config.loss, config.batch, config.epoch) == (
        "d", "f.csv", "dice", 16, 200)
    assert config.model_args == {"base_channels": 32, "norm": "group"}
    assert config.progress is False and config.lr == 0.001
    assert parse(["--epochs", "3", "--batch-size", "2"]) == {"epoch": 3, "batch": 2}


def test_yaml_then_flags(tmp_path: Path) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("lr: 1\nimg-size: 128\nmodel_args: {depth: 4}\nbatch: 4\n")
    config = build_config({"batch": 2}, cfg)
    assert (config.lr, config.img_size, config.batch, config.model_args) == (1.0, 128, 2,
                                                                            {"depth": 4})


@pytest.mark.parametrize("yaml_text, message", [
    ("lr: fast\n", "option lr expects float"),
    ("learning_rat: 0.1\n", "unknown option learning_rat"),
    ("- a\n- b\n", "must be a mapping"),
    ("batch: [1\n", "invalid YAML"),
])
def test_bad_yaml(tmp_path: Path, yaml_text: str, message: str) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml_text)
    with pytest.raises(ConfigError, match=message):
        build_config({}, cfg)


@pytest.mark.parametrize("values, message", [
    ({"batch": 0}, "--batch must be >= 1"),
    ({"lr": -1.0}, "--lr must be > 0"),
    ({"loss": "lovasz"}, "unknown loss"),
    ({"optimizer": "lion"}, "--optimizer must be one of"),
    ({"warmup": 5, "epoch": 5}, "--warmup"),
])
def test_validation(values: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_config(values)


def test_config_round_trips_through_a_dict() -> None:
    config = TrainConfig(dataset="d", model_args={"depth": 3})
    assert build_config(config.to_dict()) == config
