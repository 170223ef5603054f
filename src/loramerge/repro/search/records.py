"""Reading the workflow's evaluation and fine-tuned JSON files, and the error every selection problem raises.

- fine-tuned: ``{"task": "digits", "records": [{"split": "val", "correct": 280, "total": 300, "accuracy": ...}, ...]}``
- evaluation: ``{"method": "knots_ties", "point": {"top_k": 20}, "records": [{"lam": 0.5, "task": "digits",
  "split": "val", "correct": 250, "total": 300, "accuracy": ...}, ...]}``
- joint evaluation: ``{"method": ..., "point": {...}, "records": [{"lam": 0.5, "task": "cars", "split": "val",
  "total": 1608, "hits": {"1": 980, "3": 1300, "5": 1400}}, ...]}``

Accuracy is ``correct / total`` when both are present (exact, whatever rounding ``accuracy`` had), else ``accuracy``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from loramerge.errors import LoramergeError

ParamValue = int | float | str | bool
Finetuned = Mapping[str, Mapping[str, float]]  # task -> split -> accuracy in [0, 1]
PathLike = str | Path


class SelectionError(LoramergeError):
    """An evaluation or fine-tuned file, or a setting, that selection cannot use; the message names it."""


def record_accuracy(record: Mapping[str, Any], source: str) -> float:
    """One record's accuracy in [0, 1]: ``correct / total`` when both are present, else ``accuracy``."""
    if "correct" in record and "total" in record:
        total = record["total"]
        if total <= 0:
            raise SelectionError(f"{source}: record {dict(record)} has total={total}")
        return float(record["correct"]) / float(total)
    if "accuracy" in record:
        return float(record["accuracy"])
    raise SelectionError(f"{source}: record {dict(record)} has neither correct/total nor accuracy")


def _ends_inside_document(text: str) -> bool:
    """Whether `text` stops inside a string or an unclosed object or array, as a JSON file cut short does."""
    depth, in_string, escaped = 0, False, False
    for char in text:
        if escaped:
            escaped = False
        elif in_string:
            escaped, in_string = char == "\\", char != '"'
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
    return in_string or depth > 0


def read_json_file(path: PathLike) -> Any:
    """The JSON document of a workflow file; a file cut off before its document ends (a half-written or truncated
    copy) is named as such, any other problem with the error's own words."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise SelectionError(f"{path}: cannot read JSON ({error})") from error
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        if not text.strip() or _ends_inside_document(text):
            raise SelectionError(
                f"{path}: incomplete JSON: the file ends (at {len(text.encode('utf-8'))} bytes) before its document "
                "does; a half-written or truncated file"
            ) from error
        raise SelectionError(f"{path}: cannot read JSON ({error})") from error


def _read_json(path: PathLike) -> dict[str, Any]:
    data = read_json_file(path)
    if not isinstance(data, dict) or not isinstance(data.get("records"), list):
        raise SelectionError(f"{path}: expected an object with a 'records' list")
    return data


def load_finetuned(paths: Iterable[PathLike]) -> dict[str, dict[str, float]]:
    """Read fine-tuned evaluation files into ``{task: {split: accuracy}}`` (accuracy in [0, 1])."""
    finetuned: dict[str, dict[str, float]] = {}
    for path in paths:
        data = _read_json(path)
        task = data.get("task")
        if not isinstance(task, str):
            raise SelectionError(f"{path}: missing 'task'")
        if task in finetuned:
            raise SelectionError(f"{path}: task {task!r} appears in two fine-tuned files")
        splits: dict[str, float] = {}
        for record in data["records"]:
            splits[str(record["split"])] = record_accuracy(record, str(path))
        finetuned[task] = dict(sorted(splits.items()))
    return dict(sorted(finetuned.items()))


def evaluation_files(folders: Sequence[PathLike]) -> list[Path]:
    """The evaluation files of one method, in point order, from the folders its evaluation jobs wrote (one per chunk
    of points, `evaluate.points_per_job`); a point evaluated in two of them is an error."""
    files: dict[str, Path] = {}
    for folder in map(Path, folders):
        for path in folder.glob("*.json"):
            if path.name in files:
                raise SelectionError(f"{path}: point {path.stem!r} was also evaluated in {files[path.name].parent}")
            files[path.name] = path
    return [files[name] for name in sorted(files)]


def load_evaluations(paths: Iterable[PathLike]) -> list[dict[str, Any]]:
    """Read merged-model evaluation files (per-task or joint) as they are, checking method, point and records."""
    evaluations = []
    for path in paths:
        data = _read_json(path)
        if not isinstance(data.get("method"), str) or not isinstance(data.get("point", {}), dict):
            raise SelectionError(f"{path}: expected 'method' (a string) and 'point' (an object)")
        data.setdefault("point", {})
        data["source"] = str(path)
        evaluations.append(data)
    return evaluations


class JsonReader:
    """Checks on a JSON value read from ``source``; each failure is a SelectionError naming the source and the key
    (``greedy.test.per_task.dtd``)."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, problem: str) -> SelectionError:
        return SelectionError(f"{self.source}: {where or 'the top level'} {problem}")

    def object(self, value: Any, where: str, required: Iterable[str], optional: Iterable[str] = ()) -> dict[str, Any]:
        """An object with every key of ``required``, and no key outside ``required`` and ``optional``."""
        data = self.mapping(value, where)
        required = list(required)
        missing = [key for key in required if key not in data]
        if missing:
            raise self.fail(where, f"has no {missing}")
        unknown = sorted(set(data) - set(required) - set(optional))
        if unknown:
            raise self.fail(where, f"has unexpected keys {unknown}")
        return data

    def mapping(self, value: Any, where: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, f"must be an object, not {value!r}")
        return value

    def array(self, value: Any, where: str) -> list[Any]:
        if not isinstance(value, list):
            raise self.fail(where, f"must be an array, not {value!r}")
        return value

    def string(self, value: Any, where: str) -> str:
        if not isinstance(value, str):
            raise self.fail(where, f"must be a string, not {value!r}")
        return value

    def integer(self, value: Any, where: str) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.fail(where, f"must be an integer, not {value!r}")
        return value

    def boolean(self, value: Any, where: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(where, f"must be true or false, not {value!r}")
        return value

    def number(self, value: Any, where: str, *, nullable: bool = False) -> Any:
        """An int or float as it is (so that writing it back gives the same text); null only if ``nullable``."""
        if value is None and nullable:
            return None
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise self.fail(where, f"must be a number{' or null' if nullable else ''}, not {value!r}")
        return value

    def numbers(self, value: Any, where: str, *, nullable: bool = False) -> dict[str, Any]:
        """An object of numbers, by name."""
        data = self.mapping(value, where)
        return {key: self.number(item, f"{where}.{key}", nullable=nullable) for key, item in data.items()}

    def param(self, value: Any, where: str) -> ParamValue:
        if not isinstance(value, int | float | str | bool):
            raise self.fail(where, f"must be a number, string or boolean, not {value!r}")
        return value

    def params(self, value: Any, where: str) -> dict[str, ParamValue]:
        data = self.mapping(value, where)
        return {name: self.param(item, f"{where}.{name}") for name, item in data.items()}
