"""The binary rule: every mask holds 0 and one foreground level. 1 and the type's full scale
(255, 65535) are both foreground when they never share a file; any single level is
foreground when it is the only one; masks with in-between values on thin edges
(anti-aliasing, interpolation) or JPEG noise are thresholded at half their level.
`Levels` collects the levels of a dataset's masks and says whether they are binary."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..classmap import format_value
from .facts import MaskFacts, nearest, soft_level
from .reading import MaskReading


@dataclass
class Levels:
    """Foreground levels found in masks read as binary."""

    exact: Counter = field(default_factory=Counter)  # "0/x" -> files
    soft: dict = field(default_factory=dict)  # "0/x" -> (file, level) with in-between values
    empty: int = 0
    tags: set = field(default_factory=set)  # "one", "full", or a raw level
    full: set = field(default_factory=set)  # full-scale levels met (255, 65535)
    files: dict = field(default_factory=dict)  # tag -> a file holding it

    def add_all(self, facts: Sequence[MaskFacts]) -> list[MaskFacts]:
        """Add every mask that reads as binary on its own (0 and one level, 1 or the full
        scale with soft edges or noise), then those whose in-between values fit a level of
        the others (a tiny object after a resize: 0, 40, 90 among 0/255 masks) or their
        own. Returns the masks that do not read as binary."""
        later, refused = [], []
        for f in facts:
            added = self._add_on_its_own(f)
            if added is None:
                later.append(f)
            elif not added:
                refused.append(f)
        for f in sorted(later, key=lambda f: not f.two_level):
            if not self._add_among_others(f):
                refused.append(f)
        return refused

    def _add_on_its_own(self, f: MaskFacts) -> bool | None:
        """Add a mask that is binary at 1 or the full scale (noisy ones at their nearest
        level); False: a noisy mask that is not binary; None: decided later, against the
        levels of the others."""
        if f.two_level and f.own_level in (None, 1.0, f.top):
            self.add(f, f.own_level)
            return True
        if f.noisy:
            if not f.looks_soft:
                return False
            level = nearest(f.level, [1.0, f.top]) if f.level else None
            self.add(f, level or round(f.level or 0))
            return True
        if f.looks_soft and f.level in (1.0, f.top):
            self.add(f, f.level)
            return True
        return None

    def _add_among_others(self, f: MaskFacts) -> bool:
        """Add a mask at a level the others hold (a tiny object's anti-aliased pixels), else
        at its own; False when it is not binary at any."""
        held = sorted({1.0 if t == "one" else f.top if t == "full" else float(t)
                       for t in self.tags})
        if f.two_level:  # 0/64 among anti-aliased 0/255 masks: a tiny object's pixel
            own = f.own_level or 0.0
            above = [v for v in held if v > own] if self.soft else []
            self.add(f, above[0] if above else own, soft=bool(above))
            return True
        level = soft_level(f, held)
        if level is None and f.looks_soft:
            level = f.level
        if level is None:
            return False
        self.add(f, level)
        return True

    def add(self, facts: MaskFacts, level: float | None, soft: bool = False) -> None:
        if level is None:
            self.empty += 1
            return
        if facts.two_level and not soft:
            self.exact[f"0/{format_value(level)}"] += 1
        else:
            self.soft.setdefault(f"0/{format_value(level)}", []).append((facts, level))
        tag = "one" if level == 1 else "full" if level == facts.top else level
        if tag == "full":
            self.full.add(format_value(level))
        self.tags.add(tag)
        self.files.setdefault(tag, facts.path)

    @property
    def binary(self) -> bool:
        return self.tags <= {"one", "full"} or len(self.tags) == 1

    def reading(self, count: int, names: tuple[str, ...] = ()) -> MaskReading:
        raw = {float(t) for t in self.tags if t not in ("one", "full")}
        levels = tuple(sorted(raw | ({1.0} if "one" in self.tags or not self.tags else set())))
        full = "full" in self.tags or not self.tags
        parts = [f"{n} masks {kind}" for kind, n in self.exact.most_common()]
        parts += [self._soft_part(kind, files) for kind, files in self.soft.items()]
        if self.empty:
            parts.append(f"{self.empty} empty masks")
        text = "binary: " + ", ".join(parts)
        if {"one", "full"} <= self.tags:
            text += f" (1 and {' and '.join(sorted(self.full))} both foreground)"
        if self.soft:
            text += ", threshold 50 %"
        if not self.tags:
            text += f" ({count} masks read, none with foreground)"
        return MaskReading("binary", 1, "binary", text, levels, full, class_names=names,
                           soft=bool(self.soft))

    @staticmethod
    def _soft_part(kind: str, files: list[tuple[MaskFacts, float]]) -> str:
        """The evidence of masks with in-between values at one level, such as "12 masks 0/255
        with 1.5 % in-between pixels" (JPEG masks named so)."""
        share = sum(f.soft_at(level).between for f, level in files) / \
            max(1, sum(f.pixels for f, _ in files))
        what = "JPEG masks" if all(f.lossy for f, _ in files) else "masks"
        return f"{len(files)} {what} {kind} with {100 * share:.1f} % in-between pixels"
