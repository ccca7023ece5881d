"""How each served model is named in URLs (`/v2/models/{name}/...`), decided once at start-up.

The rule: a model is named by what it is called where it comes from, `ModelReference.name`
(`artefacts.references.resolve_model`): a shipped model by its name (`nuclei`), a training
run folder by the folder's name, a model folder by its name, a file by its stem
(`runs/exp1/models/best.pt` -> `best`, `unet.onnx` -> `unet`, `cells.zip` -> `cells`).
`--model NAME=REF` names a model explicitly. A name is letters, digits, `.`, `_` and `-`,
starting with a letter or digit (at most 128 characters), so that it is one URL path segment
and never a path. Two models whose names are equal ignoring case are refused at start-up in
one line that says how to name them apart; nothing is renamed silently.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..artefacts.references import ModelReference, resolve_model
from ..errors import ConfigError

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
NAME_RULE = "letters, digits, '.', '_' and '-', starting with a letter or digit, at most 128"


def is_model_name(text: str) -> bool:
    """Whether `text` can name a served model (see the module docstring)."""
    return NAME_PATTERN.fullmatch(text) is not None


@dataclass(frozen=True)
class NamedModel:
    """A model to serve: its URL name and the reference it opens from.

    Attributes:
        name: the name in URLs.
        reference: what the user named, identified by the one door (`resolve_model`).
        given: the `--model` value as given (for messages).
    """

    name: str
    reference: ModelReference
    given: str


def _split(value: str) -> tuple[str | None, str]:
    """(explicit name or None, reference) of a `--model` value: `NAME=REF` names a model,
    unless the whole value is an existing path (a file whose name holds `=`)."""
    name, sep, rest = value.partition("=")
    if sep and rest and is_model_name(name) and not Path(value).exists():
        return name, rest
    return None, value


def name_models(values: list[str]) -> list[NamedModel]:
    """The served models of the `--model` values, each named by the module docstring's rule,
    in the order given; nothing is opened yet.

    Args:
        values: `--model` values: anything `resolve_model` takes, optionally `NAME=REF`.

    Returns:
        One `NamedModel` per value.

    Raises:
        ConfigError: no model; a name that is not a URL name; two models of the same name
            (ignoring case), naming both and the `NAME=REF` spelling that resolves it.
        CheckpointError: a reference that names no model (from `resolve_model`).
    """
    if not values:
        raise ConfigError("serve needs at least one --model")
    named: list[NamedModel] = []
    for value in values:
        explicit, given = _split(value)
        reference = resolve_model(given)
        name = explicit or reference.name
        if not is_model_name(name):
            raise ConfigError(f"--model {value}: its name {name!r} cannot be a URL name "
                              f"({NAME_RULE} characters); name it: --model NAME={given}")
        named.append(NamedModel(name, reference, value))
    seen: dict[str, NamedModel] = {}
    for model in named:
        other = seen.get(model.name.lower())
        if other is not None:
            raise ConfigError(f"two models are named {model.name!r} in URLs (--model "
                              f"{other.given} and --model {model.given}); name them apart: "
                              f"--model NAME=REF, e.g. --model "
                              f"{model.name}-2={model.reference.given}")
        seen[model.name.lower()] = model
    return named
