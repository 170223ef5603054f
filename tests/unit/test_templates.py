"""KnOTS zero-shot templates, the ViT-B/32 class-name files and the task table in config/vit-b32/DATASETS.md."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
import yaml

from loramerge.repro.suites.clip.templates import TEMPLATES, UnknownTemplateFamily, prompts

ROOT = Path(__file__).resolve().parents[2]
CLASSNAMES = ROOT / "config" / "vit-b32" / "classnames"

TEMPLATE_COUNTS = {"cars": 8, "dtd": 8, "eurosat": 3, "gtsrb": 3, "mnist": 1, "svhn": 1, "resisc45": 18, "sun397": 2}
CLASS_COUNTS = {
    "cars": 196,
    "dtd": 47,
    "eurosat": 10,
    "gtsrb": 43,
    "mnist": 10,
    "resisc45": 45,
    "sun397": 397,
    "svhn": 10,
}


def read_classnames(task: str) -> list[str]:
    text = (CLASSNAMES / f"{task}.txt").read_text(encoding="utf-8")
    assert text.endswith("\n") and not text.endswith("\n\n"), f"{task}.txt: must end in exactly one newline"
    return text[:-1].split("\n")


def test_template_counts_per_family():
    assert {family: len(templates) for family, templates in TEMPLATES.items()} == TEMPLATE_COUNTS


@pytest.mark.parametrize("family", sorted(TEMPLATE_COUNTS))
def test_every_template_has_exactly_one_field_named_c(family):
    for template in TEMPLATES[family]:
        fields = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
        assert fields == ["c"], f"{family}: {template!r} has fields {fields}"
    assert len(set(TEMPLATES[family])) == len(TEMPLATES[family]), f"{family}: duplicate templates"


def test_prompts_match_knots_strings():
    # Spot checks against the f-strings of gstoica27/KnOTS dataset/templates.py.
    assert prompts("gtsrb", "stop") == [
        'a zoomed in photo of a "stop" traffic sign.',
        'a centered photo of a "stop" traffic sign.',
        'a close up photo of a "stop" traffic sign.',
    ]
    assert prompts("svhn", "7") == prompts("mnist", "7") == ['a photo of the number: "7".']
    assert prompts("cars", "Tesla Model S Sedan 2012")[3] == "i love my Tesla Model S Sedan 2012!"
    assert prompts("resisc45", "sea ice")[-1] == "aerial view of the sea ice."
    assert prompts("eurosat", "forest") == [
        "a centered satellite photo of forest.",
        "a centered satellite photo of a forest.",
        "a centered satellite photo of the forest.",
    ]


def test_prompts_insert_class_names_literally():
    # A brace or a quote in a class name is text, not a format field.
    assert prompts("sun397", "{c} and 'x'") == ["a photo of a {c} and 'x'.", "a photo of the {c} and 'x'."]


def test_unknown_family_is_a_key_error_naming_the_family():
    with pytest.raises(KeyError) as caught:
        prompts("stanford_cars", "x")
    assert isinstance(caught.value, UnknownTemplateFamily)
    message = str(caught.value)
    assert "'stanford_cars'" in message and "cars" in message and not message.startswith('"')


@pytest.mark.parametrize("task", sorted(CLASS_COUNTS))
def test_classname_files_have_one_clean_name_per_line(task):
    names = read_classnames(task)
    assert len(names) == CLASS_COUNTS[task]
    assert all(name and name == name.strip() and "  " not in name for name in names), f"{task}: blank or padded"
    assert len(set(names)) == len(names), f"{task}: duplicate names"


def test_every_template_family_has_a_classname_file():
    assert {p.stem for p in CLASSNAMES.glob("*.txt")} == set(TEMPLATES)


def test_folder_derived_names_follow_knots_post_processing():
    # DTD, RESISC45, SUN397: sorted ImageFolder folders with '_' replaced by a space (SUN397 also drops the
    # two-character 'a_' prefix), so no name keeps an underscore and each list is in folder-sort order.
    for task in ("dtd", "resisc45", "sun397"):
        assert not any("_" in name for name in read_classnames(task)), task
    for task in ("dtd", "resisc45"):
        names = read_classnames(task)
        assert names == sorted(names), task
    sun = read_classnames("sun397")
    folders = [f"{name[0]}_{name.replace(' ', '_')}" for name in sun]
    assert folders == sorted(folders)
    assert read_classnames("mnist") == read_classnames("svhn") == [str(d) for d in range(10)]
    assert read_classnames("eurosat") == [
        "annual crop land",
        "forest",
        "brushland or shrubland",
        "highway or road",
        "industrial buildings or commercial buildings",
        "pasture land",
        "permanent crop land",
        "residential buildings or homes or apartments",
        "river",
        "lake or sea",
    ]
    cars = read_classnames("cars")
    assert cars[0] == "AM General Hummer SUV 2000" and cars[-1] == "smart fortwo Convertible 2012"
    gtsrb = read_classnames("gtsrb")
    assert gtsrb[14] == "stop" and gtsrb[17] == "red circle with white horizonal stripe no entry"


def suite_tasks() -> dict:
    return yaml.safe_load((ROOT / "config" / "paper-vit-b32.yaml").read_text(encoding="utf-8"))["vision"]["tasks"]


def test_paper_suite_task_table_is_consistent():
    tasks = suite_tasks()
    assert set(tasks) == set(CLASS_COUNTS)
    for task, entry in tasks.items():
        assert entry["templates"] == task
        assert (ROOT / entry["classnames"]).is_file(), entry["classnames"]
        assert entry["adapter"].startswith("hoffman-lab/KnOTS-ViT-B-32_lora_R16_")
        sizes = entry["sizes"]
        if entry["split"] == "permutation":
            # KnOTS: val = first int(0.2 N) entries of the shipped permutation, test = the rest.
            n = sizes["val"] + sizes["test"]
            assert sizes["val"] == int(0.2 * n), task
            assert entry["permutation"] == f"{task}_shuffled_idxs.pt"
        else:
            assert entry["split"] == ("release_complement" if task == "eurosat" else "official"), task
    assert sum(entry["sizes"]["test"] for entry in tasks.values()) == 6433 + 1880 + 2700 + 10104 + 8000 + 6300 + (
        15880 + 20826
    )
