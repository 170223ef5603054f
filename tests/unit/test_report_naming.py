"""The report's names: methods from the catalogue (display names, order, paper names per table), tasks, settings."""

from __future__ import annotations

import pytest

from loramerge.methods.catalog import CATALOG
from loramerge.repro.report.naming import (
    METHOD_ORDER,
    format_params,
    method_display_name,
    ordered_methods,
    paper_method_name,
    task_columns,
)
from loramerge.repro.report.paper import read_paper_table

# What report/tables.py and report/paper held before the catalogue did.
FORMER_DISPLAY_NAMES = {
    "ta": "TA",
    "ties": "TIES",
    "dare_ties": "DARE-TIES",
    "knots_ties": "KnOTS-TIES",
    "knots_dare_ties": "KnOTS-DARE-TIES",
    "core_ties": "CoreSpace-TIES",
    "cur_ties": "CUR-TIES (UR)",
    "cur_r_ties": "CUR-TIES (R)",
    "hybrid": "Ours (SVD+CUR hybrid)",
}
COMMON = {"ta": "TA", "ties": "TIES", "dare_ties": "DARE-TIES"}
# The paper's rows of the methods added since (it printed them all along; RegMean and Fisher in Table 3 only).
LEGO = {"lora_lego": "LoRA-LEGO"}
DATA_BASED = {"regmean": "RegMean", "fisher": "Fisher"}
# The paper's name of every method with a row in its tables: the former ones, and those of the methods added since.
PAPER_NAMES = {
    "table3": {
        **COMMON,
        "knots_ties": "KnOTS-TIES",
        "knots_dare_ties": "KnOTS-DARE-TIES",
        "core_ties": "CoreSpace-TIES",
        **LEGO,
        **DATA_BASED,
        "hybrid": "Ours-TIES",
    },
    "table5": {**COMMON, "knots_ties": "K-TIES", "knots_dare_ties": "K-DARE-TIES", **LEGO, "hybrid": "Ours"},
    "table9": {**COMMON, "knots_ties": "KnOTS-TIES", "knots_dare_ties": "KnOTS-DARE-TIES", **LEGO, "hybrid": "Ours"},
}


def test_display_names_and_order_come_from_the_catalogue():
    assert {method: method_display_name(method) for method in FORMER_DISPLAY_NAMES} == FORMER_DISPLAY_NAMES
    assert method_display_name("core_ta") == CATALOG["core_ta"].display_name
    assert method_display_name("not_in_the_catalogue") == "not_in_the_catalogue"
    assert tuple(CATALOG) == METHOD_ORDER
    assert [method for method in METHOD_ORDER if method in FORMER_DISPLAY_NAMES] == list(FORMER_DISPLAY_NAMES)
    selections = dict.fromkeys(["zeta", "hybrid", "ta", "alpha"], None)
    assert ordered_methods(selections, None) == ["ta", "hybrid", "alpha", "zeta"]
    with pytest.raises(ValueError, match=r"\['ties'\]"):
        ordered_methods(selections, ["ta", "ties"])


def test_paper_names_are_the_former_and_added_ones_and_name_rows_of_the_papers_tables():
    for table, former in PAPER_NAMES.items():
        names = {method: paper_method_name(table, method) for method in CATALOG}
        assert {method: name for method, name in names.items() if name is not None} == former
    printed = {
        "table3": set(read_paper_table("vit-b32", "table3")["method"]),
        "table5": set(read_paper_table("vit-b32", "table5").columns) - {"Metric"},
        "table9": set(read_paper_table("vit-b32", "table9")["method"]),
    }
    for table, rows in printed.items():
        assert set(PAPER_NAMES[table].values()) <= rows, table


def test_task_columns_and_settings_as_text():
    assert task_columns(["stanford_cars", "eurosat", "digits"]) == ["Cars", "EuroSAT", "digits"]
    with pytest.raises(ValueError, match="repeated column names"):
        task_columns(["cars", "stanford_cars"])
    assert format_params({"top_k": 20, "lam": 0.30000000000000004, "alpha": "auto-energy"}) == (
        "lam=0.3, alpha=auto-energy, top_k=20"
    )
