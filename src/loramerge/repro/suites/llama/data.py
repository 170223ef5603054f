"""The evaluation splits of a Llama NLI suite, made as the KnOTS protocol makes them.

- Read: a split's locked parquet or JSON-lines files, in file then row order; its two text columns (the pair) and
  its label column must be there.
- Labels: each row's label value becomes a class id through the task's `labels` (per class, the dataset's value);
  rows whose value is in `drop_labels` are left out (SNLI's −1: no gold label), any other value stops the run. This
  happens before a split is cut, as KnOTS's loaders filter and remap first (QNLI and RTE: 1 → 2; SciTail:
  'entails' → 0, 'neutral' → 1).
- Split: `official` takes the dataset's validation and test files. `train_test_split` cuts the validation split as
  `datasets.Dataset.train_test_split(test_size=f, shuffle=…, seed=…)` does, and as KnOTS uses it, its *train* part
  is test and its *test* part validation: n_val = ceil(f·N); unshuffled (MNLI), the first N − n_val rows are test and
  the last n_val validation; shuffled (QNLI, RTE), numpy's `default_rng(seed).permutation(N)` puts its first n_val
  entries in validation and the rest, in permutation order, in test. The indices are computed here, not by the
  installed `datasets`, and a test checks them against `datasets`' own function.
- Tokenise: `tokenizer(first, second, truncation=True, max_length=…)` with the tokenizer's own pair template and no
  prompt; the template is rendered (:func:`pair_template`) into each split file's metadata and the job log.
"""

from __future__ import annotations

import fnmatch
import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from loramerge.repro.splits import DataError, pad_sequences

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedTokenizerBase

SPLITS = ("val", "test")
# two sentinel segments, found again in their pair encoding to see what the pair template puts around them
_SENTINELS = ("premise", "hypothesis")


@dataclass(frozen=True)
class PreparedPairs:
    """One task's split as evaluation reads it (PAD_ID-padded int32 token ids, int64 class ids) and how it was made
    (for the split file's metadata and the job log)."""

    tokens: torch.Tensor
    labels: torch.Tensor
    info: dict[str, Any]


def matching_files(files: Mapping[str, Path], patterns: Sequence[str], source: str) -> list[Path]:
    """The downloaded files (repository name -> local path) whose names match any pattern, in name order."""
    chosen = [files[name] for name in sorted(files) if any(fnmatch.fnmatchcase(name, p) for p in patterns)]
    if not chosen:
        raise DataError(source, f"no locked file matches the patterns {list(patterns)}")
    return chosen


def read_pairs(files: Sequence[Path], dataset_spec: Mapping[str, Any], source: str) -> Dataset:
    """The files (all parquet, or all JSON lines) as one `datasets.Dataset`, its text and label columns checked."""
    import datasets

    suffixes = {Path(path).suffix for path in files}
    paths = [str(path) for path in files]
    try:
        if suffixes == {".parquet"}:
            dataset = datasets.Dataset.from_parquet(paths, keep_in_memory=True)
        elif suffixes <= {".jsonl", ".json"}:
            dataset = datasets.Dataset.from_json(paths, keep_in_memory=True)
        else:
            raise DataError(source, f"the files must be all parquet or all JSON lines, got {sorted(suffixes)}")
    except DataError:
        raise
    except Exception as error:  # pyarrow and datasets raise many types on corrupt files
        raise DataError(source, f"unreadable data files {paths}: {error}") from error
    for column in (*dataset_spec["text_columns"], dataset_spec["label_column"]):
        if column not in dataset.column_names:
            raise DataError(source, f"no column {column!r}; the columns are {dataset.column_names}")
    return dataset


def class_ids(
    values: Sequence[Any], labels: Sequence[Any], drop: Sequence[Any], source: str
) -> tuple[np.ndarray, np.ndarray, int]:
    """(rows kept, their class ids, rows dropped) of a label column: class c is the rows whose value is labels[c];
    rows whose value is in `drop` are left out; any other value is a DataError that counts them."""
    to_class = {value: index for index, value in enumerate(labels) if value is not None}
    dropped, rows, classes, unknown = 0, [], [], Counter()
    for row, value in enumerate(values):
        if value in to_class:
            rows.append(row)
            classes.append(to_class[value])
        elif value in drop:
            dropped += 1
        else:
            unknown[repr(value)] += 1
    if unknown:
        raise DataError(
            source,
            f"label values {dict(unknown)} (value: rows) are neither a class's (labels {list(labels)}) nor dropped "
            f"(drop_labels {list(drop)})",
        )
    return np.asarray(rows, dtype=np.int64), np.asarray(classes, dtype=np.int64), dropped


def split_indices(size: int, val_fraction: float, shuffle: bool, seed: int, source: str) -> dict[str, np.ndarray]:
    """{'val', 'test': row indices} of `datasets`' train_test_split(test_size=val_fraction, shuffle, seed) on
    `size` rows, whose test part KnOTS validates on and whose train part it tests on."""
    num_val = math.ceil(val_fraction * size)
    num_test = size - num_val
    if num_val < 1 or num_test < 1:
        raise DataError(source, f"a {val_fraction} validation share of {size} rows leaves an empty split")
    if not shuffle:
        return {"val": np.arange(num_test, size), "test": np.arange(num_test)}
    permutation = np.random.default_rng(seed).permutation(size)
    return {"val": permutation[:num_val], "test": permutation[num_val:]}


def load_tokenizer(folder: str | Path) -> PreTrainedTokenizerBase:
    """The backbone folder's tokenizer (local files only, no remote code)."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
    except Exception as error:  # transformers raises many types on missing or malformed tokenizer files
        raise DataError(folder, f"cannot load the tokenizer: {error}") from error


def _find(sequence: Sequence[int], part: Sequence[int], start: int) -> int:
    for position in range(start, len(sequence) - len(part) + 1):
        if list(sequence[position : position + len(part)]) == list(part):
            return position
    return -1


def pair_template(tokenizer: PreTrainedTokenizerBase) -> str:
    """What the tokenizer puts around the two segments of a pair, as text, e.g. Llama-3's
    `<|begin_of_text|>{first}<|begin_of_text|>{second}`: two sentinel segments are encoded as a pair and alone, and
    the tokens of the pair that are not theirs are rendered in place."""
    first, second = (tokenizer(text, add_special_tokens=False)["input_ids"] for text in _SENTINELS)
    pair = tokenizer(*_SENTINELS)["input_ids"]
    at_first = _find(pair, first, 0)
    at_second = _find(pair, second, at_first + len(first)) if at_first >= 0 else -1
    if at_second < 0:
        raise DataError("tokenizer", f"the pair encoding {pair} does not hold its two segments {first}, {second}")

    def render(ids: Sequence[int]) -> str:
        return "".join(tokenizer.convert_ids_to_tokens(list(ids)))

    between = pair[at_first + len(first) : at_second]
    return f"{render(pair[:at_first])}{{first}}{render(between)}{{second}}{render(pair[at_second + len(second) :])}"


def tokenize_pairs(
    tokenizer: PreTrainedTokenizerBase, first: Sequence[Any], second: Sequence[Any], max_length: int, source: str
) -> list[list[int]]:
    """The token ids of each (first, second) pair, truncated to `max_length` tokens as transformers truncates."""
    for name, column in (("first", first), ("second", second)):
        for row, text in enumerate(column):
            if not isinstance(text, str):
                raise DataError(source, f"row {row}: the {name} segment is not text but {text!r}")
    return tokenizer(list(first), list(second), truncation=True, max_length=max_length)["input_ids"]


def check_size(split: str, actual: int, expected: int, source: str) -> None:
    if actual != expected:
        raise DataError(
            source,
            f"the {split} split has {actual} examples but the KnOTS protocol's is {expected}; the dataset revision "
            "or split differs from the one the paper used",
        )


def evaluation_splits(
    files: Mapping[str, Path], spec: Mapping[str, Any], tokenizer: PreTrainedTokenizerBase, source: str
) -> dict[str, PreparedPairs]:
    """{'val' | 'test': the tokenised split} of one task (`nli.tasks.<task>`), size-checked.

    `files` maps each locked file name of the dataset repository to its local path."""
    dataset_spec, split = spec["dataset"], spec["split"]

    def labelled(part: str) -> tuple[Dataset, np.ndarray, np.ndarray, int]:
        dataset = read_pairs(matching_files(files, dataset_spec["files"][part], source), dataset_spec, source)
        values = list(dataset[dataset_spec["label_column"]])
        return dataset, *class_ids(values, spec["labels"], spec.get("drop_labels", []), source)

    if split["method"] == "official":
        parts = {name: labelled(name) for name in SPLITS}
    else:
        dataset, rows, classes, dropped = labelled("validation")
        chosen = split_indices(len(rows), split["val_fraction"], split["shuffle"], split["seed"], source)
        parts = {name: (dataset, rows[chosen[name]], classes[chosen[name]], dropped) for name in SPLITS}
    template = pair_template(tokenizer)
    prepared = {}
    for name, (dataset, rows, classes, dropped) in parts.items():
        check_size(name, len(rows), spec["sizes"][name], source)
        first_column, second_column = dataset_spec["text_columns"]
        selected = dataset.select(rows.tolist())
        ids = tokenize_pairs(tokenizer, selected[first_column], selected[second_column], spec["max_length"], source)
        lengths = [len(sequence) for sequence in ids]
        info = {
            "pair_template": template,
            "max_length": spec["max_length"],
            "longest": max(lengths),
            "at_max_length": sum(length == spec["max_length"] for length in lengths),
            "dropped": dropped,
        }
        prepared[name] = PreparedPairs(pad_sequences(ids), torch.as_tensor(classes), info)
    return prepared


def split_metadata(task: str, split: str, spec: Mapping[str, Any], info: Mapping[str, Any]) -> dict[str, str]:
    """The split file's metadata: where the split comes from and how it was made (JSON for non-text values)."""
    values = {"task": task, "split": split, "repo": spec["dataset"]["repo"], "protocol": spec["split"], **info}
    return {key: value if isinstance(value, str) else json.dumps(value) for key, value in values.items()}
