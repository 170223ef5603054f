"""The paper's published numbers, to be tabled and plotted beside ours.

Each folder holds one suite's tables as the paper prints them, copied verbatim from the paper's CSVs
(``shared/paper/tables``): ``vit-b32`` is the ViT-B/32 × 8 vision tasks suite (Tables 1–3, 5, 7, 9). The config key
``report.paper`` names the folder. Task columns use the display names of
:data:`loramerge.repro.report.tables.TASK_DISPLAY_NAMES` (``cars`` → ``Cars``).
"""

from __future__ import annotations

from importlib import resources

import pandas as pd

PAPERS = ("vit-b32",)
TABLE_FILES = {
    "table1": "table1_energy_svd.csv",
    "table2": "table2_energy_cur.csv",
    "table3": "table3_pertask.csv",
    "table5": "table5_joint.csv",
    "table7": "table7_alpha.csv",
    "table9": "table9_joint_pertask.csv",
}
FULL_FINETUNE = "Full Finetune"  # the paper's name for the fine-tuned row of Table 3
_COMMON_ROWS = {"ta": "TA", "ties": "TIES", "dare_ties": "DARE-TIES"}
# Our method → its row (Table 3, 9) or column (Table 5) in the paper; methods missing here have none there (CUR-TIES
# in UR and R space: Table 7's α = 0 is the CUR branch). The hybrid is "Ours-TIES" in Table 3 and "Ours" in 5 and 9.
PAPER_METHOD_NAMES = {
    "table3": {
        **_COMMON_ROWS,
        "knots_ties": "KnOTS-TIES",
        "knots_dare_ties": "KnOTS-DARE-TIES",
        "core_ties": "CoreSpace-TIES",
        "hybrid": "Ours-TIES",
    },
    "table5": {**_COMMON_ROWS, "knots_ties": "K-TIES", "knots_dare_ties": "K-DARE-TIES", "hybrid": "Ours"},
    "table9": {**_COMMON_ROWS, "knots_ties": "KnOTS-TIES", "knots_dare_ties": "KnOTS-DARE-TIES", "hybrid": "Ours"},
}
# Table 3 rows the paper copied from KnOTS (Stoica et al., 2025) instead of replicating them.
COPIED_FROM_KNOTS = "copied_from_knots_paper"


def read_paper_table(paper: str, table: str) -> pd.DataFrame:
    """One of the paper's tables (``table1`` … ``table9``, see :data:`TABLE_FILES`) as printed."""
    if paper not in PAPERS:
        raise ValueError(f"report.paper {paper!r} is not one of the papers with published numbers {list(PAPERS)}")
    if table not in TABLE_FILES:
        raise ValueError(f"the paper has no table {table!r} here; known: {sorted(TABLE_FILES)}")
    with resources.files(__name__).joinpath(paper, TABLE_FILES[table]).open("r", encoding="utf-8") as handle:
        return pd.read_csv(handle)


def paper_method_name(table: str, method: str) -> str | None:
    """The paper's name for our method in ``table``, or None when the paper has no such row."""
    return PAPER_METHOD_NAMES[table].get(method)
