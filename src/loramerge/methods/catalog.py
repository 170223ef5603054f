"""The method catalogue: every merge method's facts in one place, importable without torch.

The registry (`loramerge.methods`) implements a method; this table says what it is: its display name and the paper's
names for it, its family, what a merge of it needs besides the adapters, and which of its parameters a search sweeps.
The workflow's plan, the search, the report, the config schema check and the README tables all read it from here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

DECOMPOSITION = "decomposition"  # the cached per-module SVD/CUR bases of the adapter set
STATISTICS = "statistics"  # per-task Gram / Fisher statistics (the statistics folder)
TUNED_BRANCHES = "tuned_branches"  # its branches' settings come from their own searches
ADAPTATION = "adaptation"  # coefficients learned by the adaptation stage on unlabelled validation inputs
NEEDS = (DECOMPOSITION, STATISTICS, TUNED_BRANCHES, ADAPTATION)
STATISTICS_KINDS = ("gram", "fisher")  # the kinds of loramerge.stats, restated here so that no torch is imported

# What a merge reads besides the adapters, as the report's tables label it. Only two needs read data; the others
# (the decomposition, tuned branches) are computed from the adapters or their searches. Every method's search also
# reads labelled validation accuracy; that is common to all, so no label carries it.
NO_DATA = "none"
DATA_JOINER = " + "  # between the labels of a merge that reads more than one kind of data
NEED_DATA = MappingProxyType(
    {
        STATISTICS: ("train inputs", "statistics collected on each task's unlabelled training inputs"),
        ADAPTATION: ("val inputs", "coefficients learned on the tasks' unlabelled validation inputs"),
    }
)


def data_label(needs: Iterable[str]) -> str:
    """The short label of the data a merge with `needs` reads besides the adapters: ``none``, ``train inputs``,
    ``val inputs``, or several joined by :data:`DATA_JOINER` (in :data:`NEED_DATA`'s order)."""
    given = set(needs)
    return DATA_JOINER.join(label for need, (label, _) in NEED_DATA.items() if need in given) or NO_DATA


@dataclass(frozen=True)
class MethodFacts:
    """What a method is, independently of how it is computed."""

    name: str
    display_name: str
    family: str
    summary: str
    module: str  # the registry module that implements it
    searched: tuple[str, ...]  # parameters a search may sweep, `lam` (the merged update's scale) included
    needs: frozenset[str] = frozenset()
    low_rank: bool = True  # its merged update is low rank, so it is written as a peft LoRA adapter
    paper_names: Mapping[str, str] = field(default_factory=dict)  # paper table -> the method's row there
    branches: tuple[str, str] | None = None  # two-branch methods: the fixed branch methods (None: set per merge)
    branch_prefixes: tuple[str, str] | None = None  # parameter prefixes of the two branches (`svd.lam`)
    branch_params: tuple[str, ...] = ()  # the branch parameters that tuning copies from each branch's search
    statistics_kind: str | None = None  # which statistics a STATISTICS method reads ("gram" | "fisher")

    def __post_init__(self) -> None:
        unknown = set(self.needs) - set(NEEDS)
        if unknown:
            raise ValueError(f"method {self.name!r}: unknown needs {sorted(unknown)}")
        if (STATISTICS in self.needs) != (self.statistics_kind is not None):
            raise ValueError(f"method {self.name!r}: statistics_kind is set exactly when its needs name {STATISTICS}")
        if self.statistics_kind is not None and self.statistics_kind not in STATISTICS_KINDS:
            raise ValueError(
                f"method {self.name!r}: unknown statistics_kind {self.statistics_kind!r}; "
                f"known: {', '.join(STATISTICS_KINDS)}"
            )
        object.__setattr__(self, "paper_names", MappingProxyType(dict(self.paper_names)))

    @property
    def data_seen(self) -> str:
        """What a merge of this method alone reads besides the adapters (:func:`data_label` of its needs)."""
        return data_label(self.needs)

    def needs_decomposition(self) -> bool:
        return DECOMPOSITION in self.needs

    def is_two_branch(self) -> bool:
        return self.branch_prefixes is not None


def _ties_paper_names(name: str) -> dict[str, str]:
    return {"table3": name, "table5": name, "table9": name}


_TIES_PARAMS = ("lam", "top_k")
_DARE_PARAMS = ("lam", "drop_p", "top_k")

CATALOG: Mapping[str, MethodFacts] = MappingProxyType(
    {
        facts.name: facts
        for facts in (
            MethodFacts(
                "ta",
                "TA",
                "arithmetic",
                "Task Arithmetic: λ·Σ ΔW_t (or λ·mean), exact and low rank (rank Σ r_t)",
                "loramerge.methods.ta",
                searched=("lam",),
                paper_names=_ties_paper_names("TA"),
            ),
            MethodFacts(
                "core_ta",
                "CoreSpace-TA",
                "core",
                "Task Arithmetic in Core Space (equals ta); low rank",
                "loramerge.methods.core_ta",
                searched=("lam",),
            ),
            MethodFacts(
                "ties",
                "TIES",
                "ties",
                "TIES on the dense ΔW_t (global top-K by default, as KnOTS); dense result",
                "loramerge.methods.ties",
                searched=_TIES_PARAMS,
                low_rank=False,
                paper_names={**_ties_paper_names("TIES"), "table4": "TIES"},
            ),
            MethodFacts(
                "dare_ties",
                "DARE-TIES",
                "ties",
                "DARE (seeded per task and layer) on the dense ΔW_t, then TIES; dense result",
                "loramerge.methods.dare_ties",
                searched=_DARE_PARAMS,
                low_rank=False,
                paper_names={**_ties_paper_names("DARE-TIES"), "table4": "DARE-TIES"},
            ),
            MethodFacts(
                "knots_ties",
                "KnOTS-TIES",
                "knots",
                "KnOTS-TIES: TIES on the SVD-aligned coefficients Z_t; low rank (rank k)",
                "loramerge.methods.knots_ties",
                searched=_TIES_PARAMS,
                needs=frozenset({DECOMPOSITION}),
                paper_names={
                    "table3": "KnOTS-TIES",
                    "table4": "KnOTS-TIES",
                    "table5": "K-TIES",
                    "table9": "KnOTS-TIES",
                },
            ),
            MethodFacts(
                "knots_dare_ties",
                "KnOTS-DARE-TIES",
                "knots",
                "KnOTS-DARE-TIES: DARE then TIES on the SVD-aligned Z_t; low rank (rank k)",
                "loramerge.methods.knots_dare_ties",
                searched=_DARE_PARAMS,
                needs=frozenset({DECOMPOSITION}),
                paper_names={
                    "table3": "KnOTS-DARE-TIES",
                    "table4": "KnOTS-DARE-TIES",
                    "table5": "K-DARE-TIES",
                    "table9": "KnOTS-DARE-TIES",
                },
            ),
            MethodFacts(
                "core_ties",
                "CoreSpace-TIES",
                "core",
                "CoreSpace-TIES: TIES on the core matrices M_t (per-layer trim by default); low rank",
                "loramerge.methods.core_ties",
                searched=_TIES_PARAMS,
                paper_names={"table3": "CoreSpace-TIES", "table4": "CoreSpace-TIES"},
            ),
            MethodFacts(
                "core_tsv",
                "CoreSpace-TSV",
                "core",
                "Task Singular Vectors in Core Space: each task's top ⌊k/T⌋ triplets of M_t, whitened; low rank",
                "loramerge.methods.core_tsv",
                searched=("lam",),
            ),
            MethodFacts(
                "core_iso",
                "CoreSpace-Iso",
                "core",
                "Iso-C in Core Space: Σ_t M_t with its non-zero singular values set to their mean; low rank",
                "loramerge.methods.core_iso",
                searched=("lam",),
            ),
            MethodFacts(
                "lora_lego",
                "LoRA-LEGO",
                "lego",
                "LoRA-LEGO: k-means of the tasks' rank-1 units into K norm-rescaled centroids; low rank (rank K)",
                "loramerge.methods.lora_lego",
                searched=("lam", "clusters"),
                paper_names={**_ties_paper_names("LoRA-LEGO"), "table4": "LoRA-LEGO"},
            ),
            MethodFacts(
                "regmean",
                "RegMean",
                "data",
                "RegMean: ΔW* = (Σ ΔW_t·G̃_t)(Σ G̃_t)⁻¹ from each task's input Gram (statistics folder); dense result",
                "loramerge.methods.regmean",
                searched=("lam", "off_diagonal"),
                needs=frozenset({STATISTICS}),
                low_rank=False,
                paper_names={"table3": "RegMean"},
                statistics_kind="gram",
            ),
            MethodFacts(
                "fisher",
                "Fisher",
                "data",
                "Fisher merging: ΔW* = Σ F̃_t·ΔW_t / Σ F̃_t, elementwise, from each task's diagonal Fisher; dense result",
                "loramerge.methods.fisher",
                searched=("lam",),
                needs=frozenset({STATISTICS}),
                low_rank=False,
                paper_names={"table3": "Fisher"},
                statistics_kind="fisher",
            ),
            MethodFacts(
                "tara",
                "TARA-Merging",
                "adapt",
                "TARA-Merging: per-direction coefficients learned on unlabelled validation inputs; low rank (Σ r_t)",
                "loramerge.methods.tara",
                searched=("lam", "variant"),
                needs=frozenset({DECOMPOSITION, ADAPTATION}),
            ),
            MethodFacts(
                "cur_ties",
                "CUR-TIES (UR)",
                "cur",
                "CUR-TIES in UR space: TIES on Y_t = U_c·R_t, ΔW = λ·C·Y*; low rank (rank k_c)",
                "loramerge.methods.cur_ties",
                searched=_TIES_PARAMS,
                needs=frozenset({DECOMPOSITION}),
            ),
            MethodFacts(
                "cur_r_ties",
                "CUR-TIES (R)",
                "cur",
                "CUR-TIES in R space: TIES on R_t, ΔW = λ·C·U_c·R*; low rank (rank k_c)",
                "loramerge.methods.cur_r_ties",
                searched=_TIES_PARAMS,
                needs=frozenset({DECOMPOSITION}),
            ),
            MethodFacts(
                "hybrid",
                "Ours (SVD+CUR hybrid)",
                "mix",
                "SVD+CUR hybrid (the paper): α·knots_ties + (1−α)·cur_ties, α fixed or auto-magnitude/auto-energy",
                "loramerge.methods.hybrid",
                searched=("alpha",),
                needs=frozenset({DECOMPOSITION, TUNED_BRANCHES}),
                paper_names={"table3": "Ours-TIES", "table4": "Ours-TIES", "table5": "Ours", "table9": "Ours"},
                branches=("knots_ties", "cur_ties"),
                branch_prefixes=("svd", "cur"),
                branch_params=_TIES_PARAMS,
            ),
            MethodFacts(
                "mix",
                "Mix",
                "mix",
                "α·first + (1−α)·second for any two methods (set first=, second=, first.<param>=, …)",
                "loramerge.methods.mix",
                searched=("alpha",),
                branch_prefixes=("first", "second"),
                branch_params=("lam", "top_k", "drop_p", "clusters"),
            ),
        )
    }
)


def method_facts(name: str) -> MethodFacts:
    """The catalogue entry of `name`; a KeyError lists the known methods."""
    try:
        return CATALOG[name]
    except KeyError:
        raise KeyError(f"unknown method {name!r}; known: {', '.join(sorted(CATALOG))}") from None


def paper_method_name(table: str, method: str) -> str | None:
    """The paper's name for `method` in `table` (e.g. "table3"), or None when the paper has no such row."""
    facts = CATALOG.get(method)
    return None if facts is None else facts.paper_names.get(table)
