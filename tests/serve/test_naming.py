"""How served models are named in URLs, and the clashes refused at start-up."""

from __future__ import annotations

from pathlib import Path

import pytest

from unetzoo.errors import CheckpointError, ConfigError
from unetzoo.serve.naming import is_model_name, name_models


def test_names_come_from_where_the_model_comes_from(checkpoint: Path, tmp_path: Path) -> None:
    folder = tmp_path / "cells-v2"
    folder.mkdir()
    copy = folder / "best.pt"
    copy.write_bytes(checkpoint.read_bytes())
    named = name_models(["nuclei", str(checkpoint), f"mine={copy}"])
    assert [m.name for m in named] == ["nuclei", "tiny", "mine"]
    assert [m.reference.kind for m in named] == ["shipped", "checkpoint", "checkpoint"]
    assert named[2].reference.path == copy


def test_two_models_of_one_name_are_refused_in_one_line(checkpoint: Path,
                                                         tmp_path: Path) -> None:
    other = tmp_path / "elsewhere" / "TINY.pt"
    other.parent.mkdir()
    other.write_bytes(checkpoint.read_bytes())
    for values in ([str(checkpoint), str(other)], [str(checkpoint), str(checkpoint)],
                   ["nuclei", f"nuclei={checkpoint}"]):
        with pytest.raises(ConfigError, match="name them apart: --model NAME=REF") as error:
            name_models(values)
        assert "\n" not in str(error.value) and "two models are named" in str(error.value)
    assert [m.name for m in name_models([str(checkpoint), f"tiny2={other}"])] == \
        ["tiny", "tiny2"]


def test_a_name_that_cannot_be_in_a_url_is_refused(checkpoint: Path, tmp_path: Path) -> None:
    spaced = tmp_path / "my model.pt"
    spaced.write_bytes(checkpoint.read_bytes())
    with pytest.raises(ConfigError, match="--model NAME="):
        name_models([str(spaced)])
    assert name_models([f"mine={spaced}"])[0].name == "mine"
    with pytest.raises(ConfigError, match="at least one"):
        name_models([])
    with pytest.raises(CheckpointError, match="model not found"):
        name_models(["no-such-model.pt"])


def test_a_path_holding_an_equals_sign_is_a_path(checkpoint: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a=b.pt").write_bytes(checkpoint.read_bytes())
    with pytest.raises(ConfigError, match="its name 'a=b' cannot be a URL name"):
        name_models(["a=b.pt"])  # the file, not the model `a` of a file `b.pt`
    named = name_models(["x=a=b.pt"])[0]
    assert named.name == "x" and named.reference.path == Path("a=b.pt")


@pytest.mark.parametrize("text, ok", [("nuclei", True), ("run-3.best_v2", True),
                                      (".hidden", False), ("..", False), ("a/b", False),
                                      ("a b", False), ("", False), ("x" * 129, False)])
def test_model_names(text: str, ok: bool) -> None:
    assert is_model_name(text) is ok
