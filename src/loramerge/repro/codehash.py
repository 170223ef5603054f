"""Code hashes derived from the imports, for Snakemake's rerun triggers.

A rule passes `code_hash([its script])` as a parameter, so a rule reruns when the library code its script runs
changes in behaviour, and only then. Snakemake watches the script file itself (by modification time) but not the
library it calls, and a hand-kept list of library files goes stale the day a module is added.

What enters the hash, for each entry point (a script file, or a module name such as `loramerge.cli` for rules that
run the `loramerge` console script):

- The closure of first-party modules it imports, found statically with `ast` (nothing is imported: the Snakefile
  calls this at every DAG build, so it stays fast and torch-free). First-party means found in the source tree
  (`<root>/src`); everything else is third-party and ignored. Edges are
  - every `import` and `from … import …`, at module level or inside functions, relative ones resolved;
    `from package import name` reaches `package.name` when that is a module;
  - the packages above an imported module (`a.b` for `a.b.c`): Python runs their `__init__`, so their own
    statements and static imports count;
  - lazy imports: a module that imports by name at run time (it calls `import_module` or `__import__`) reaches every
    first-party module named by a string constant in it or in a first-party module it imports directly. This covers
    the PEP 562 exports of `loramerge/__init__.py` (its `_EXPORTS` table) and the method registry, which imports
    the modules that `loramerge/methods/catalog.py` names. These edges are followed when the lazy module is imported
    by name, not when it is only a package above an imported module: `import loramerge.atomic` runs
    `loramerge/__init__.py` but loads none of its exports.
- Each module's syntax tree with its docstrings removed (`ast.dump`, which carries no line numbers, of a tree whose
  comments the parser already dropped), under the module's name: a comment, docstring or blank-line edit leaves the
  hash unchanged, any other edit changes it. `ast.dump` can differ between Python versions, so a new interpreter
  reruns everything once. Code that reads `__doc__` (argparse help) sees docstrings the hash ignores.
- Package data: the non-Python files in the folder of each package in the closure and in its sub-folders that are
  not packages themselves (`loramerge/repro/report/paper/vit-b32/*.csv` through `loramerge.repro.report.paper`),
  skipping `__pycache__` and hidden files. Further files can be named with `data=`.

Names enter the hash relative to the root, so a clone hashes the same wherever it lives.
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

DIGEST_LENGTH = 16  # hex characters: a rerun trigger, not a security boundary
_DYNAMIC_IMPORTERS = frozenset({"import_module", "__import__"})


@dataclass(frozen=True)
class _Module:
    """One parsed source file: what it imports and how its behaviour is hashed."""

    dump: str  # ast.dump of the tree without docstrings
    imports: tuple[str | tuple[str, str], ...]  # `import a.b`: "a.b"; `from a import b`: ("a", "b")
    strings: frozenset[str]  # string constants outside docstrings
    imports_dynamically: bool


def code_hash(
    entry_points: Sequence[str | Path], root: str | Path, *, source: str = "src", data: Iterable[str | Path] = ()
) -> str:
    """A short hex digest of the behaviour of `entry_points` and every first-party module they reach.

    Entry points are script files (a `.py` path, relative to `root` or absolute) or module names (`loramerge.cli`).
    Modules are looked up under `root/source`; `data` names extra files (relative to `root`) that the code reads.
    """
    root = Path(root).resolve()
    tree = _SourceTree(root / source)
    scripts, modules = _split_entry_points(entry_points, root)
    digest = hashlib.sha256()
    for script in scripts:
        _update(digest, "script", script.relative_to(root).as_posix(), _parse_file(script).dump.encode())
    names = tree.closure(scripts, modules)
    for name in names:
        _update(digest, "module", name, _parse_file(tree.path(name)).dump.encode())
    data_files = {path for name in names for path in tree.package_data(name)}
    data_files.update(_resolve(Path(path), root) for path in data)
    for path in sorted(data_files):
        if not path.is_file():
            raise FileNotFoundError(f"code_hash: data file {path} does not exist")
        _update(digest, "data", path.relative_to(root).as_posix(), path.read_bytes())
    return digest.hexdigest()[:DIGEST_LENGTH]


def code_closure(entry_points: Sequence[str | Path], root: str | Path, *, source: str = "src") -> list[str]:
    """The sorted first-party module names that `code_hash` hashes for `entry_points` (for debugging a hash)."""
    root = Path(root).resolve()
    scripts, modules = _split_entry_points(entry_points, root)
    return _SourceTree(root / source).closure(scripts, modules)


def _split_entry_points(entry_points: Sequence[str | Path], root: Path) -> tuple[list[Path], list[str]]:
    if isinstance(entry_points, str | Path):
        raise TypeError("code_hash takes a sequence of entry points, not one")
    scripts, modules = [], []
    for entry in entry_points:
        if isinstance(entry, Path) or str(entry).endswith(".py") or "/" in str(entry):
            script = _resolve(Path(entry), root)
            if not script.is_file():
                raise FileNotFoundError(f"code_hash: script {script} does not exist")
            scripts.append(script)
        else:
            modules.append(str(entry))
    return scripts, modules


def _resolve(path: Path, root: Path) -> Path:
    """`path` made absolute against `root`; it must lie inside `root`, whose relative names enter the hash."""
    resolved = (path if path.is_absolute() else root / path).resolve()
    if not resolved.is_relative_to(root):
        raise ValueError(f"code_hash: {path} is outside the root {root}")
    return resolved


def _update(digest: hashlib._Hash, kind: str, name: str, content: bytes) -> None:
    # Length-prefixed fields, so that no two different sequences of (kind, name, content) hash alike.
    for field in (kind.encode(), name.encode(), content):
        digest.update(len(field).to_bytes(8, "little"))
        digest.update(field)


class _SourceTree:
    """First-party modules under one source folder, located by name."""

    def __init__(self, source: Path) -> None:
        self.source = source
        self._found: dict[str, Path | None] = {}

    def path(self, name: str) -> Path:
        found = self._find(name)
        if found is None:
            raise ModuleNotFoundError(f"code_hash: no module {name!r} under {self.source}")
        return found

    def is_module(self, name: str) -> bool:
        return self._find(name) is not None

    def _find(self, name: str) -> Path | None:
        if name not in self._found:
            self._found[name] = None
            if name and all(part.isidentifier() for part in name.split(".")):
                base = self.source.joinpath(*name.split("."))
                candidates = (base / "__init__.py", base.with_suffix(".py"))
                self._found[name] = next((path for path in candidates if path.is_file()), None)
        return self._found[name]

    def closure(self, scripts: Sequence[Path], modules: Sequence[str]) -> list[str]:
        """Every first-party module that running `scripts` or importing `modules` can load."""
        for module in modules:
            self.path(module)  # an unknown entry module is an error, not an empty closure
        todo = list(modules)  # modules imported by name: their code runs and their lazy imports count
        for script in scripts:
            todo.extend(self._imported(_parse_file(script)))
        loaded: set[str] = set()
        named: set[str] = set()
        while todo:
            name = todo.pop()
            if name in named:
                continue
            named.add(name)
            for ancestor in _ancestors(name):  # a package above runs, its lazy imports do not load
                if ancestor not in loaded and self.is_module(ancestor):
                    loaded.add(ancestor)
                    todo.extend(self._imported(_parse_file(self.path(ancestor))))
            loaded.add(name)
            todo.extend(self._imported(_parse_file(self.path(name)), lazy=True))
        return sorted(loaded)

    def _imported(self, module: _Module, lazy: bool = False) -> list[str]:
        """The first-party modules `module` imports by name: statically, and with `lazy` also at run time."""
        names = []
        for imported in module.imports:
            if isinstance(imported, str):
                names.append(imported)
            else:  # `from package import name`: the submodule if there is one, else the package by name
                package, name = imported
                names.append(f"{package}.{name}" if self.is_module(f"{package}.{name}") else package)
        names = [name for name in names if self.is_module(name)]
        if lazy and module.imports_dynamically:
            tables = [module] + [_parse_file(self.path(name)) for name in names]
            names.extend(string for table in tables for string in table.strings if self.is_module(string))
        return names

    def package_data(self, name: str) -> list[Path]:
        """The non-Python files shipped with package `name` (none for a plain module)."""
        init = self.path(name)
        if init.name != "__init__.py":
            return []
        return sorted(_data_files(init.parent, top=True))


def _data_files(folder: Path, top: bool) -> Iterable[Path]:
    if not top and (folder / "__init__.py").is_file():
        return  # a sub-package carries its own data, counted when it is in the closure
    for entry in folder.iterdir():
        if entry.name.startswith(".") or entry.name == "__pycache__":
            continue
        if entry.is_dir():
            yield from _data_files(entry, top=False)
        elif entry.suffix != ".py":
            yield entry


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:end]) for end in range(1, len(parts))]


def _parse_file(path: Path) -> _Module:
    stat = path.stat()
    return _parse_cached(path, stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=4096)
def _parse_cached(path: Path, mtime_ns: int, size: int) -> _Module:
    # Keyed on mtime and size as well: a long-lived process (a test, a notebook) sees edits.
    tree = ast.parse(path.read_bytes(), filename=str(path))
    package = _package_of(path)
    imports: list[str | tuple[str, str]] = []
    strings: set[str] = set()
    imports_dynamically = False
    for node in _walk_without_docstrings(tree):  # one pass: parsing and walking are most of the cost
        if isinstance(node, ast.Import | ast.ImportFrom):
            imports.extend(_import_names(node, package))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            strings.add(node.value)
        elif isinstance(node, ast.Call):
            imports_dynamically = imports_dynamically or _calls_importer(node)
    return _Module(ast.dump(tree), tuple(imports), frozenset(strings), imports_dynamically)


def _walk_without_docstrings(tree: ast.Module) -> Iterator[ast.AST]:
    """Every node of `tree`, like `ast.walk`, after removing each module, class and function docstring in place."""
    todo: list[ast.AST] = [tree]
    while todo:
        node = todo.pop()
        documented = isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        if documented and node.body and _is_string_statement(node.body[0]):
            node.body = node.body[1:]
        todo.extend(ast.iter_child_nodes(node))
        yield node


def _is_string_statement(node: ast.stmt) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)


def _package_of(path: Path) -> list[str] | None:
    """The dotted package `path` lies in, found by walking up `__init__.py` files (for relative imports)."""
    folder = path.parent
    if not (folder / "__init__.py").is_file():
        return None  # a script or a top-level module: no relative imports
    parts: list[str] = []
    while (folder / "__init__.py").is_file():
        parts.insert(0, folder.name)
        folder = folder.parent
    return parts


def _import_names(node: ast.Import | ast.ImportFrom, package: list[str] | None) -> list[str | tuple[str, str]]:
    """`import a.b` gives "a.b"; `from a import b` gives ("a", "b"), a submodule or a name defined in `a`."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not node.level:
        module = node.module or ""
    elif package is None or node.level > len(package):
        return []  # a relative import outside any package fails at run time
    else:
        base = ".".join(package[: len(package) - node.level + 1])
        module = f"{base}.{node.module}" if node.module else base
    return [(module, alias.name) for alias in node.names]


def _calls_importer(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call):
        return False
    function = node.func
    if isinstance(function, ast.Attribute):
        return function.attr in _DYNAMIC_IMPORTERS
    return isinstance(function, ast.Name) and function.id in _DYNAMIC_IMPORTERS
