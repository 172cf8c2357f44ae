"""Mixtures of named sources: the ``mixture`` and ``mixture_schedule`` options, validated, and
the exact per-epoch quota of every source.

A mixture entry names a source (a leaf) or a group of entries, and says how much of it an epoch
holds, exactly one of:

* ``{"repeat": r}`` — ``round(r * size)`` cuts of the source per epoch (``size``: its cuts
  after the filters);
* ``{"choose": n}`` — exactly ``n`` cuts per epoch;
* ``{"weight": w}`` — a share ``w`` (relative to its siblings' weights) of the budget left
  after the ``repeat``/``choose`` sources: ``epoch_cuts`` cuts, or ``epoch_hours`` hours, or,
  without either, one natural pass (the weighted sources' total hours);
* ``{}`` — a weight derived from the entry's hours: ``hours ** temperature`` (1: natural shares,
  0: uniform), the usual multilingual re-weighting.

A group is ``{"group": {name: entry, ...}, "weight": w, "temperature": t}`` (weight optional as
above, temperature optional: the exponent for its children's derived weights, by default the
config's ``temperature``); its share is split among its weighted children. Within one level
either every weighted entry gives ``weight`` or none does. A quota that fits the source (at most
its cuts, or its hours less half its longest cut) never takes a cut twice in one epoch
(:mod:`discoseq.plan.quota`); ``"unique": true`` on a leaf makes an epoch that would take a cut
twice an error instead of a repeat.

``mixture_schedule`` moves weights over epochs: a list of ``[epoch, {name: weight, ...}]``
points (the names: entries that carry a ``weight``), linear in between, constant before the
first and after the last point.

Quotas are exact: a count is a count, and an hours target is met by whole cuts with the epoch's
boundary in each source's stream at the cut boundary nearest to it, so a source's hours per
epoch are within one cut of its share and the epochs tile the stream without gap or overlap
(see :mod:`discoseq.plan.quota`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from discoseq._checks import close_name, is_int, is_real

__all__ = ["Mixture", "MixtureEntry", "MixtureSchedule", "check_sources"]

_LEAF_KEYS = frozenset({"repeat", "choose", "weight", "unique"})
_GROUP_KEYS = frozenset({"group", "weight", "temperature"})


@dataclass(frozen=True)
class MixtureEntry:
    """One entry of a mixture: a source (``children is None``) or a group."""

    name: str
    repeat: float | None = None
    choose: int | None = None
    weight: float | None = None
    temperature: float | None = None
    unique: bool = False
    children: tuple[MixtureEntry, ...] | None = None

    @property
    def is_group(self) -> bool:
        return self.children is not None

    @property
    def fixed(self) -> bool:
        """A source with a count of its own (``repeat`` or ``choose``), outside the budget."""
        return self.repeat is not None or self.choose is not None

    def leaves(self) -> Iterator[MixtureEntry]:
        if self.children is None:
            yield self
        else:
            for child in self.children:
                yield from child.leaves()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.children is not None:
            out["group"] = {c.name: c.to_dict() for c in self.children}
            if self.temperature is not None:
                out["temperature"] = self.temperature
        for key in ("repeat", "choose", "weight"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.unique:
            out["unique"] = True
        return out


def _entry(name: object, spec: object, where: str) -> MixtureEntry:
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where}: entry names must be non-empty strings, got {name!r}")
    here = f"{where}[{name!r}]"
    if not isinstance(spec, Mapping):
        raise ValueError(f"{here} must be a dict (e.g. {{'weight': 0.5}}), got {spec!r}")
    if "group" in spec:
        unknown = sorted(set(spec) - _GROUP_KEYS)
        if unknown:
            raise ValueError(
                f"{here}: unknown keys {unknown} for a group; known: {sorted(_GROUP_KEYS)}"
            )
        children = _entries(spec["group"], f"{here}['group']")
        t = spec.get("temperature")
        if t is not None and (not is_real(t) or not math.isfinite(t) or t < 0):
            raise ValueError(f"{here}: temperature={t!r} must be a finite number >= 0")
        return MixtureEntry(
            name, weight=_weight(spec.get("weight"), here), temperature=t, children=children
        )
    unknown = sorted(set(spec) - _LEAF_KEYS)
    if unknown:
        raise ValueError(f"{here}: unknown keys {unknown}; a source takes one of repeat, "
                         "choose, weight (or none), and unique; a group takes group")  # fmt: skip
    given = [k for k in ("repeat", "choose", "weight") if k in spec]
    if len(given) > 1:
        raise ValueError(f"{here}: give one of repeat, choose, weight, not {given}")
    repeat, choose = spec.get("repeat"), spec.get("choose")
    if repeat is not None and (not is_real(repeat) or not math.isfinite(repeat) or repeat < 0):
        raise ValueError(f"{here}: repeat={repeat!r} must be a finite number >= 0")
    if choose is not None and (not is_int(choose) or choose < 0):
        raise ValueError(f"{here}: choose={choose!r} must be an integer >= 0")
    unique = spec.get("unique", False)
    if not isinstance(unique, bool):
        raise ValueError(f"{here}: unique={unique!r} must be a bool")
    return MixtureEntry(
        name,
        repeat=None if repeat is None else float(repeat),
        choose=None if choose is None else int(choose),
        weight=_weight(spec.get("weight"), here),
        unique=unique,
    )


def _weight(w: object, here: str, zero: bool = False) -> float | None:
    if w is None:
        return None
    kind = "a finite number >= 0" if zero else "a positive finite number"
    if not is_real(w):  # a string from a JSON file: named before it is compared
        raise ValueError(f"{here}: weight={w!r} must be {kind} (got {type(w).__name__})")
    if not math.isfinite(w) or not (w >= 0 if zero else w > 0):  # type: ignore[arg-type, operator]
        out = "" if zero else " (to leave a source out: remove it, or give it {'choose': 0})"
        raise ValueError(f"{here}: weight={w!r} must be {kind}{out}")
    return float(w)  # type: ignore[arg-type]


def _entries(data: object, where: str) -> tuple[MixtureEntry, ...]:
    if not isinstance(data, Mapping) or not data:
        raise ValueError(f"{where} must be a non-empty dict of name -> entry, got {data!r}")
    entries = tuple(_entry(name, spec, where) for name, spec in data.items())
    weighted = [e for e in entries if not e.fixed]
    explicit = [e.name for e in weighted if e.weight is not None]
    if explicit and len(explicit) != len(weighted):
        implicit = [e.name for e in weighted if e.weight is None]
        raise ValueError(
            f"{where}: {explicit} give a weight and {implicit} do not; within one level give "
            "every weighted entry a weight, or none (then weights follow hours ** temperature)"
        )
    return entries


@dataclass(frozen=True)
class Mixture:
    """A validated, hashable mixture (see the module docstring); JSON via :meth:`to_dict`."""

    entries: tuple[MixtureEntry, ...]

    @classmethod
    def parse(cls, data: Mapping[str, Any] | Mixture) -> Mixture:
        if isinstance(data, Mixture):
            return data
        mixture = cls(_entries(data, "mixture"))
        names = [leaf.name for leaf in mixture.leaves()]
        groups = [e.name for e in mixture.walk() if e.is_group]
        dup = sorted({n for n in names + groups if (names + groups).count(n) > 1})
        if dup:
            raise ValueError(f"mixture: names {dup} appear more than once; names must be unique")
        return mixture

    @classmethod
    def natural(cls, names: Sequence[str]) -> Mixture:
        """Every source with a derived weight: one natural pass at temperature 1."""
        return cls(tuple(MixtureEntry(n) for n in names))

    def leaves(self) -> Iterator[MixtureEntry]:
        for e in self.entries:
            yield from e.leaves()

    def walk(self) -> Iterator[MixtureEntry]:
        stack = list(reversed(self.entries))
        while stack:
            e = stack.pop()
            yield e
            if e.children:
                stack.extend(reversed(e.children))

    @property
    def derived_top(self) -> int:
        """How many top-level entries take their weight from their hours (``{}`` or a group
        without a weight): the entries the config's ``temperature`` reweights."""
        return sum(1 for e in self.entries if not e.fixed and e.weight is None)

    def source_names(self) -> list[str]:
        return [leaf.name for leaf in self.leaves()]

    def to_dict(self) -> dict[str, Any]:
        return {e.name: e.to_dict() for e in self.entries}


@dataclass(frozen=True)
class MixtureSchedule:
    """Weights over epochs: ``points`` are ``(epoch, ((name, weight), ...))``, sorted."""

    points: tuple[tuple[int, tuple[tuple[str, float], ...]], ...]

    @classmethod
    def parse(cls, data: object) -> MixtureSchedule:
        if isinstance(data, MixtureSchedule):
            return data
        if isinstance(data, Mapping):
            raise ValueError(
                "mixture_schedule must be a list of [epoch, {name: weight}] points (JSON keys "
                "cannot be epochs)"
            )
        if not isinstance(data, Sequence) or isinstance(data, str | bytes) or not data:
            raise ValueError(f"mixture_schedule={data!r} must be a non-empty list of points")
        points = []
        for item in data:
            if (
                not isinstance(item, Sequence)
                or isinstance(item, str | bytes)
                or len(item) != 2
                or not is_int(item[0])
                or item[0] < 0
                or not isinstance(item[1], Mapping)
                or not item[1]
            ):
                raise ValueError(
                    f"mixture_schedule point {item!r} must be [epoch >= 0, {{name: weight}}]"
                )
            weights = tuple(
                (str(k), _weight(v, f"mixture_schedule epoch {item[0]} {k!r}", zero=True))
                for k, v in sorted(item[1].items())
            )
            points.append((int(item[0]), weights))
        points.sort(key=lambda p: p[0])
        epochs = [p[0] for p in points]
        if len(set(epochs)) != len(epochs):
            raise ValueError(f"mixture_schedule: epochs {epochs} repeat")
        first = [n for n, _ in points[0][1]]
        for epoch, weights in points[1:]:
            named = [n for n, _ in weights]
            if named != first:
                odd = sorted(set(named) ^ set(first))
                raise ValueError(
                    f"mixture_schedule: epoch {epoch} names {named}, epoch {points[0][0]} "
                    f"names {first}: every point must name the same entries (differ: {odd})"
                )
        return cls(tuple((e, tuple((n, float(w)) for n, w in ws)) for e, ws in points))  # type: ignore[arg-type]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(n for n, _ in self.points[0][1])

    def weights_at(self, epoch: int) -> dict[str, float]:
        """The weights of ``epoch``: linear between points, constant outside them."""
        return {n: float(w[0]) for n, w in self.weights_over(np.array([epoch])).items()}

    def weights_over(self, epochs: np.ndarray) -> dict[str, np.ndarray]:
        """The weights of every epoch of ``epochs`` (see :meth:`weights_at`)."""
        xs = np.array([e for e, _ in self.points], dtype=np.float64)
        x = np.asarray(epochs, dtype=np.float64)
        return {
            name: np.interp(x, xs, np.array([dict(ws)[name] for _, ws in self.points]))
            for name in self.names
        }

    def to_list(self) -> list[list[Any]]:
        return [[e, dict(ws)] for e, ws in self.points]

    def check_against(self, mixture: Mixture) -> None:
        weighted = {e.name for e in mixture.walk() if e.weight is not None}
        unknown = sorted(set(self.names) - weighted)
        if unknown:
            raise ValueError(
                f"mixture_schedule names {unknown}, which are not mixture entries with a "
                f"weight (those are {sorted(weighted)}): a schedule moves the weights of "
                'entries written {"weight": w}; a {} entry\'s weight is derived from its hours '
                "(temperature), a repeat or choose entry has none"
            )


def check_sources(mixture: Mixture, names: Sequence[str]) -> None:
    """The mixture names exactly the given sources (ValueError naming the difference)."""
    mine = mixture.source_names()
    unknown = sorted(set(mine) - set(names))
    missing = sorted(set(names) - set(mine))
    if unknown or missing:
        parts = []
        if unknown:
            parts.append(f"names {unknown}, which are not sources")
        if missing:
            parts.append(f"leaves out the sources {missing}")
        meant = {name: close_name(name, missing) for name in unknown}
        hint = "".join(f" (did you mean {m!r} for {n!r}?)" for n, m in meant.items() if m)
        raise ValueError(
            f"mixture {' and '.join(parts)}{hint}; the sources are {sorted(names)} (every source "
            "needs an entry: {} for a derived weight)"
        )
