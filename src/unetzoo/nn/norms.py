"""Normalisation layers chosen by name, and `Choice`, the read-only table every layer option
of `factory.py` is built on (the one place each name maps to a layer, with the error for a
wrong name). The conv blocks use the norms; the other tables build on the blocks."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from typing import Generic, TypeVar

from torch import nn

from ..errors import ModelError

T = TypeVar("T")

# the type name of the `norm` option; the accepted values are the keys of NORMS
NormKind = str


class Choice(Mapping[str, T], Generic[T]):
    """A read-only table `name -> builder` for one option, with the error for a wrong name.

    Args:
        option: the option's name as users write it (e.g. "norm"), used in the error.
        builders: the accepted names, in the order they are listed, and their builders.
    """

    def __init__(self, option: str, builders: Mapping[str, T]) -> None:
        self.option = option
        self._builders = dict(builders)

    @property
    def names(self) -> tuple[str, ...]:
        """The accepted names, in listing order."""
        return tuple(self._builders)

    def __getitem__(self, name: str) -> T:
        try:
            return self._builders[name]
        except (KeyError, TypeError):
            raise ModelError(f"unknown {self.option} {name!r}; choose one of "
                             f"{', '.join(self.names)}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._builders)

    def __len__(self) -> int:
        return len(self._builders)


NORMS: Choice[Callable[[int], nn.Module]] = Choice("norm", {
    "batch": nn.BatchNorm2d,
    "instance": lambda channels: nn.InstanceNorm2d(channels, affine=True),
    "group": lambda channels: nn.GroupNorm(math.gcd(32, channels), channels),
    "none": lambda channels: nn.Identity(),
})


def create_norm(kind: NormKind, channels: int) -> nn.Module:
    """A 2D normalisation layer: batch, instance (affine), group (gcd(32, C) groups) or none.

    Raises:
        ModelError: `kind` is not one of `NORMS.names`.
    """
    return NORMS[kind](channels)
