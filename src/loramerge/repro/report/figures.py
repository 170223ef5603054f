"""The paper's figures as PNG + PDF, drawn on an Agg canvas (no pyplot state) with reproducible metadata.

- Figure 1 (:func:`figure1_overlap_heatmap`): SVD/CUR subspace overlap per layer × module type, from ``overlap.csv``.
- Figure 2 (:func:`figure2_cur_spaces`): per-task normalized test accuracy of CUR merging in UR vs R space.
- Figure 3 and Table 8's figure (:func:`alpha_sweep_figure`): mean normalized accuracy (test and validation) against
  α of a two-branch merge α·first + (1−α)·second, and the paper's curve when there is one.

PNGs carry no ``Software`` entry and PDFs no ``CreationDate``/``Producer``, so the same inputs and matplotlib
version give the same bytes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from loramerge.atomic import write_files_atomically
from loramerge.repro.report.naming import method_display_name, task_display_name
from loramerge.repro.report.rows import OURS, PAPER, SOURCE_COLUMN, SWEEP_AVERAGE_COLUMN, SWEEP_VAL_AVERAGE_COLUMN
from loramerge.repro.search import Selection

PNG_DPI = 150
PNG_METADATA: dict[str, Any] = {"Software": None}
PDF_METADATA: dict[str, Any] = {"CreationDate": None, "Producer": None, "Creator": None}
OVERLAP_COLUMNS = ("module", "rank", "overlap")
# Attention projections first, in the order they are computed, then the MLP; anything else follows by name.
MODULE_TYPE_ORDER = (
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "out_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
    "fc1",
    "fc2",
)
_LAYER_PATTERN = re.compile(r"(?:^|\.)layers\.(\d+)(?:\.|$)")


def save_figure(figure: Figure, stem: str | Path) -> tuple[Path, Path]:
    """Write ``<stem>.png`` (dpi 150) and ``<stem>.pdf`` atomically, both or neither; returns both paths."""
    stem = Path(stem)
    FigureCanvasAgg(figure)
    png, pdf = stem.with_name(stem.name + ".png"), stem.with_name(stem.name + ".pdf")
    write_files_atomically(
        {
            png: lambda temp: figure.savefig(temp, format="png", dpi=PNG_DPI, metadata=PNG_METADATA),
            pdf: lambda temp: figure.savefig(temp, format="pdf", metadata=PDF_METADATA),
        }
    )
    return png, pdf


def parse_module_path(module: str) -> tuple[int, str]:
    """``vision_model.encoder.layers.3.self_attn.q_proj`` → ``(3, "q_proj")``; also Llama's ``model.layers.7...``."""
    match = _LAYER_PATTERN.search(module)
    if match is None:
        raise ValueError(f"module path {module!r} has no 'layers.<index>' component")
    return int(match.group(1)), module.rsplit(".", 1)[-1]


def _module_type_sort_key(module_type: str) -> tuple[int, str]:
    if module_type in MODULE_TYPE_ORDER:
        return MODULE_TYPE_ORDER.index(module_type), module_type
    return len(MODULE_TYPE_ORDER), module_type


def overlap_matrix(overlap: pd.DataFrame | str | Path, *, rank: int | None = None) -> pd.DataFrame:
    """Overlap as a layers (rows, ascending) × module types (columns) frame, from ``overlap.csv``.

    ``rank`` picks one rank when the file holds several; with several and none given it is an error.
    """
    if not isinstance(overlap, pd.DataFrame):
        overlap = pd.read_csv(overlap)
    missing = [column for column in OVERLAP_COLUMNS if column not in overlap.columns]
    if missing:
        raise ValueError(f"overlap table is missing columns {missing}")
    ranks = sorted(overlap["rank"].unique().tolist())
    if rank is None:
        if len(ranks) != 1:
            raise ValueError(f"overlap table holds ranks {ranks}; choose one")
        rank = ranks[0]
    rows = overlap[overlap["rank"] == rank]
    if rows.empty:
        raise ValueError(f"overlap table has no rows for rank {rank} (ranks: {ranks})")
    parsed = [parse_module_path(str(module)) for module in rows["module"]]
    long = pd.DataFrame(
        {
            "layer": [layer for layer, _ in parsed],
            "module_type": [module_type for _, module_type in parsed],
            "overlap": rows["overlap"].astype(float).to_numpy(),
        }
    )
    duplicated = long.duplicated(["layer", "module_type"])
    if duplicated.any():
        first = long[duplicated].iloc[0]
        raise ValueError(f"overlap table has two rows for layer {first['layer']} {first['module_type']}")
    matrix = long.pivot(index="layer", columns="module_type", values="overlap")
    matrix = matrix.sort_index()
    matrix = matrix[sorted(matrix.columns, key=_module_type_sort_key)]
    matrix.index.name, matrix.columns.name = "layer", "module_type"
    return matrix


def figure1_overlap_heatmap(
    overlap: pd.DataFrame | str | Path, stem: str | Path, *, rank: int | None = None, title: str | None = None
) -> tuple[Path, Path]:
    """Figure 1: heatmap of subspace overlap, layers × module types, each cell annotated, with a colour bar."""
    matrix = overlap_matrix(overlap, rank=rank)
    values = matrix.to_numpy(dtype=float)
    n_layers, n_types = values.shape
    figure = Figure(figsize=(1.1 * n_types + 2.2, 0.32 * n_layers + 1.6), layout="constrained")
    axes = figure.add_subplot()
    finite = values[np.isfinite(values)]
    vmax = max(float(finite.max()), 1e-12) if finite.size else 1.0
    image = axes.imshow(np.ma.masked_invalid(values), cmap="viridis", vmin=0.0, vmax=vmax, aspect="auto")
    axes.set_xticks(range(n_types), list(matrix.columns))
    axes.set_yticks(range(n_layers), [str(layer) for layer in matrix.index])
    axes.set_xlabel("module")
    axes.set_ylabel("layer")
    for row in range(n_layers):
        for column in range(n_types):
            value = values[row, column]
            if math.isfinite(value):
                colour = "black" if value > 0.6 * vmax else "white"
                axes.text(column, row, f"{value:.3f}", ha="center", va="center", fontsize=7, color=colour)
    figure.colorbar(image, ax=axes, label="overlap")
    axes.set_title(title if title is not None else "SVD vs CUR subspace overlap")
    return save_figure(figure, stem)


def figure2_cur_spaces(
    selection_ur: Selection,
    selection_r: Selection,
    stem: str | Path,
    *,
    rule: str = "greedy",
    tasks: Sequence[str] | None = None,
    split: str = "test",
    labels: tuple[str, str] = (method_display_name("cur_ties"), method_display_name("cur_r_ties")),
) -> tuple[Path, Path]:
    """Figure 2: grouped bars of per-task normalized accuracy (and their mean), CUR merging in UR vs in R space.

    The two selections are :func:`loramerge.repro.search.select_method` results; ``rule`` picks greedy or grid.
    """
    chosen = [selection.chosen(rule).split(split).per_task for selection in (selection_ur, selection_r)]
    tasks = list(tasks) if tasks is not None else sorted(chosen[0])
    for label, per_task in zip(labels, chosen, strict=True):
        missing = [task for task in tasks if task not in per_task]
        if missing:
            raise ValueError(f"{label} has no {split} score for tasks {missing}")
    series = [[float(per_task[task]) for task in tasks] for per_task in chosen]
    series = [[*values, math.fsum(values) / len(values)] for values in series]
    group_labels = [task_display_name(task) for task in tasks] + ["Mean"]

    positions = np.arange(len(group_labels))
    width = 0.38
    figure = Figure(figsize=(max(6.0, 0.8 * len(group_labels) + 1.5), 3.6), layout="constrained")
    axes = figure.add_subplot()
    for offset, label, values in zip((-width / 2, width / 2), labels, series, strict=True):
        bars = axes.bar(positions + offset, values, width, label=label)
        axes.bar_label(bars, fmt="%.1f", fontsize=6, padding=1)
    axes.set_xticks(positions, group_labels)
    axes.set_ylabel(f"normalized {split} accuracy (%)")
    axes.set_ylim(0, max(100.0, max(max(values) for values in series) * 1.08))
    figure.legend(loc="outside lower center", ncol=2, fontsize=8)
    axes.set_title("CUR merging: UR space vs R space")
    return save_figure(figure, stem)


def split_sources(table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Our rows and the paper's rows of a table with a ``Source`` column (as read back from its CSV); a table without
    one is all ours."""
    if SOURCE_COLUMN not in table.columns:
        return table, None
    paper = table[table[SOURCE_COLUMN] == PAPER]
    return table[table[SOURCE_COLUMN] == OURS], (paper if len(paper) else None)


def alpha_sweep_figure(
    sweep: pd.DataFrame,
    stem: str | Path,
    *,
    branches: Sequence[str],
    alpha_column: str = "alpha",
    selected_alpha: float | None = None,
    paper: pd.DataFrame | None = None,
) -> tuple[Path, Path]:
    """Mean normalized accuracy against α, test and validation lines with markers, selected α marked (Figure 3 for
    the hybrid; the figure of Table 8 for ``mix``).

    ``sweep`` is :func:`loramerge.repro.report.alpha_sweep.alpha_sweep_table`'s frame (columns α, ``Avg``,
    ``Val Avg``) without a paper; ``paper`` (columns α and ``Avg``), the paper's table, is drawn as a third, grey line.
    ``branches`` are the two methods mixed, ``(first, second)``: α = 1 is the first alone.
    """
    for column in (alpha_column, SWEEP_AVERAGE_COLUMN, SWEEP_VAL_AVERAGE_COLUMN):
        if column not in sweep.columns:
            raise ValueError(f"α sweep has no column {column!r}")
    first, second = (method_display_name(branch) for branch in branches)
    ordered = sweep.sort_values(alpha_column, kind="stable")
    alphas = ordered[alpha_column].astype(float).to_numpy()
    figure = Figure(figsize=(5.0, 3.4), layout="constrained")
    axes = figure.add_subplot()
    axes.plot(alphas, ordered[SWEEP_AVERAGE_COLUMN].astype(float), marker="o", label="test")
    axes.plot(alphas, ordered[SWEEP_VAL_AVERAGE_COLUMN].astype(float), marker="s", linestyle="--", label="validation")
    if paper is not None:
        published = paper.sort_values(alpha_column, kind="stable")
        axes.plot(
            published[alpha_column].astype(float),
            published[SWEEP_AVERAGE_COLUMN].astype(float),
            marker="^",
            linestyle="-.",
            color="grey",
            label="paper (test)",
        )
    if selected_alpha is not None:
        axes.axvline(
            float(selected_alpha),
            color="grey",
            linestyle=":",
            linewidth=1.0,
            label=f"selected α = {float(selected_alpha):g}",
        )
        at_selected = np.isclose(alphas, float(selected_alpha))
        if at_selected.any():
            axes.plot(
                alphas[at_selected],
                ordered[SWEEP_AVERAGE_COLUMN].astype(float).to_numpy()[at_selected],
                marker="*",
                markersize=14,
                linestyle="none",
                color="crimson",
            )
    axes.set_title(f"α·{first} + (1−α)·{second}", fontsize=10)
    axes.set_xlabel(f"α (0 = {second}, 1 = {first})")
    axes.set_ylabel("mean normalized accuracy (%)")
    axes.legend(fontsize=8)
    axes.grid(alpha=0.3)
    return save_figure(figure, stem)
