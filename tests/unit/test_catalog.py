"""The catalogue is the single source of each method's facts, importable without torch, and the registry agrees."""

from __future__ import annotations

import subprocess
import sys

import pytest
from test_stats import write_statistics

from loramerge import merge
from loramerge.errors import ParameterError
from loramerge.methods import METHODS, MergeContext, get_method, register
from loramerge.methods.catalog import (
    ADAPTATION,
    CATALOG,
    DECOMPOSITION,
    STATISTICS,
    STATISTICS_KINDS,
    MethodFacts,
    data_label,
    method_facts,
)
from loramerge.methods.ta import TaskArithmetic
from loramerge.stats import KINDS, Statistics
from loramerge.updates import LowRankUpdate

# mix has no branches of its own; these are low rank and read no decomposition, as its catalogue entry says
MIX_BRANCHES = {"first": "ta", "second": "core_ties"}


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_every_catalogue_entry_is_registered_under_its_name_in_its_module():
    assert sorted(METHODS) == sorted(CATALOG)
    for name, method in METHODS.items():
        assert method.name == name
        assert type(method).__module__ == CATALOG[name].module
        assert method.summary == CATALOG[name].summary


def test_the_catalogue_imports_without_torch():
    result = _python("import loramerge.methods.catalog, sys; assert 'torch' not in sys.modules, 'torch imported'")
    assert result.returncode == 0, result.stderr


def test_a_method_imports_only_its_own_module():
    code = (
        "import sys\n"
        "from loramerge.methods import get_method\n"
        "assert get_method('ta').name == 'ta'\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('loramerge.methods.'))\n"
        "assert loaded == ['loramerge.methods.base', 'loramerge.methods.catalog', 'loramerge.methods.ta'], loaded\n"
    )
    result = _python(code)
    assert result.returncode == 0, result.stderr


def test_an_unknown_method_names_the_known_ones():
    with pytest.raises(ParameterError, match="unknown method 'nope'; known: core_iso, core_ta, core_ties, core_tsv"):
        get_method("nope")
    with pytest.raises(KeyError, match="known: core_iso, core_ta"):
        method_facts("nope")


def test_register_refuses_a_method_the_catalogue_does_not_have_or_places_elsewhere():
    class Uncatalogued(TaskArithmetic):
        name = "not_in_the_catalogue"

    with pytest.raises(ValueError, match=r"no entry in loramerge\.methods\.catalog"):
        register(Uncatalogued)

    class Elsewhere(TaskArithmetic):
        name = "ties"

    with pytest.raises(ValueError, match=r"catalogue says loramerge\.methods\.ties"):
        register(Elsewhere)
    with pytest.raises(ValueError, match="registered twice"):
        register(TaskArithmetic)


class RecordingContext(MergeContext):
    """A merge context that records whether the method asked for the decomposition."""

    read_bases = False

    def bases(self):
        self.read_bases = True
        return super().bases()


class RecordingStatistics(Statistics):
    """A statistics folder that records which kinds of statistics the method read."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.kinds_read: set[str] = set()

    def tensor(self, kind, task, module):
        self.kinds_read.add(kind)
        return super().tensor(kind, task, module)


def _defaults(name: str) -> dict[str, str]:
    return MIX_BRANCHES if name == "mix" else {}


@pytest.mark.parametrize("name", sorted(CATALOG))
def test_facts_agree_with_behaviour(adapters, name, tmp_path):
    facts = CATALOG[name]
    method = get_method(name)
    params = method.params(_defaults(name))
    statistics = RecordingStatistics(write_statistics(tmp_path / "stats", adapters), adapters)
    context = RecordingContext(adapters, statistics=statistics)
    updates = dict(method.merge(context, params))
    assert sorted(updates) == adapters.modules
    assert all(isinstance(u, LowRankUpdate) for u in updates.values()) == facts.low_rank
    assert method.is_low_rank(params) == facts.low_rank
    assert context.read_bases == facts.needs_decomposition() == method.uses_decomposition
    assert statistics.kinds_read == ({facts.statistics_kind} if STATISTICS in facts.needs else set())


def test_mix_follows_its_branches(adapters):
    """mix's catalogue facts describe its usual use; a dense or decomposition-reading branch carries over."""
    method = get_method("mix")
    params = method.params({"first": "knots_ties", "second": "ties"})
    context = RecordingContext(adapters)
    updates = dict(method.merge(context, params))
    assert context.read_bases and not method.is_low_rank(params)
    assert not any(isinstance(u, LowRankUpdate) for u in updates.values())
    assert sorted(merge(adapters, "mix", **MIX_BRANCHES)) == adapters.modules


def test_two_branch_facts_come_from_the_catalogue():
    hybrid = get_method("hybrid")
    assert hybrid.prefixes == CATALOG["hybrid"].branch_prefixes == ("svd", "cur")
    params = hybrid.params({})
    assert (params.first, params.second) == CATALOG["hybrid"].branches
    assert get_method("mix").prefixes == CATALOG["mix"].branch_prefixes


def test_statistics_kind_is_set_exactly_for_methods_that_read_statistics():
    assert STATISTICS_KINDS == KINDS  # the torch-free catalogue restates the statistics folder's kinds
    assert {name: facts.statistics_kind for name, facts in CATALOG.items() if STATISTICS in facts.needs} == {
        "regmean": "gram",
        "fisher": "fisher",
    }
    common = {"display_name": "X", "family": "data", "summary": "x", "module": "m", "searched": ("lam",)}
    with pytest.raises(ValueError, match="statistics_kind is set exactly when its needs name statistics"):
        MethodFacts("x", **common, needs=frozenset({STATISTICS}))
    with pytest.raises(ValueError, match="statistics_kind is set exactly when its needs name statistics"):
        MethodFacts("x", **common, statistics_kind="gram")
    with pytest.raises(ValueError, match="unknown statistics_kind 'hessian'; known: gram, fisher"):
        MethodFacts("x", **common, needs=frozenset({STATISTICS}), statistics_kind="hessian")


def test_every_method_says_what_data_its_merge_reads_besides_the_adapters():
    labels = {name: facts.data_seen for name, facts in CATALOG.items()}
    assert set(labels) == set(METHODS)  # every registered method has a label
    data_using = {"regmean": "train inputs", "fisher": "train inputs", "tara": "val inputs"}
    assert {name: label for name, label in labels.items() if label != "none"} == data_using
    assert {labels[name] for name in ("ta", "ties", "knots_ties", "core_tsv", "lora_lego", "hybrid", "mix")} == {"none"}


def test_the_data_label_follows_the_needs_that_read_data():
    assert data_label([]) == data_label({DECOMPOSITION}) == "none"  # the decomposition is of the adapters
    assert data_label({STATISTICS, DECOMPOSITION}) == "train inputs"
    assert data_label([ADAPTATION, STATISTICS]) == "train inputs + val inputs"  # in a fixed order
