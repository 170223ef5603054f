"""The typed search result: the JSON it writes is byte for byte the committed golden files, reading a file back gives
the same object, and a malformed file is an error naming the file and the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loramerge.atomic import write_json
from loramerge.repro.search import (
    JointSelection,
    Selection,
    SelectionError,
    read_selection,
    select_joint,
    select_method,
)

GOLDEN = Path(__file__).parent / "golden" / "search"
TASKS = ("digits", "letters")
TOTALS = {"digits": 300, "letters": 200}
FINETUNED = {"digits": {"test": 0.8, "val": 0.75}, "letters": {"test": 0.6, "val": 0.55}}


def correct(total: int, *codes: float) -> int:
    """A deterministic count in 0..total from a setting's numbers (no randomness, so the golden files stay put)."""
    return int(sum((i + 3) * 7919 * code for i, code in enumerate(codes)) * 1000) % (total + 1)


def evaluations(method: str, points: list[dict], lams: list[float], joint: bool = False) -> list[dict]:
    files = []
    for point in points:
        records = []
        for lam in lams:
            for task in TASKS:
                for split in ("val", "test"):
                    codes = (lam, *point.values(), len(task), split == "val")
                    total = TOTALS[task]
                    if joint:
                        h1 = correct(total // 2, *codes)
                        hits = {"1": h1, "3": h1 + correct(total // 4, *codes, 3), "5": total // 2 + total // 4 + 1}
                        records.append({"lam": lam, "task": task, "split": split, "total": total, "hits": hits})
                    else:
                        count = correct(total, *codes)
                        records.append({"lam": lam, "task": task, "split": split, "correct": count, "total": total})
        files.append({"method": method, "point": point, "records": records})
    return files


LAMS = [0.2, 0.4, 0.6000000000000001, 1.0]
TIES_SPEC = {"order": ["lam", "top_k"], "grids": {"lam": LAMS, "top_k": [10, 20, 50]}, "defaults": {"top_k": 20}}
DARE_SPEC = {"order": ["lam", "drop_p"], "grids": {"lam": LAMS, "drop_p": [0.1, 0.5]}, "defaults": {"drop_p": 0.1}}


def dare_points(seeds: list[int]) -> list[dict]:
    return [{"drop_p": p, "seed": seed, "top_k": 100} for p in (0.1, 0.5) for seed in seeds]


def golden_selection(name: str) -> Selection | JointSelection:
    """Each golden file's selection, computed afresh."""
    ties = evaluations("knots_ties", [{"top_k": k} for k in (10, 20, 50)], LAMS)
    spec = (TIES_SPEC["order"], TIES_SPEC["grids"], TIES_SPEC["defaults"])
    dare = (DARE_SPEC["order"], DARE_SPEC["grids"], DARE_SPEC["defaults"])
    if name == "knots_ties":
        return select_method(ties, FINETUNED, *spec)
    if name == "knots_ties_published":
        return select_method(ties, FINETUNED, *spec, normalize_by="published", published={"digits": 90, "letters": 70})
    if name == "dare_ties_three_seeds":
        files = evaluations("dare_ties", dare_points([0, 1, 2]), LAMS)
        return select_method(files, FINETUNED, *dare, replicates={"seed": [0, 1, 2]})
    if name == "dare_ties_one_seed":
        files = evaluations("dare_ties", dare_points([0]), LAMS)
        return select_method(files, FINETUNED, *dare, replicates={"seed": [0]})
    if name == "joint_ties":
        files = evaluations("ties", [{"top_k": k} for k in (10, 20, 50)], LAMS, joint=True)
        return select_joint(files, *spec, ks=[1, 3, 5], select_k=3)
    if name == "joint_dare_ties_two_seeds":
        files = evaluations("dare_ties", dare_points([0, 1]), LAMS, joint=True)
        return select_joint(files, *dare, ks=[5, 1, 3], select_k=1, replicates={"seed": [0, 1]})
    raise KeyError(name)


NAMES = [
    "knots_ties",
    "knots_ties_published",
    "dare_ties_three_seeds",
    "dare_ties_one_seed",
    "joint_ties",
    "joint_dare_ties_two_seeds",
]


@pytest.mark.parametrize("name", NAMES)
def test_written_selection_is_byte_identical_to_the_golden_file(tmp_path: Path, name: str):
    # The golden files were written by the search before it was split into modules and given a typed result.
    written = write_json(tmp_path / f"{name}.json", golden_selection(name).to_json())
    assert written.read_bytes() == (GOLDEN / f"{name}.json").read_bytes()


@pytest.mark.parametrize("name", NAMES)
def test_golden_files_read_back_into_the_same_record(tmp_path: Path, name: str):
    golden = GOLDEN / f"{name}.json"
    record = read_selection(golden)
    assert isinstance(record, JointSelection if name.startswith("joint") else Selection)
    assert record == golden_selection(name)
    assert record.to_json() == json.loads(golden.read_text())
    assert write_json(tmp_path / "again.json", record.to_json()).read_bytes() == golden.read_bytes()


def test_record_keeps_integers_integers_and_null_spreads():
    record = read_selection(GOLDEN / "dare_ties_one_seed.json")
    assert record.greedy.params["top_k"] == 100 and isinstance(record.greedy.params["top_k"], int)
    assert record.replicates == {"seed": [0]} and record.replicate_count == 1
    assert record.greedy.test.std is not None and record.greedy.test.std.mean is None
    assert not record.greedy.has_spread  # one replicate has no sample spread
    three = read_selection(GOLDEN / "dare_ties_three_seeds.json")
    assert three.grid.has_spread and [r.params for r in three.grid.val.replicates] == [{"seed": s} for s in (0, 1, 2)]
    joint = read_selection(GOLDEN / "joint_dare_ties_two_seeds.json")
    assert joint.ks == (1, 3, 5) and joint.select_k == 1
    assert set(joint.grid.test.pooled) == {1, 3, 5} and isinstance(joint.grid.test.total["digits"], int)
    assert joint.chosen("grid") is joint.grid and joint.grid.split("val") is joint.grid.val
    with pytest.raises(ValueError, match="'best'"):
        joint.chosen("best")
    with pytest.raises(ValueError, match="'train'"):
        joint.grid.split("train")


def edit_golden(name: str, change) -> dict:
    data = json.loads((GOLDEN / f"{name}.json").read_text())
    change(data)
    return data


@pytest.mark.parametrize(
    ("name", "change", "message"),
    [
        ("knots_ties", lambda d: d.pop("method"), r"the top level has no \['method'\]"),
        ("knots_ties", lambda d: d.update(extra=1), r"unexpected keys \['extra'\]"),
        ("knots_ties", lambda d: d["grid"]["test"]["per_task"].update(digits="high"), r"grid\.test\.per_task\.digits"),
        ("knots_ties", lambda d: d["greedy"]["params"].update(top_k=[20]), r"greedy\.params\.top_k"),
        ("knots_ties", lambda d: d["greedy_path"][1].update(kept="yes"), r"greedy_path\[1\]\.kept"),
        ("knots_ties", lambda d: d["greedy"]["val"].pop("mean"), r"greedy\.val has no \['mean'\]"),
        ("dare_ties_three_seeds", lambda d: d["grid"]["val"].pop("replicates"), r"grid\.val has 'std' without"),
        ("dare_ties_three_seeds", lambda d: d["grid"]["val"]["replicates"][2].pop("mean"), r"replicates\[2\] has no"),
        ("joint_ties", lambda d: d["grid"]["val"]["pooled"].update({"three": 1.0}), r"grid\.val\.pooled\.three"),
        ("joint_ties", lambda d: d["grid"]["val"]["total"].update(digits=2.5), r"grid\.val\.total\.digits"),
        ("joint_ties", lambda d: d.pop("ks"), r"has no \['ks'\]"),
    ],
)
def test_malformed_results_are_errors_naming_the_file_and_key(tmp_path: Path, name, change, message):
    path = tmp_path / "search" / f"{name}.json"
    path.parent.mkdir()
    path.write_text(json.dumps(edit_golden(name, change)))
    with pytest.raises(SelectionError, match=rf"search/{name}\.json: .*{message}"):
        read_selection(path)


def test_unreadable_result_names_the_file(tmp_path: Path):
    with pytest.raises(SelectionError, match=r"missing\.json: cannot read JSON"):
        read_selection(tmp_path / "missing.json")
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(SelectionError, match=r"list\.json: the top level must be an object"):
        read_selection(tmp_path / "list.json")
