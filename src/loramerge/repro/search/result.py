"""The search result as typed records: what `search` writes (``results/<suite>/search*/<method>.json``) and the
tables and figures read.

:class:`Selection` is one method's per-task selection (:func:`~loramerge.repro.search.select_method`),
:class:`JointSelection` its joint one (:func:`~loramerge.repro.search.select_joint`). Each holds the two choices,
greedy and grid (:class:`Chosen`: the setting and its scores on validation and test), and the greedy search's path.
``to_json()`` gives the JSON object the workflow writes; ``from_json()`` and :func:`read_selection` read one back and
check its shape, with errors that name the file and the key.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from loramerge.repro.search.chosen import AccuracySplit, Chosen, HitsSplit, Step
from loramerge.repro.search.records import JsonReader, ParamValue, PathLike, read_json_file

RULES = ("greedy", "grid")  # the two selection rules, in the order the tables show them


@dataclass(frozen=True, kw_only=True)
class _Selected:
    """What both kinds of selection hold."""

    method: str
    tasks: tuple[str, ...]
    settings_evaluated: int
    greedy: Chosen
    grid: Chosen
    greedy_path: tuple[Step, ...]
    replicates: dict[str, list[ParamValue]] | None = None  # replicate parameter -> its values (DARE seeds)

    def chosen(self, rule: str) -> Chosen:
        """The ``"greedy"`` or ``"grid"`` choice."""
        if rule not in RULES:
            raise ValueError(f"selection results of {self.method!r} have no {rule!r} choice")
        return self.greedy if rule == "greedy" else self.grid

    @property
    def replicate_count(self) -> int:
        """How many replicates each setting was scored over (1 without replicates)."""
        return math.prod(len(values) for values in (self.replicates or {}).values())

    def _common_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "greedy": self.greedy.to_json(),
            "greedy_path": [step.to_json() for step in self.greedy_path],
            "grid": self.grid.to_json(),
            "method": self.method,
            "settings_evaluated": self.settings_evaluated,
            "tasks": list(self.tasks),
        }
        if self.replicates is not None:
            data["replicates"] = {name: list(values) for name, values in self.replicates.items()}
        return data


@dataclass(frozen=True, kw_only=True)
class Selection(_Selected):
    """One method's per-task selection, scored by normalized accuracy; ``normalization_base`` is in percent."""

    normalized_by: str
    normalization_base: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        data = self._common_json()
        data["normalization_base"] = dict(self.normalization_base)
        data["normalized_by"] = self.normalized_by
        return data

    @classmethod
    def from_json(cls, data: Any, source: str = "selection") -> Selection:
        reader = JsonReader(source)
        top = reader.object(data, "", (*COMMON_KEYS, "normalization_base", "normalized_by"), ("replicates",))
        return cls(
            **_common_fields(reader, top, AccuracySplit),
            normalized_by=reader.string(top["normalized_by"], "normalized_by"),
            normalization_base=reader.numbers(top["normalization_base"], "normalization_base"),
        )


@dataclass(frozen=True, kw_only=True)
class JointSelection(_Selected):
    """One method's joint selection, on pooled validation Hits@``select_k``."""

    ks: tuple[int, ...]
    select_k: int

    def to_json(self) -> dict[str, Any]:
        data = self._common_json()
        data["ks"] = list(self.ks)
        data["select_k"] = self.select_k
        return data

    @classmethod
    def from_json(cls, data: Any, source: str = "joint selection") -> JointSelection:
        reader = JsonReader(source)
        top = reader.object(data, "", (*COMMON_KEYS, "ks", "select_k"), ("replicates",))
        return cls(
            **_common_fields(reader, top, HitsSplit),
            ks=tuple(reader.integer(k, f"ks[{i}]") for i, k in enumerate(reader.array(top["ks"], "ks"))),
            select_k=reader.integer(top["select_k"], "select_k"),
        )


COMMON_KEYS = ("greedy", "greedy_path", "grid", "method", "settings_evaluated", "tasks")


def _common_fields(
    reader: JsonReader, top: Mapping[str, Any], split: type[AccuracySplit | HitsSplit]
) -> dict[str, Any]:
    replicates = None
    if "replicates" in top:
        replicates = {
            name: [
                reader.param(item, f"replicates.{name}[{i}]")
                for i, item in enumerate(reader.array(values, f"replicates.{name}"))
            ]
            for name, values in reader.mapping(top["replicates"], "replicates").items()
        }
    path = reader.array(top["greedy_path"], "greedy_path")
    return {
        "method": reader.string(top["method"], "method"),
        "tasks": tuple(
            reader.string(task, f"tasks[{i}]") for i, task in enumerate(reader.array(top["tasks"], "tasks"))
        ),
        "settings_evaluated": reader.integer(top["settings_evaluated"], "settings_evaluated"),
        "greedy": Chosen.from_json(reader, top["greedy"], "greedy", split),
        "grid": Chosen.from_json(reader, top["grid"], "grid", split),
        "greedy_path": tuple(Step.from_json(reader, step, f"greedy_path[{i}]") for i, step in enumerate(path)),
        "replicates": replicates,
    }


def read_selection(path: PathLike) -> Selection | JointSelection:
    """A search result file: a :class:`JointSelection` if it has ``select_k``, else a :class:`Selection`."""
    data = read_json_file(path)
    if isinstance(data, dict) and "select_k" in data:
        return JointSelection.from_json(data, str(path))
    return Selection.from_json(data, str(path))
