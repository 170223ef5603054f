"""Selection for one method: build its setting table, run both searches on validation, and assemble the typed
result (:mod:`.result`) with the test numbers of both choices.

The joint search selects on the pooled validation Hits@``select_k`` and its greedy search keeps a value only if it is
strictly better (``>``), where the per-task search keeps ties (``≥``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from loramerge.repro.search.chosen import AccuracySplit, Chosen, HitsSplit, Step
from loramerge.repro.search.records import (
    Finetuned,
    JsonReader,
    ParamValue,
    PathLike,
    SelectionError,
    load_evaluations,
    load_finetuned,
)
from loramerge.repro.search.result import JointSelection, Selection
from loramerge.repro.search.scores import normalization_base
from loramerge.repro.search.settings import (
    SettingTable,
    build_joint_table,
    build_setting_table,
    plain_value,
    replicate_table,
)
from loramerge.repro.search.strategies import greedy_select, grid_select


def chosen_setting(
    table: SettingTable,
    params: Mapping[str, ParamValue],
    split_type: type[AccuracySplit | HitsSplit],
    *,
    val_split: str = "val",
    test_split: str = "test",
) -> Chosen:
    """One setting's record: its parameters as the evaluation files spell them, and its validation and test scores."""
    # The scores define their JSON form (replicate means, spreads); reading it through the record's checks keeps that
    # one definition instead of a second, typed copy of the averaging.
    reader = JsonReader(f"{table.method} setting")
    return Chosen(
        dict(sorted(table.stored_params(params).items())),
        split_type.from_json(reader, table.lookup(params, val_split).to_json(), val_split),
        split_type.from_json(reader, table.lookup(params, test_split).to_json(), test_split),
    )


def _check_replicates(
    replicates: Mapping[str, Sequence[ParamValue]] | None, order: Sequence[str], defaults: Mapping[str, ParamValue]
) -> None:
    for name in replicates or {}:
        if name in order or name in defaults:
            raise SelectionError(f"replicate parameter {name!r} must not also be searched or have a default")
        if not replicates[name]:
            raise SelectionError(f"replicate parameter {name!r} has no values")


def _select(
    table: SettingTable,
    order: Sequence[str],
    grids: Mapping[str, Sequence[ParamValue]],
    defaults: Mapping[str, ParamValue],
    *,
    split_type: type[AccuracySplit | HitsSplit],
    replicates: Mapping[str, Sequence[ParamValue]] | None,
    val_split: str,
    test_split: str,
    allow_missing: bool,
    carry_best_across_params: bool,
    strict: bool,
) -> dict[str, Any]:
    """The fields both kinds of selection share, as keyword arguments of :class:`Selection`/:class:`JointSelection`."""
    _check_replicates(replicates, order, defaults)
    if replicates:
        table = replicate_table(table, replicates)
    greedy = greedy_select(
        table, order, grids, defaults, split=val_split, carry_best_across_params=carry_best_across_params, strict=strict
    )
    grid = grid_select(table, order, grids, defaults, split=val_split, allow_missing=allow_missing)
    splits = {"val_split": val_split, "test_split": test_split}
    return {
        "method": table.method,
        "tasks": tuple(table.tasks),
        "settings_evaluated": len(table),
        "greedy": chosen_setting(table, greedy.params, split_type, **splits),
        "grid": chosen_setting(table, grid, split_type, **splits),
        "greedy_path": tuple(Step(**step) for step in greedy.path),
        "replicates": (
            {name: [plain_value(value) for value in replicates[name]] for name in sorted(replicates)}
            if replicates
            else None
        ),
    }


def _loaded(evaluations: Iterable[Mapping[str, Any] | PathLike]) -> list[Mapping[str, Any]]:
    """Evaluation dicts as given, evaluation files read and checked."""
    return [item if isinstance(item, Mapping) else load_evaluations([item])[0] for item in evaluations]


def select_method(
    evaluations: Iterable[Mapping[str, Any] | PathLike],
    finetuned: Finetuned | Iterable[PathLike],
    order: Sequence[str],
    grids: Mapping[str, Sequence[ParamValue]],
    defaults: Mapping[str, ParamValue],
    *,
    normalize_by: str = "measured",
    published: Mapping[str, float] | None = None,
    replicates: Mapping[str, Sequence[ParamValue]] | None = None,
    base_split: str = "test",
    val_split: str = "val",
    test_split: str = "test",
    allow_missing: bool = False,
    carry_best_across_params: bool = False,
) -> Selection:
    """Greedy and full-grid selection on ``val_split`` for one method, with test numbers of both choices.

    ``evaluations``: evaluation file paths or already loaded evaluation dicts; ``finetuned``: fine-tuned file paths
    or ``{task: {split: accuracy}}``; ``normalize_by``/``published`` choose the base (:func:`normalization_base`);
    ``replicates`` (e.g. ``{"seed": [0, 1, 2]}``) merges the settings that differ only in those parameters.
    ``normalization_base`` of the result is in percent.
    """
    loaded = _loaded(evaluations)
    if not isinstance(finetuned, Mapping):
        finetuned = load_finetuned(finetuned)
    base = normalization_base(finetuned, normalize_by, published, base_split=base_split)
    table = build_setting_table(loaded, finetuned, base=base)
    fields = _select(
        table,
        order,
        grids,
        defaults,
        split_type=AccuracySplit,
        replicates=replicates,
        val_split=val_split,
        test_split=test_split,
        allow_missing=allow_missing,
        carry_best_across_params=carry_best_across_params,
        strict=False,
    )
    return Selection(
        **fields,
        normalized_by=normalize_by,
        normalization_base={task: 100.0 * value for task, value in base.items()},
    )


def select_joint(
    evaluations: Iterable[Mapping[str, Any] | PathLike],
    order: Sequence[str],
    grids: Mapping[str, Sequence[ParamValue]],
    defaults: Mapping[str, ParamValue],
    *,
    ks: Sequence[int],
    select_k: int,
    tasks: Sequence[str] | None = None,
    replicates: Mapping[str, Sequence[ParamValue]] | None = None,
    val_split: str = "val",
    test_split: str = "test",
    allow_missing: bool = False,
    carry_best_across_params: bool = False,
) -> JointSelection:
    """Greedy (strict ``>``) and full-grid selection on pooled validation Hits@``select_k`` for one method.

    Each split of a choice holds Top-k (%) per task and k, pooled Hits@k (%) and the samples per task.
    """
    loaded = _loaded(evaluations)
    table = build_joint_table(loaded, ks=ks, select_k=select_k, tasks=tasks)
    fields = _select(
        table,
        order,
        grids,
        defaults,
        split_type=HitsSplit,
        replicates=replicates,
        val_split=val_split,
        test_split=test_split,
        allow_missing=allow_missing,
        carry_best_across_params=carry_best_across_params,
        strict=True,
    )
    return JointSelection(**fields, ks=tuple(sorted(int(k) for k in ks)), select_k=int(select_k))
