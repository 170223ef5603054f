"""A chosen setting and its scores as typed records, the parts of a search result (:mod:`.result`).

:class:`AccuracySplit` holds a split's normalized per-task accuracy, :class:`HitsSplit` its joint Hits@k; scored over
replicates (DARE seeds), each holds the means, their sample spread and every replicate's own numbers. Each record
writes the JSON of the search result (``to_json``) and reads it back with checks (``from_json``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from loramerge.repro.search.records import JsonReader, ParamValue


@dataclass(frozen=True)
class AccuracySpread:
    """Sample standard deviation (ddof=1) over replicates; None (JSON null) where there is a single replicate."""

    mean: float | None
    per_task: dict[str, float | None]

    def to_json(self) -> dict[str, Any]:
        return {"mean": self.mean, "per_task": dict(self.per_task)}

    @classmethod
    def from_json(cls, reader: JsonReader, value: Any, where: str) -> AccuracySpread:
        data = reader.object(value, where, ("mean", "per_task"))
        return cls(
            reader.number(data["mean"], f"{where}.mean", nullable=True),
            reader.numbers(data["per_task"], f"{where}.per_task", nullable=True),
        )


@dataclass(frozen=True)
class HitsSpread:
    """Sample standard deviation (ddof=1) over replicates of the joint numbers, keyed like :class:`HitsSplit`."""

    per_task: dict[str, dict[int, float | None]]
    pooled: dict[int, float | None]

    def to_json(self) -> dict[str, Any]:
        return {"per_task": {task: _by_k(hits) for task, hits in self.per_task.items()}, "pooled": _by_k(self.pooled)}

    @classmethod
    def from_json(cls, reader: JsonReader, value: Any, where: str) -> HitsSpread:
        data = reader.object(value, where, ("per_task", "pooled"))
        per_task = reader.mapping(data["per_task"], f"{where}.per_task")
        return cls(
            {task: _read_by_k(reader, hits, f"{where}.per_task.{task}", True) for task, hits in per_task.items()},
            _read_by_k(reader, data["pooled"], f"{where}.pooled", True),
        )


@dataclass(frozen=True)
class Replicate:
    """One replicate's parameters (``{"seed": 0}``) and its own scores."""

    params: dict[str, ParamValue]
    scores: AccuracySplit | HitsSplit

    def to_json(self) -> dict[str, Any]:
        return {**self.params, **self.scores.to_json()}

    @classmethod
    def from_json(cls, reader: JsonReader, value: Any, where: str, split: type[AccuracySplit | HitsSplit]) -> Replicate:
        """Its parameters are the keys that are not the split's own."""
        data = reader.mapping(value, where)
        params = {name: item for name, item in data.items() if name not in split.KEYS}
        scores = {name: item for name, item in data.items() if name in split.KEYS}
        return cls(reader.params(params, where), split.from_json(reader, scores, where))


@dataclass(frozen=True)
class AccuracySplit:
    """A chosen setting on one split: accuracy in [0, 1] and normalized accuracy (%) per task, and their mean.

    Scored over replicates, every number is the mean over them, ``std`` their spread, ``replicates`` their own."""

    accuracy: dict[str, float]
    mean: float
    per_task: dict[str, float]
    std: AccuracySpread | None = None
    replicates: tuple[Replicate, ...] = ()

    KEYS: ClassVar[tuple[str, ...]] = ("accuracy", "mean", "per_task")

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"accuracy": dict(self.accuracy), "mean": self.mean, "per_task": dict(self.per_task)}
        return _with_spread(data, self.std, self.replicates)

    @classmethod
    def from_json(cls, reader: JsonReader, value: Any, where: str) -> AccuracySplit:
        data = reader.object(value, where, cls.KEYS, SPREAD_KEYS)
        return cls(
            reader.numbers(data["accuracy"], f"{where}.accuracy"),
            reader.number(data["mean"], f"{where}.mean"),
            reader.numbers(data["per_task"], f"{where}.per_task"),
            *_read_spread(reader, data, where, cls, AccuracySpread),
        )


@dataclass(frozen=True)
class HitsSplit:
    """A chosen setting on one split of the joint evaluation: Top-k (%) per task and k, pooled Hits@k (%), samples."""

    per_task: dict[str, dict[int, float]]
    pooled: dict[int, float]
    total: dict[str, int]
    std: HitsSpread | None = None
    replicates: tuple[Replicate, ...] = ()

    KEYS: ClassVar[tuple[str, ...]] = ("per_task", "pooled", "total")

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "per_task": {task: _by_k(hits) for task, hits in self.per_task.items()},
            "pooled": _by_k(self.pooled),
            "total": dict(self.total),
        }
        return _with_spread(data, self.std, self.replicates)

    @classmethod
    def from_json(cls, reader: JsonReader, value: Any, where: str) -> HitsSplit:
        data = reader.object(value, where, cls.KEYS, SPREAD_KEYS)
        per_task = reader.mapping(data["per_task"], f"{where}.per_task")
        total = reader.mapping(data["total"], f"{where}.total")
        return cls(
            {task: _read_by_k(reader, hits, f"{where}.per_task.{task}", False) for task, hits in per_task.items()},
            _read_by_k(reader, data["pooled"], f"{where}.pooled", False),
            {task: reader.integer(count, f"{where}.total.{task}") for task, count in total.items()},
            *_read_spread(reader, data, where, cls, HitsSpread),
        )


SPREAD_KEYS = ("std", "replicates")  # present together, on the splits of a setting scored over replicates


def _by_k(values: Mapping[int, Any]) -> dict[str, Any]:
    return {str(k): value for k, value in values.items()}


def _read_by_k(reader: JsonReader, value: Any, where: str, nullable: bool) -> dict[int, Any]:
    numbers = reader.numbers(value, where, nullable=nullable)
    for key in numbers:
        if not (key.isascii() and key.isdigit()) or str(int(key)) != key:
            raise reader.fail(f"{where}.{key}", "must be keyed by k, a whole number")
    return {int(key): number for key, number in numbers.items()}


def _read_spread(
    reader: JsonReader, data: Mapping[str, Any], where: str, split: type, spread: type
) -> tuple[Any, tuple[Replicate, ...]]:
    present = [key for key in SPREAD_KEYS if key in data]
    if not present:
        return None, ()
    if len(present) == 1:
        raise reader.fail(where, f"has {present[0]!r} without {next(k for k in SPREAD_KEYS if k not in present)!r}")
    replicates = reader.array(data["replicates"], f"{where}.replicates")
    return (
        spread.from_json(reader, data["std"], f"{where}.std"),
        tuple(
            Replicate.from_json(reader, item, f"{where}.replicates[{i}]", split) for i, item in enumerate(replicates)
        ),
    )


def _with_spread(
    data: dict[str, Any], std: AccuracySpread | HitsSpread | None, replicates: tuple[Replicate, ...]
) -> dict[str, Any]:
    if std is not None:
        data["std"] = std.to_json()
        data["replicates"] = [replicate.to_json() for replicate in replicates]
    return data


@dataclass(frozen=True)
class Chosen:
    """One selection rule's choice: the setting (as evaluation files spell it) and its validation and test scores."""

    params: dict[str, ParamValue]
    val: AccuracySplit | HitsSplit
    test: AccuracySplit | HitsSplit

    @property
    def has_spread(self) -> bool:
        """Whether it was scored over two replicates or more (one replicate has no sample spread)."""
        return self.test.std is not None and len(self.test.replicates) > 1

    def split(self, name: str) -> AccuracySplit | HitsSplit:
        """The scores on ``"val"`` or ``"test"``."""
        if name not in ("val", "test"):
            raise ValueError(f"a chosen setting has scores on 'val' and 'test', not {name!r}")
        return self.val if name == "val" else self.test

    def to_json(self) -> dict[str, Any]:
        return {"params": dict(self.params), "test": self.test.to_json(), "val": self.val.to_json()}

    @classmethod
    def from_json(cls, reader: JsonReader, value: Any, where: str, split: type[AccuracySplit | HitsSplit]) -> Chosen:
        data = reader.object(value, where, ("params", "test", "val"))
        return cls(
            reader.params(data["params"], f"{where}.params"),
            split.from_json(reader, data["val"], f"{where}.val"),
            split.from_json(reader, data["test"], f"{where}.test"),
        )


@dataclass(frozen=True)
class Step:
    """One setting the greedy search scored: the parameter swept, its value, the setting, and whether it was kept."""

    param: str
    value: ParamValue
    params: dict[str, ParamValue]
    score: float
    compared_with: float | None  # the best score of the sweep so far; None for a sweep's first value
    kept: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "compared_with": self.compared_with,
            "kept": self.kept,
            "param": self.param,
            "params": dict(self.params),
            "score": self.score,
            "value": self.value,
        }

    @classmethod
    def from_json(cls, reader: JsonReader, value: Any, where: str) -> Step:
        data = reader.object(value, where, ("compared_with", "kept", "param", "params", "score", "value"))
        return cls(
            reader.string(data["param"], f"{where}.param"),
            reader.param(data["value"], f"{where}.value"),
            reader.params(data["params"], f"{where}.params"),
            reader.number(data["score"], f"{where}.score"),
            reader.number(data["compared_with"], f"{where}.compared_with", nullable=True),
            reader.boolean(data["kept"], f"{where}.kept"),
        )
