"""The paper's published numbers, to be tabled and plotted beside ours.

Each folder holds one suite's tables as the paper prints them, copied verbatim: ``vit-b32`` is the ViT-B/32 × 8
vision tasks suite (Tables 1–3, 5, 7–9), ``llama3-8b`` the Llama-3-8B × 6 NLI tasks suite (Table 4, its per-task
table). The config key ``report.paper`` names the folder. Task columns use the
display names of :data:`loramerge.repro.report.naming.TASK_DISPLAY_NAMES` (``cars`` → ``Cars``); the paper's name for
each of our methods is in the method catalogue (``loramerge.methods.catalog``, ``paper_names``).
"""

from __future__ import annotations

from importlib import resources

import pandas as pd

PAPERS = ("vit-b32", "llama3-8b")
TABLE_FILES = {
    "table1": "table1_energy_svd.csv",
    "table2": "table2_energy_cur.csv",
    "table3": "table3_pertask.csv",
    "table4": "table4_pertask.csv",
    "table5": "table5_joint.csv",
    "table7": "table7_alpha.csv",
    "table8": "table8_alpha_knots_lego.csv",
    "table9": "table9_joint_pertask.csv",
}
# The paper's α sweeps (ΔW = α·first + (1−α)·second) and the two methods each one mixes: Table 7 its hybrid's,
# Table 8 (its appendix F) KnOTS-TIES with LoRA-LEGO. Its numbers stand beside ours only for the same two methods.
ALPHA_SWEEP_BRANCHES = {"table7": ("knots_ties", "cur_ties"), "table8": ("knots_ties", "lora_lego")}
FULL_FINETUNE = "Full Finetune"  # the paper's name for the fine-tuned row of Table 3
# Table 3 rows the paper copied from KnOTS (Stoica et al., 2025) instead of replicating them.
COPIED_FROM_KNOTS = "copied_from_knots_paper"


def paper_tables(paper: str) -> list[str]:
    """The tables (``table1`` … ``table9``) whose published numbers the paper's folder holds."""
    if paper not in PAPERS:
        raise ValueError(f"report.paper {paper!r} is not one of the papers with published numbers {list(PAPERS)}")
    folder = resources.files(__name__).joinpath(paper)
    return sorted(table for table, name in TABLE_FILES.items() if folder.joinpath(name).is_file())


def read_paper_table(paper: str, table: str) -> pd.DataFrame:
    """One of the paper's tables (``table1`` … ``table9``, see :data:`TABLE_FILES`) as printed."""
    known = paper_tables(paper)
    if table not in known:
        raise ValueError(f"the paper {paper!r} has no table {table!r} here; known: {known}")
    with resources.files(__name__).joinpath(paper, TABLE_FILES[table]).open("r", encoding="utf-8") as handle:
        return pd.read_csv(handle)
