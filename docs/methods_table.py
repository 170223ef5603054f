"""Print the README's methods table from the method catalogue (`python docs/methods_table.py`).

The README block between `<!-- methods:begin -->` and `<!-- methods:end -->` is this script's output, and
tests/unit/test_docs.py checks that it still is, so the README cannot drift from `loramerge.methods.catalog`.
"""

from __future__ import annotations

from loramerge.methods.catalog import CATALOG, MethodFacts

COLUMNS = ("method", "display name", "family", "what it merges", "needs", "searched", "low rank")
NEEDS_WORDS = {
    "adaptation": "adaptation (learned coefficients)",
    "decomposition": "decomposition",
    "statistics": "statistics",
    "tuned_branches": "tuned branches",
}


def _cell(text: str) -> str:
    # Markdown escapes: a pipe would split the cell, `<param>` would be read as an HTML tag, `*` as emphasis.
    for character in "|<*":
        text = text.replace(character, "\\" + character)
    return text


def _row(facts: MethodFacts) -> tuple[str, ...]:
    needs = ", ".join(NEEDS_WORDS[need] for need in sorted(facts.needs)) or "–"
    return (
        f"`{facts.name}`",
        facts.display_name,
        facts.family,
        facts.summary,
        needs,
        ", ".join(f"`{name}`" for name in facts.searched),
        "yes" if facts.low_rank else "no (dense ΔW)",
    )


def methods_table_markdown() -> str:
    """The catalogue as a Markdown table, one row per method in catalogue order, ending in a newline."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cell(cell) for cell in _row(facts)) + " |" for facts in CATALOG.values()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(methods_table_markdown(), end="")
