"""Derived code hashes: comments and docstrings rerun nothing, a behaviour edit reruns exactly its dependents."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from loramerge.repro.codehash import code_closure, code_hash

REPO = Path(__file__).resolve().parents[2]

# A small package with every kind of edge: plain, relative and function-level imports, `from package import
# submodule`, a PEP 562 lazy export table, a registry that imports the modules a catalogue names, and package data.
PACKAGE = {
    "src/pkg/__init__.py": '''
        """A lazy package."""
        from importlib import import_module

        _EXPORTS = {"thing": "pkg.lazy"}


        def __getattr__(name):
            if name not in _EXPORTS:
                raise AttributeError(name)
            return getattr(import_module(_EXPORTS[name]), name)
        ''',
    "src/pkg/lazy.py": "thing = 1\n",
    "src/pkg/core.py": '''
        """The core."""
        # a comment
        SCALE = 2


        def scaled(value):
            """Scale a value."""
            return SCALE * value
        ''',
    "src/pkg/util.py": "def helper():\n    return 3\n",
    "src/pkg/sub/__init__.py": "",
    "src/pkg/sub/a.py": """
        from . import b
        from .b import B_VALUE


        def late():
            from pkg.util import helper

            return helper() + B_VALUE + b.B_VALUE
        """,
    "src/pkg/sub/b.py": "B_VALUE = 4\n",
    "src/pkg/catalog.py": 'PLUGINS = {"one": "pkg.plugins.one", "missing": "pkg.plugins.missing"}\n',
    "src/pkg/registry.py": """
        from importlib import import_module

        from pkg.catalog import PLUGINS


        def load(name):
            return import_module(PLUGINS[name])
        """,
    "src/pkg/plugins/__init__.py": "",
    "src/pkg/plugins/one.py": "from pkg import core\n",
    "src/pkg/tables/__init__.py": "from importlib import resources\n",
    "src/pkg/tables/suite/numbers.csv": "a,b\n1,2\n",
    "scripts/uses_core.py": "from pkg.core import scaled\n",
    "scripts/uses_sub.py": "from pkg.sub import a\n",
    "scripts/uses_lazy.py": "from pkg import thing\n",
    "scripts/uses_registry.py": "from pkg.registry import load\n",
    "scripts/uses_catalog.py": "import pkg.catalog\n",
    "scripts/uses_tables.py": "import numpy\nfrom pkg import tables\n",
}
SCRIPTS = sorted(Path(path).name for path in PACKAGE if path.startswith("scripts/"))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    for path, text in PACKAGE.items():
        target = tmp_path / "repo" / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(text).lstrip("\n"))
    return tmp_path / "repo"


def hashes(root: Path) -> dict[str, str]:
    return {script: code_hash([f"scripts/{script}"], root) for script in SCRIPTS}


def closure(root: Path, script: str) -> list[str]:
    return code_closure([f"scripts/{script}"], root)


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new))


def changed(before: dict[str, str], after: dict[str, str]) -> set[str]:
    return {name for name in before if before[name] != after[name]}


def test_closure_follows_every_kind_of_import(root):
    assert closure(root, "uses_core.py") == ["pkg", "pkg.core"]
    assert closure(root, "uses_sub.py") == ["pkg", "pkg.sub", "pkg.sub.a", "pkg.sub.b", "pkg.util"]
    assert closure(root, "uses_tables.py") == ["pkg", "pkg.tables"]  # numpy is not in the source tree


def test_lazy_exports_count_only_when_the_package_is_imported_by_name(root):
    assert "pkg.lazy" in closure(root, "uses_lazy.py")
    assert "pkg.lazy" not in closure(root, "uses_core.py")  # pkg/__init__.py runs, its exports do not load
    before = hashes(root)
    edit(root / "src/pkg/lazy.py", "thing = 1", "thing = 2")
    assert changed(before, hashes(root)) == {"uses_lazy.py"}


def test_a_registry_reaches_the_modules_its_catalogue_names(root):
    assert closure(root, "uses_registry.py") == [
        "pkg",
        "pkg.catalog",
        "pkg.core",
        "pkg.plugins",
        "pkg.plugins.one",
        "pkg.registry",
    ]
    assert closure(root, "uses_catalog.py") == ["pkg", "pkg.catalog"]  # reading the table loads no plugin


def test_comments_docstrings_and_blank_lines_change_nothing(root):
    before = hashes(root)
    core = root / "src/pkg/core.py"
    edit(core, "# a comment", "# another comment, longer\n\n# and one more")
    edit(core, '"""The core."""', '"""The core, documented at length.\n\nWith a second paragraph."""')
    edit(core, '"""Scale a value."""', '"""Multiply a value by SCALE."""\n    # why: the paper scales by two')
    edit(root / "src/pkg/__init__.py", '"""A lazy package."""\n', "")
    edit(root / "src/pkg/sub/b.py", "B_VALUE = 4\n", '"""Now documented."""\n\nB_VALUE = 4  # four\n')
    assert hashes(root) == before


def test_a_behaviour_edit_changes_exactly_its_dependents(root):
    before = hashes(root)
    edit(root / "src/pkg/core.py", "SCALE = 2", "SCALE = 3")
    after_core = hashes(root)
    assert changed(before, after_core) == {"uses_core.py", "uses_registry.py"}
    edit(root / "src/pkg/util.py", "return 3", "return 5")  # reached by a function-level import
    assert changed(after_core, hashes(root)) == {"uses_sub.py"}


def test_a_new_module_enters_the_closure_without_any_list(root):
    before = hashes(root)
    (root / "src/pkg/sub/c.py").write_text("C_VALUE = 6\n")
    assert hashes(root) == before  # not imported yet
    edit(root / "src/pkg/sub/b.py", "B_VALUE = 4", "from pkg.sub.c import C_VALUE\n\nB_VALUE = C_VALUE")
    assert "pkg.sub.c" in closure(root, "uses_sub.py")
    after = hashes(root)
    assert changed(before, after) == {"uses_sub.py"}
    edit(root / "src/pkg/sub/c.py", "C_VALUE = 6", "C_VALUE = 7")
    assert changed(after, hashes(root)) == {"uses_sub.py"}


def test_package_data_and_named_data_count(root):
    before = hashes(root)
    edit(root / "src/pkg/tables/suite/numbers.csv", "1,2", "1,3")
    assert changed(before, hashes(root)) == {"uses_tables.py"}
    (root / "notes.txt").write_text("one\n")
    with_data = code_hash(["scripts/uses_core.py"], root, data=["notes.txt"])
    assert with_data != code_hash(["scripts/uses_core.py"], root)
    (root / "notes.txt").write_text("two\n")
    assert code_hash(["scripts/uses_core.py"], root, data=["notes.txt"]) != with_data


def test_the_hash_does_not_depend_on_where_the_repository_lives(root, tmp_path):
    copy = shutil.copytree(root, tmp_path / "elsewhere" / "clone")
    assert hashes(copy) == hashes(root)
    assert code_hash(["pkg.registry"], copy) == code_hash(["pkg.registry"], root)


def test_module_entry_points_and_bad_entries(root):
    assert code_closure(["pkg.sub.a"], root) == closure(root, "uses_sub.py")
    with pytest.raises(ModuleNotFoundError, match=r"pkg\.nowhere"):
        code_hash(["pkg.nowhere"], root)
    with pytest.raises(FileNotFoundError, match=r"absent\.py"):
        code_hash(["scripts/absent.py"], root)
    with pytest.raises(TypeError):
        code_hash("scripts/uses_core.py", root)


def copy_of_repository(tmp_path: Path) -> Path:
    clone = tmp_path / "clone"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for folder in ("src", "scripts"):
        shutil.copytree(REPO / folder, clone / folder, ignore=ignore)
    return clone


def test_real_repository_edits_rerun_exactly_their_dependents(tmp_path):
    clone = copy_of_repository(tmp_path)
    entries = {"merge": ["scripts/merge.py"], "report": ["scripts/table3.py"], "cli": ["loramerge.cli"]}

    def real_hashes() -> dict[str, str]:
        return {family: code_hash(entry, clone) for family, entry in entries.items()}

    merge, report = (set(code_closure(entries[family], clone)) for family in ("merge", "report"))
    assert "loramerge.ties.trim" in merge - report
    report_only = sorted(name for name in report - merge if name.startswith("loramerge.repro.report"))
    assert report_only, "the report closure has report modules that merge does not load"

    def module_file(name: str) -> Path:
        base = clone / "src" / Path(*name.split("."))
        return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")

    before = real_hashes()
    trim = module_file("loramerge.ties.trim")
    assert trim.read_text().startswith('"""'), "trim.py opens with its docstring"
    trim.write_text(trim.read_text().replace('"""', '"""Rewritten. ', 1) + "\n# a trailing comment\n")
    assert real_hashes() == before
    trim.write_text(trim.read_text() + "CODEHASH_TEST_EDIT = 1\n")
    assert changed(before, real_hashes()) == {"merge", "cli"}

    before = real_hashes()
    report_module = module_file(report_only[0])
    report_module.write_text(report_module.read_text() + "CODEHASH_TEST_EDIT = 1\n")
    assert changed(before, real_hashes()) == {"report"}


def test_importing_the_hash_module_does_not_import_torch():
    probe = "import sys, loramerge.repro.codehash; print(sorted({'torch', 'numpy', 'pandas'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_hashing_every_script_is_quick():
    scripts = sorted((REPO / "scripts").glob("*.py"))
    start = time.perf_counter()
    for script in scripts:
        code_hash([script], REPO)
    code_hash(["loramerge.cli"], REPO)
    print(f"code_hash of {len(scripts)} scripts and loramerge.cli: {time.perf_counter() - start:.3f} s")
