"""Bad intermediate files: the readers name a truncated split, a corrupt merged adapter and a half-written
evaluation JSON, and `reading_inputs` turns such an error into one that names the rule that made the file and what to
delete to have it made again."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from conftest import SHAPES, random_factors, write_adapter

from loramerge.apply import load_update
from loramerge.errors import LoramergeError, SubjectError
from loramerge.repro.heads import load_head, save_head
from loramerge.repro.jobs import IntermediateFileError, reading_inputs
from loramerge.repro.search import SelectionError, evaluation_files, load_finetuned, read_selection
from loramerge.repro.search.records import read_json_file
from loramerge.repro.splits import DataError, load_split, save_split


def a_split(path: Path) -> Path:
    images = torch.randint(0, 256, (12, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    save_split(path, images, torch.arange(12) % 3, ["a", "b", "c"])
    return path


def cut(path: Path, keep: int) -> None:
    path.write_bytes(path.read_bytes()[:keep])


@pytest.mark.parametrize("keep", [0, 5, 40, "half", "all but one"])
def test_a_truncated_split_is_named_as_truncated(tmp_path, keep):
    path = a_split(tmp_path / "val.safetensors")
    size = path.stat().st_size
    cut(path, {"half": size // 2, "all but one": size - 1}.get(keep, keep))
    with pytest.raises(DataError, match="^" + re.escape(f"{path}: unreadable safetensors file: truncated: ")):
        load_split(path)


def test_a_truncated_head_is_named_as_truncated(tmp_path):
    path = tmp_path / "digits.safetensors"
    save_head(path, torch.randn(3, 8), ["a", "b", "c"])
    cut(path, path.stat().st_size - 8)
    with pytest.raises(DataError, match=re.escape(f"{path}: unreadable safetensors file: truncated: ")):
        load_head(path)


def test_a_corrupt_split_that_is_not_short_keeps_the_readers_own_words(tmp_path):
    path = a_split(tmp_path / "val.safetensors")
    data = bytearray(path.read_bytes())
    data[8:12] = b"\xff\xff\xff\xff"  # the header is no longer JSON; the length is whole
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match="unreadable safetensors file: Error while deserializing header") as caught:
        load_split(path)
    assert "truncated" not in str(caught.value)


def evaluation(method: str = "ta") -> dict:
    records = [
        {"lam": 1.0, "task": "digits", "split": split, "correct": 30, "total": 40, "accuracy": 0.75}
        for split in ("val", "test")
    ]
    # a string with quotes, a backslash and brackets in it, which the reader must not take for the document's
    return {"method": method, "point": {"note": 'a "quoted" \\ [bracket} {'}, "records": records}


def test_a_half_written_evaluation_json_is_named_as_incomplete(tmp_path):
    path = tmp_path / "eval" / "ta" / "part0" / "default.json"
    path.parent.mkdir(parents=True)
    text = json.dumps(evaluation(), indent=2) + "\n"
    for keep in range(len(text) - 1):  # wherever the write stopped
        path.write_text(text[:keep])
        with pytest.raises(SelectionError, match="^" + re.escape(f"{path}: incomplete JSON: the file ends")):
            read_json_file(path)
    path.write_text(text[: len(text) // 2])
    with pytest.raises(SelectionError, match="half-written or truncated"):
        load_finetuned([path])
    with pytest.raises(SelectionError, match="incomplete JSON"):
        read_selection(path)
    assert evaluation_files([path.parent]) == [path]  # listing does not read, the selection does


def test_json_broken_inside_is_not_called_incomplete(tmp_path):
    path = tmp_path / "default.json"
    path.write_text('{"records": [1, 2,, 3]}\n')
    with pytest.raises(SelectionError, match=re.escape(f"{path}: cannot read JSON (Expecting value")):
        read_json_file(path)
    path.write_bytes(b'{"records": "\xff"}')
    with pytest.raises(SelectionError, match="cannot read JSON"):
        read_json_file(path)


def test_a_corrupt_merged_adapter_names_its_file(tmp_path):
    factors = random_factors(torch.Generator().manual_seed(0), SHAPES, rank=4)
    folder = write_adapter(tmp_path / "merged" / "ta" / "default", factors)
    weights = folder / "adapter_model.safetensors"
    cut(weights, weights.stat().st_size // 2)
    with pytest.raises(LoramergeError, match="^" + re.escape(str(weights))):
        load_update(folder)


# --- reading_inputs -------------------------------------------------------------------------------------------------

MADE_BY = {
    "resources/demo/data/digits/val.safetensors": "task_data",
    "results/demo/merged/ta": "merge",
    "results/demo/eval/ta/part1": "evaluate_merged",
    "results/demo/eval/ta/part10": "evaluate_merged",
}


def raised_by(error: BaseException, made_by=MADE_BY) -> BaseException:
    with pytest.raises(BaseException) as caught, reading_inputs(made_by):
        raise error
    return caught.value


def test_an_error_about_an_input_file_names_the_rule_that_made_it():
    path = "resources/demo/data/digits/val.safetensors"
    error = raised_by(DataError(path, "unreadable safetensors file: truncated: 10 bytes, but its header says 900"))
    assert isinstance(error, IntermediateFileError) and isinstance(error, SubjectError)
    assert str(error) == (
        f"{path} (made by rule task_data): unreadable safetensors file: truncated: 10 bytes, but its header says 900;"
        " delete it and rerun"
    )
    assert (error.subject, error.rule) == (path, "task_data")
    assert isinstance(error.__cause__, DataError)


def test_a_file_inside_an_output_folder_says_to_delete_the_folder(tmp_path):
    weights = "results/demo/merged/ta/default/adapter_model.safetensors"
    error = raised_by(LoramergeError(f"{weights}: unreadable safetensors file: header too small"))
    assert str(error) == (
        f"{weights} (made by rule merge): unreadable safetensors file: header too small;"
        " delete results/demo/merged/ta and rerun"
    )


def test_a_message_only_error_is_matched_on_its_leading_path_and_not_on_a_prefix_of_a_name():
    path = "results/demo/eval/ta/part10/top_k~20.json"
    error = raised_by(SelectionError(f"{path}: incomplete JSON: the file ends (at 42 bytes) before its document does"))
    assert str(error).startswith(f"{path} (made by rule evaluate_merged): incomplete JSON")
    assert str(error).endswith("; delete results/demo/eval/ta/part10 and rerun")  # not part1


def test_an_os_error_is_matched_on_its_file_name(tmp_path):
    path = "results/demo/eval/ta/part1/default.json"
    error = raised_by(IsADirectoryError(21, "Is a directory", path))
    assert str(error) == (
        f"{path} (made by rule evaluate_merged): [Errno 21] Is a directory: '{path}';"
        " delete results/demo/eval/ta/part1 and rerun"
    )


def test_an_absolute_path_matches_a_relative_input(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "resources/demo/data/digits/val.safetensors"
    error = raised_by(DataError(path, "split file does not exist"))
    assert str(error).startswith(f"{path} (made by rule task_data): split file does not exist; delete ")


@pytest.mark.parametrize(
    "error",
    [
        DataError("head", "has dimension 8 but the features have 16"),  # a subject that is no input file
        SelectionError("tasks ['x'] are not in the evaluation files"),
        ValueError("resources/demo/data/shapes/val.safetensors: not an input of this job"),
        RuntimeError("resources/demo/data/digits/val.safetensors: not a reading error"),
    ],
)
def test_other_errors_pass_unchanged(error):
    assert raised_by(error) is error


def test_nothing_to_map_changes_nothing():
    error = DataError("resources/demo/data/digits/val.safetensors", "split file does not exist")
    assert raised_by(error, made_by={}) is error
