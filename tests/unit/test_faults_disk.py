"""A full disk while an output is written: the project's error names the file, and neither the file nor its
temporary sibling is left behind (text and JSON, safetensors saves, tables, figures).

The fault is injected at the write itself: the patched writer puts part of the bytes into the temporary file, as a
write that runs out of space does, then raises what the real writer raises on a full disk (an OSError with ENOSPC
from Python's file objects and matplotlib; safetensors' own error carrying "(os error 28)" from its Rust writer)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pandas as pd
import pytest
import safetensors.torch
import torch
from matplotlib.figure import Figure
from safetensors import SafetensorError

from loramerge.atomic import OutOfSpaceError, write_atomically, write_json, write_text
from loramerge.io import atomic_directory
from loramerge.repro.report.figures import save_figure
from loramerge.repro.report.render import write_table
from loramerge.repro.splits import save_split


def full_disk(code: int = errno.ENOSPC) -> OSError:
    return OSError(code, os.strerror(code))


def fill_disk_at(monkeypatch, fails=lambda path: True, code: int = errno.ENOSPC) -> None:
    """Path.write_bytes (the atomic text writers' write) puts half the bytes into the files `fails` picks, then
    raises the OS's full-disk error; other files are written normally."""
    original = Path.write_bytes

    def write_bytes(self: Path, data: bytes) -> int:
        if not fails(self):
            return original(self, data)
        original(self, data[: len(data) // 2])
        raise full_disk(code)

    monkeypatch.setattr(Path, "write_bytes", write_bytes)


def assert_nothing_written(folder: Path) -> None:
    assert sorted(path.name for path in folder.iterdir()) == []


@pytest.mark.parametrize(
    ("write", "name"),
    [
        (lambda path: write_text(path, "x" * 1000), "notes.txt"),
        (lambda path: write_json(path, {"a": [1] * 100}), "r.json"),
    ],
    ids=["text", "json"],
)
def test_full_disk_in_a_text_write_names_the_file_and_leaves_nothing(tmp_path, monkeypatch, write, name):
    fill_disk_at(monkeypatch)
    destination = tmp_path / "out" / name
    with pytest.raises(OutOfSpaceError) as caught:
        write(destination)
    assert str(caught.value) == f"{destination}: no space left on device (ENOSPC) while writing; free space and rerun"
    assert_nothing_written(destination.parent)


def test_an_exhausted_quota_is_named_as_such(tmp_path, monkeypatch):
    fill_disk_at(monkeypatch, code=errno.EDQUOT)
    with pytest.raises(OutOfSpaceError, match=r"no space left on device \(EDQUOT\)"):
        write_text(tmp_path / "a.txt", "text")
    assert_nothing_written(tmp_path)


def test_a_failed_rewrite_keeps_the_previous_file_whole(tmp_path, monkeypatch):
    destination = write_text(tmp_path / "a.txt", "previous contents\n")
    fill_disk_at(monkeypatch)
    with pytest.raises(OutOfSpaceError):
        write_text(destination, "new contents that do not fit\n")
    assert [path.name for path in tmp_path.iterdir()] == ["a.txt"]
    assert destination.read_text() == "previous contents\n"


def test_full_disk_in_a_safetensors_save_names_the_split_file(tmp_path, monkeypatch):
    original = safetensors.torch.serialize_file

    def serialize_half(tensors, filename, metadata=None):
        original(tensors, filename, metadata)
        with open(filename, "r+b") as handle:
            handle.truncate(os.path.getsize(filename) // 2)
        # safetensors' Rust writer reports the OS error inside its own exception type, as a real full disk shows
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(safetensors.torch, "serialize_file", serialize_half)
    destination = tmp_path / "data" / "digits" / "val.safetensors"
    images, labels = torch.zeros(4, 3, 8, 8, dtype=torch.uint8), torch.tensor([0, 1, 0, 1])
    with pytest.raises(OutOfSpaceError) as caught:
        save_split(destination, images, labels, ["zero", "one"])
    assert str(caught.value).startswith(f"{destination}: no space left on device (ENOSPC)")
    assert_nothing_written(destination.parent)


def test_a_table_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    fill_disk_at(monkeypatch, fails=lambda path: ".tex." in path.name)  # the temporary sibling of the third file
    table = pd.DataFrame({"method": ["ta", "ties"], "accuracy": [0.5, 0.75]})
    with pytest.raises(OutOfSpaceError) as caught:
        write_table(table, tmp_path / "tables" / "table3")
    assert str(caught.value).startswith(f"{tmp_path / 'tables' / 'table3.tex'}: no space left on device")
    assert_nothing_written(tmp_path / "tables")  # neither the .csv nor the .md written before it


def test_a_figure_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    original = Figure.savefig

    def full_at_pdf(self: Figure, target, **kwargs) -> None:
        if kwargs.get("format") == "pdf":
            Path(target).write_bytes(b"%PDF-1.4 partial")
            raise full_disk()
        original(self, target, **kwargs)

    monkeypatch.setattr(Figure, "savefig", full_at_pdf)
    figure = Figure()
    figure.add_subplot().plot([0, 1], [1, 0])
    with pytest.raises(OutOfSpaceError, match=r"fig3_alpha\.pdf: no space left on device \(ENOSPC\)"):
        save_figure(figure, tmp_path / "figures" / "fig3_alpha")
    assert_nothing_written(tmp_path / "figures")


def test_other_write_errors_pass_unchanged_and_leave_nothing(tmp_path):
    def broken(staging: Path) -> None:
        staging.write_bytes(b"partial")
        raise ValueError("cannot serialise this")

    with pytest.raises(ValueError, match="cannot serialise this"):
        write_atomically(tmp_path / "a.bin", broken)
    assert_nothing_written(tmp_path)


def test_full_disk_inside_an_output_folder_names_the_folder_and_leaves_nothing(tmp_path):
    """Backbones, adapters, merges and statistics are folders staged whole; a raw write that fails in one (the OS's
    error names no file) is reported against the folder, and neither it nor its staging folder remains."""
    destination = tmp_path / "out" / "merged"
    with pytest.raises(OutOfSpaceError) as caught, atomic_directory(destination) as staging:
        (staging / "adapter_model.safetensors").write_bytes(b"x" * 10)
        raise full_disk()
    assert str(destination) in str(caught.value) and "ENOSPC" in str(caught.value)
    assert not (tmp_path / "out").exists()
