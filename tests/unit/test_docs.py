"""The docs stay true: the README's methods table is the catalogue's, cited protocol sections exist, and nothing in
the repository points at files a user's clone does not have."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
PROTOCOL = REPO / "docs" / "protocol.md"
# What the repository is made of (results, resources and environments are not).
SOURCES = ("README.md", "Snakefile", "pyproject.toml", ".ci", "benchmarks", "config", "docs", "envs", "profiles",
           "scripts", "src", "tests", "workflow")  # fmt: skip
TEXT_SUFFIXES = {".py", ".md", ".smk", ".yaml", ".yml", ".rst", ".txt", ".toml", ".sh", ".cfg", ""}
# Notes that only the developers' machines have.
PRIVATE_REFERENCES = re.compile(r"\.\./shared|/work/shared|shared/(?:reference|paper)|knots-protocol|baselines\.md")


def load_methods_table():
    spec = importlib.util.spec_from_file_location("methods_table", REPO / "docs" / "methods_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def repository_text_files() -> list[Path]:
    files = []
    for name in SOURCES:
        path = REPO / name
        candidates = [path] if path.is_file() else sorted(path.rglob("*"))
        files += [
            file
            for file in candidates
            if file.is_file()
            and file.suffix in TEXT_SUFFIXES
            and not {"__pycache__", ".snakemake"} & set(file.relative_to(REPO).parts)
            and not any(part.endswith(".egg-info") for part in file.parts)
        ]
    return files


def test_readme_methods_table_is_the_catalogue():
    text = README.read_text(encoding="utf-8")
    block = re.search(r"<!-- methods:begin -->\n(.*?)<!-- methods:end -->", text, flags=re.DOTALL)
    assert block, "README.md lacks the <!-- methods:begin --> … <!-- methods:end --> block"
    table = load_methods_table().methods_table_markdown()
    assert block.group(1) == table, "README's methods table is stale: paste `python docs/methods_table.py` into it"


def test_the_methods_table_has_one_row_per_catalogue_method():
    from loramerge.methods.catalog import CATALOG

    rows = load_methods_table().methods_table_markdown().splitlines()[2:]
    assert [row.split(" | ")[0].strip("| `") for row in rows] == list(CATALOG)
    assert all(row.count(" | ") == 6 for row in rows)  # seven cells: no stray pipe in a summary


def protocol_sections() -> set[str]:
    headings = re.findall(r"^#{2,3} (\d+(?:\.\d+)?)\.? ", PROTOCOL.read_text(encoding="utf-8"), flags=re.MULTILINE)
    return set(headings)


def test_protocol_citations_name_existing_sections():
    sections = protocol_sections()
    assert {"1", "2.1", "3", "4.2", "4.4", "5.1", "5.2", "6.1"} <= sections
    citation = re.compile(r"docs/protocol\.md`?\s*((?:§\s*\d+(?:\.\d+)?(?:\s*(?:,|and|–)\s*)?)+)")
    cited: dict[str, set[str]] = {}
    for file in repository_text_files():
        for match in citation.finditer(file.read_text(encoding="utf-8", errors="replace")):
            for number in re.findall(r"§\s*(\d+(?:\.\d+)?)", match.group(1)):
                cited.setdefault(number, set()).add(str(file.relative_to(REPO)))
    missing = {number: sorted(files) for number, files in cited.items() if number not in sections}
    assert not missing, f"cited sections that docs/protocol.md does not have: {missing}"


def test_nothing_cites_the_developers_private_notes():
    offenders = {}
    for file in repository_text_files():
        name = file.relative_to(REPO).as_posix()
        if file == Path(__file__).resolve():
            continue
        lines = [
            f"{number}: {line.strip()}"
            for number, line in enumerate(file.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
            if PRIVATE_REFERENCES.search(line)
        ]
        if lines:
            offenders[name] = lines
    assert not offenders, f"files pointing at notes a user's clone lacks (cite docs/protocol.md): {offenders}"
