"""Hyper-parameter selection from evaluations: KnOTS's greedy linear search and the full-grid argmax.

A *setting* is one merged model at one scale: the structural parameters of the merge (the evaluation file's
``point``) plus ``{"lam": λ}``. Selection only ever looks at validation; test numbers are read for the chosen setting.

- :mod:`.records`: reading the evaluation and fine-tuned files; :class:`SelectionError`.
- :mod:`.scores`: the normalization base and the scores of one setting on one split (per-task, joint, replicated).
- :mod:`.settings`: setting keys and the :class:`SettingTable` of every evaluated setting of one method.
- :mod:`.strategies`: the greedy and full-grid searches over a setting table.
- :mod:`.selection`: :func:`select_method` and :func:`select_joint`, which assemble the typed result.
- :mod:`.result` and :mod:`.chosen`: the typed result (:class:`Selection`, :class:`JointSelection`) that the search
  writes as JSON and the report reads back (:func:`read_selection`).
"""

from loramerge.repro.search.chosen import AccuracySplit, AccuracySpread, Chosen, HitsSplit, HitsSpread, Replicate, Step
from loramerge.repro.search.records import (
    Finetuned,
    ParamValue,
    PathLike,
    SelectionError,
    evaluation_files,
    load_evaluations,
    load_finetuned,
)
from loramerge.repro.search.result import RULES, JointSelection, Selection, read_selection
from loramerge.repro.search.scores import (
    NORMALIZATION_NOTES,
    NORMALIZE_BY,
    JointScores,
    ReplicatedScores,
    Scores,
    SplitScores,
    finetuned_base,
    normalization_base,
    normalize,
)
from loramerge.repro.search.selection import chosen_setting, select_joint, select_method
from loramerge.repro.search.settings import (
    SCALE_PARAM,
    SettingKey,
    SettingTable,
    build_joint_table,
    build_setting_table,
    describe_setting,
    replicate_table,
    setting_key,
)
from loramerge.repro.search.strategies import GreedyResult, greedy_select, grid_select

__all__ = [
    "NORMALIZATION_NOTES",
    "NORMALIZE_BY",
    "RULES",
    "SCALE_PARAM",
    "AccuracySplit",
    "AccuracySpread",
    "Chosen",
    "Finetuned",
    "GreedyResult",
    "HitsSplit",
    "HitsSpread",
    "JointScores",
    "JointSelection",
    "ParamValue",
    "PathLike",
    "Replicate",
    "ReplicatedScores",
    "Scores",
    "Selection",
    "SelectionError",
    "SettingKey",
    "SettingTable",
    "SplitScores",
    "Step",
    "build_joint_table",
    "build_setting_table",
    "chosen_setting",
    "describe_setting",
    "evaluation_files",
    "finetuned_base",
    "greedy_select",
    "grid_select",
    "load_evaluations",
    "load_finetuned",
    "normalization_base",
    "normalize",
    "read_selection",
    "replicate_table",
    "select_joint",
    "select_method",
    "setting_key",
]
