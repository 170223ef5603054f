"""The fine-tuned adapters' own accuracy, beside the published values the suite config gives."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from loramerge.repro.report.naming import task_columns as display_columns
from loramerge.repro.report.rows import AVERAGE_COLUMN, DELTA, mean, normalization_note
from loramerge.repro.search import Finetuned


def finetuned_table(
    finetuned: Finetuned,
    *,
    tasks: Sequence[str] | None = None,
    published: Mapping[str, float] | None = None,
    normalized_by: str | None = None,
    val_split: str = "val",
    test_split: str = "test",
) -> pd.DataFrame:
    """Each fine-tuned adapter alone: ``Dataset, Val, Test, [Published, Δ]`` in %, one row per task and ``Average``.

    ``published`` (task → percent, as the suite config gives it) adds the published value and ``Δ = Test −
    Published``; it must then cover every task.
    """
    tasks = list(tasks) if tasks is not None else sorted(finetuned)
    names = display_columns(tasks)
    published = dict(published or {})
    missing = [task for task in tasks if published and task not in published]
    if missing:
        raise ValueError(f"no published fine-tuned accuracy for tasks {missing}")
    columns = ["Dataset", "Val", "Test", *(["Published", DELTA] if published else [])]
    rows = []
    for task, name in zip(tasks, names, strict=True):
        for split in (val_split, test_split):
            if split not in finetuned[task]:
                raise ValueError(f"fine-tuned task {task!r} has no {split!r} accuracy")
        row = {"Dataset": name, "Val": 100.0 * finetuned[task][val_split], "Test": 100.0 * finetuned[task][test_split]}
        if published:
            row["Published"] = float(published[task])
            row[DELTA] = row["Test"] - row["Published"]
        rows.append(row)
    average = {"Dataset": AVERAGE_COLUMN, **{c: mean([row[c] for row in rows]) for c in columns[1:]}}
    table = pd.DataFrame([*rows, average], columns=columns)
    table.attrs["markdown_floatfmt"] = {}
    table.attrs["std_rows"] = []
    table.attrs["title"] = "Accuracy (%) of each fine-tuned adapter alone on its own task"
    table.attrs["notes"] = [
        note
        for note in (
            normalization_note(normalized_by),
            f"Published: the value the suite config gives; {DELTA} = Test − Published." if published else "",
        )
        if note
    ]
    return table
