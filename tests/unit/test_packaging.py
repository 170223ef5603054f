"""Packaging: the library imports only its five core dependencies, the [repro] extra declares every third-party
import of the reproduction package, and the bare package merges in a fresh environment that has nothing else."""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import venv
import zipfile
from importlib.metadata import distribution, packages_distributions
from pathlib import Path

import torch
from conftest import random_adapter_dirs
from packaging.requirements import Requirement
from safetensors.torch import load_file

from loramerge import load_adapters, merge
from loramerge.methods.catalog import CATALOG

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = ROOT / "src" / "loramerge"
REPRO = LIBRARY / "repro"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
CORE = ("torch", "safetensors", "numpy", "tqdm", "numba")
# the one place the library reaches into the reproduction package: `loramerge lock`, imported when it runs
LIBRARY_TO_REPRO = {("cli.py", "loramerge.repro.cli")}


def normalize(distribution_name: str) -> str:
    return re.sub(r"[-_.]+", "-", distribution_name).lower()


def declared(requirements: list[str]) -> set[str]:
    return {normalize(Requirement(requirement).name) for requirement in requirements}


def imports(path: Path) -> list[tuple[str, bool]]:
    """(absolute module name, imported at module level) for every import statement of a Python file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    module_level = {id(node) for node in tree.body}
    for node in tree.body:  # imports under `if TYPE_CHECKING:` or `try:` at the top run at import time too
        if isinstance(node, ast.If | ast.Try):
            module_level.update(id(child) for child in ast.walk(node))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) in module_level) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module, id(node) in module_level))
        elif isinstance(node, ast.ImportFrom):
            raise AssertionError(f"{path}: relative import of {node.module!r}; the package uses absolute imports")
    return found


def third_party(module: str) -> str | None:
    top = module.partition(".")[0]
    return None if top in sys.stdlib_module_names or top == "loramerge" else top


def library_files() -> list[Path]:
    return sorted(p for p in LIBRARY.rglob("*.py") if REPRO not in p.parents)


def test_core_dependencies_are_the_five():
    assert declared(PROJECT["dependencies"]) == set(CORE)


def test_the_library_imports_only_the_standard_library_its_core_dependencies_and_itself():
    outside, into_repro = [], []
    for path in library_files():
        relative = path.relative_to(LIBRARY).as_posix()
        for module, _ in imports(path):
            top = third_party(module)
            if top is not None and top not in CORE:
                outside.append(f"{relative}: {module}")
            if (module == "loramerge.repro" or module.startswith("loramerge.repro.")) and (
                relative,
                module,
            ) not in LIBRARY_TO_REPRO:
                into_repro.append(f"{relative}: {module}")
    assert outside == [] and into_repro == []
    assert len(library_files()) > 20  # the scan saw the library
    # get_method imports the module a catalogue entry names: library modules too
    assert all(facts.module.startswith("loramerge.methods.") for facts in CATALOG.values())


def test_lock_reaches_the_reproduction_package_only_when_it_runs():
    found = [(module, top_level) for module, top_level in imports(LIBRARY / "cli.py") if "repro" in module]
    assert found == [("loramerge.repro.cli", False)]


def test_every_third_party_import_of_the_reproduction_is_declared():
    """loramerge.repro and the workflow's scripts import only what `pip install loramerge[repro]` installs."""
    providers = packages_distributions()  # import name -> the installed distributions that provide it (yaml -> PyYAML)
    allowed = declared(PROJECT["dependencies"]) | declared(PROJECT["optional-dependencies"]["repro"])
    undeclared, seen = [], set()
    for path in sorted([*REPRO.rglob("*.py"), *(ROOT / "scripts").glob("*.py")]):
        for module, _ in imports(path):
            top = third_party(module)
            if top is None:
                continue
            seen.add(top)
            names = {normalize(name) for name in providers.get(top, [])}
            if not names & allowed:
                undeclared.append(f"{path.relative_to(ROOT)}: {module} (installed by {sorted(names) or 'nothing'})")
    assert undeclared == []
    assert {"yaml", "transformers", "pandas", "sklearn"} <= seen  # the scan saw the reproduction's imports


def _runtime_closure(names: tuple[str, ...]) -> list[str]:
    """The installed distributions `names` need at run time, themselves included (extras and markers honoured)."""
    closure: dict[str, None] = {}
    pending = list(names)
    while pending:
        name = normalize(pending.pop())
        if name in closure:
            continue
        closure[name] = None
        for requirement in map(Requirement, distribution(name).requires or []):
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                pending.append(requirement.name)
    return sorted(closure)


def _core_environment(root: Path) -> Path:
    """A fresh virtual environment whose site-packages holds links to the core dependencies (and theirs) only."""
    venv.EnvBuilder(with_pip=False).create(root)
    python = root / "bin" / "python"
    site = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    ours = Path(sysconfig.get_paths()["purelib"]).resolve()
    for name in _runtime_closure(CORE):
        dist = distribution(name)
        tops = {Path(file).parts[0] for file in dist.files or [] if not Path(file).parts[0].startswith("..")}
        for top in tops:
            source = Path(dist.locate_file(top)).resolve()
            assert source.parent == ours, f"{name} is not installed in {ours}"
            if not (site / top).exists():
                (site / top).symlink_to(source)
    return python


def _run(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(arg) for arg in args], capture_output=True, text=True, timeout=300, **kwargs)


def test_the_bare_package_merges_in_an_environment_with_only_the_core_dependencies(tmp_path):
    python = _core_environment(tmp_path / "venv")
    source = tmp_path / "source"  # built from a copy: setuptools writes build/ and *.egg-info beside the sources
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copy(ROOT / "pyproject.toml", source)
    shutil.copy(ROOT / "README.md", source)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    built = _run(*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", tmp_path / "wheel", source)
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "wheel").glob("loramerge-*.whl")
    packaged = set(zipfile.ZipFile(wheel).namelist())
    published = {p.relative_to(ROOT / "src").as_posix() for p in (REPRO / "report" / "paper").glob("*/*.csv")}
    assert published and published <= packaged  # the paper's tables travel with loramerge.repro
    installed = _run(*pip, "--python", python, "install", "--no-deps", "--no-index", wheel)
    assert installed.returncode == 0, installed.stderr

    probe = "import importlib.util as u; print(json.dumps({m: u.find_spec(m) is not None for m in MODULES}))"
    modules = ["torch", "numba", "loramerge", "transformers", "peft", "yaml", "pandas", "snakemake"]
    found = _run(python, "-c", f"import json; MODULES = {modules}; {probe}", cwd=tmp_path)
    assert json.loads(found.stdout) == {m: m in ("torch", "numba", "loramerge") for m in modules}, found.stderr

    adapter_dirs = random_adapter_dirs(tmp_path / "adapters")
    loramerge = tmp_path / "venv" / "bin" / "loramerge"
    args = ["merge", "--quiet", "--method", "hybrid", "--adapters", *adapter_dirs, "--out", tmp_path / "out"]
    merged = _run(loramerge, *args, cwd=tmp_path)
    assert merged.returncode == 0, merged.stderr
    written = load_file(tmp_path / "out" / "adapter_model.safetensors")
    for module, update in merge(load_adapters(adapter_dirs), "hybrid").items():
        key = f"base_model.model.{module}"
        product = written[f"{key}.lora_B.weight"] @ written[f"{key}.lora_A.weight"]
        # another process, maybe with other thread counts: equal to rounding, not necessarily bit for bit
        torch.testing.assert_close(product, update.dense(), atol=1e-5, rtol=1e-5)

    locked = _run(loramerge, "lock", "--config", "x.yaml", cwd=tmp_path)
    assert locked.returncode == 2
    assert "pip install 'loramerge[repro]'" in locked.stderr and not (tmp_path / "x.yaml").exists()
