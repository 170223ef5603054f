"""The paper-vit-b32 DAG end to end on an offline fake hub (tests/fakehub.py), and the protocol details that are easy
to get wrong: split order, joint label mapping, pooled Hits@k, locked downloads and the errors of bad inputs."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import fakehub
import numpy as np
import pytest
import torch
import yaml
from workflow_runner import ROOT, evaluation_jobs, shared_stage_counts, snakemake

from loramerge.repro.hub import HubError, fetch_repo_files, lock_repo, lock_suite, read_lock
from loramerge.repro.plan import build_plan
from loramerge.repro.splits import DataError, load_split
from loramerge.repro.suites.clip.hubdata import knots_split, read_numpy_permutation
from loramerge.repro.suites.clip.zeroshot import joint_head, load_joint_head, read_class_names, save_joint_head
from loramerge.repro.suites.evaluation import count_hits


def offline_env(root: Path) -> dict[str, str]:
    return {
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_HUB_CACHE": str(root / "hub"),
        "HF_HOME": str(root / "hf-home"),
    }


def paper_workdir(root: Path, config: dict) -> Path:
    workdir = root / "work"
    (workdir / "config").mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "config" / "config.yaml", workdir / "config" / "config.yaml")
    (workdir / "paper.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return workdir


@pytest.fixture(scope="module")
def fake_suite(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("paper")
    config = fakehub.build(root, root / "work" / "paper.lock.json")
    return root, config


@pytest.fixture(scope="module")
def paper_run(fake_suite) -> Path:
    root, config = fake_suite
    # RegMean and Fisher (null: skipped) add two statistics jobs over every task's model; the CLIP suite's statistics
    # run on this fake hub by tests/workflow/test_statistics_dag.py, and both merges end to end by the text demo's test
    config = {**config, "merge": {**config["merge"], "methods": {**config["merge"]["methods"]}}}
    config["merge"]["methods"].update(regmean=None, fisher=None)
    workdir = paper_workdir(root, config)
    snakemake(workdir, "--configfile", str(workdir / "paper.yaml"), env=offline_env(root))
    return workdir


def test_paper_config_dry_runs_to_the_full_dag(tmp_path):
    shutil.copytree(ROOT / "config" / "vit-b32", tmp_path / "config" / "vit-b32")  # class names, relative to the run
    result = snakemake(tmp_path, "--configfile", str(ROOT / "config" / "paper-vit-b32.yaml"), "-n", "--quiet", "rules")
    counts = {
        line.split()[0]: int(line.split()[1])
        for line in result.stdout.splitlines()
        if len(line.split()) == 2 and line.split()[1].isdigit()
    }
    assert counts["download_adapter"] == 8 and counts["prepare_dataset"] == 8 and counts["text_heads"] == 8
    assert counts["fetch_permutation"] == 5 and counts["download_backbone"] == 1
    config = yaml.safe_load((ROOT / "config" / "paper-vit-b32.yaml").read_text())
    # One merge job per method, over its points: TA 1 + 5 × 10 top-K + 2 DARE methods × (10 p + KnOTS's 1e-5 held
    # while λ is swept) × 3 seeds, 11 hybrid α, Core-TSV and Core-Iso 1 each, LoRA-LEGO 3 K × 3 seeds, Table 8's mix
    # 11 α × 3 seeds, RegMean and Fisher 1 each, and TARA 3 variants × 3 seeds
    plans = build_plan(config)
    assert counts["merge"] == len(plans) == 16
    assert sum(len(plan.points) for plan in plans.values()) == 1 + 5 * 10 + 2 * 33 + 11 + 2 + 3 * 3 + 11 * 3 + 2 + 3 * 3
    assert counts["evaluate_merged"] == counts["evaluate_joint"] == evaluation_jobs(config) > 9
    assert "gather_evaluations" not in counts  # the searches read the evaluation jobs' folders directly


def test_vit_l14_is_a_config_file_whose_dry_run_lists_its_whole_dag(tmp_path):
    shutil.copytree(ROOT / "config" / "vit-b32", tmp_path / "config" / "vit-b32")  # the shared class names
    config_path = ROOT / "config" / "paper-vit-l14.yaml"
    config = yaml.safe_load(config_path.read_text())
    plans = build_plan(config)
    output = snakemake(tmp_path, "--configfile", str(config_path), "-n").stdout
    block = output.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    counts = {match[1]: int(match[2]) for match in re.finditer(r"^(\w+)\s+(\d+)$", block, re.M) if match[1] != "total"}
    tasks = config["vision"]["tasks"]
    assert counts == {
        "download_backbone": 1,
        "download_adapter": len(tasks),
        "fetch_permutation": sum(spec["split"] == "permutation" for spec in tasks.values()),
        "prepare_dataset": len(tasks),
        "text_heads": len(tasks),
        **shared_stage_counts(config, len(tasks)),
    }
    assert counts["evaluate_merged"] > len(plans)  # points_per_job spreads a method over jobs
    assert "results/vit-l14/search/hybrid.json" in output and "resources/vit-l14/adapters/cars" in output
    assert "results/vit-b32" not in output and "resources/vit-b32" not in output


def test_whole_paper_dag_runs_offline_on_the_fake_hub(paper_run):
    results = paper_run / "results" / "vit-b32"
    tables = ("finetuned_accuracy", "table3_pertask", "table5_joint", "table9_joint_pertask", "table7_alpha")
    for table in (*tables, "table1_energy_svd", "table2_energy_cur"):
        for extension in ("csv", "md", "tex"):
            assert (results / "tables" / f"{table}.{extension}").stat().st_size > 0
    # the paper's numbers sit beside ours
    assert "paper" in (results / "tables" / "table3_pertask.csv").read_text()
    for figure in ("fig1_overlap", "fig2_ur_vs_r", "fig3_alpha"):
        assert (results / "figures" / f"{figure}.png").stat().st_size > 0
    assert sorted(path.name for path in (results / "joint").iterdir()) == sorted(
        path.name for path in (results / "eval").iterdir()
    )


def test_downloaded_adapters_are_converted_to_safetensors(paper_run):
    folder = paper_run / "resources" / "vit-b32" / "adapters" / "cars"
    files = sorted(path.name for path in folder.iterdir() if not path.name.startswith("."))  # Snakemake's timestamp
    assert files == ["adapter_config.json", "adapter_model.safetensors"]


def test_splits_follow_the_permutation_order(fake_suite, paper_run):
    """Validation is the first int(0.2·N) entries of the shipped permutation, test the rest, in permutation order."""
    root, _ = fake_suite
    import datasets

    parquet = next((root / "hub").glob("datasets--fake-org--mnist/snapshots/*/data/test-*.parquet"))
    labels = np.asarray(datasets.Dataset.from_parquet(str(parquet))["label"])
    permutation = read_numpy_permutation(root / "knots" / "rev0" / "mnist_shuffled_idxs.pt")
    data = paper_run / "resources" / "vit-b32" / "data" / "mnist"
    _, val_labels, _ = load_split(data / "val.safetensors")
    _, test_labels, _ = load_split(data / "test.safetensors")
    assert val_labels.tolist() == labels[permutation[:8]].tolist()
    assert test_labels.tolist() == labels[permutation[8:]].tolist()


def test_knots_split_takes_the_head_of_the_permutation():
    permutation = np.array([4, 0, 3, 1, 2, 9, 8, 7, 6, 5])
    split = knots_split(permutation, 10, 0.2, "toy")
    assert split["val"].tolist() == [4, 0] and split["test"].tolist() == [3, 1, 2, 9, 8, 7, 6, 5]
    with pytest.raises(DataError, match="not a permutation of range"):
        knots_split(np.array([0, 0, 1]), 3, 0.2, "toy")


def test_joint_head_shares_the_digit_rows_and_maps_labels(tmp_path):
    digits = [str(d) for d in range(10)]
    heads = {
        "cars": (torch.randn(3, 4), ["a", "b", "c"]),
        "mnist": (torch.randn(10, 4), digits),
        "svhn": (torch.randn(10, 4), digits),
        "dtd": (torch.randn(2, 4), ["x", "y"]),
    }
    head, names, maps = joint_head(heads, {"svhn": "mnist"})
    assert head.shape == (15, 4) and names == ["a", "b", "c", *digits, "x", "y"]
    assert maps["svhn"].tolist() == maps["mnist"].tolist() == list(range(3, 13))
    assert maps["dtd"].tolist() == [13, 14]
    torch.testing.assert_close(head[3:13], heads["mnist"][0])
    save_joint_head(tmp_path / "joint.safetensors", head, names, maps)
    loaded, loaded_maps = load_joint_head(tmp_path / "joint.safetensors", list(heads))
    torch.testing.assert_close(loaded, head)
    assert loaded_maps["svhn"].tolist() == list(range(3, 13))


def test_joint_head_of_the_run_stacks_the_tasks_with_svhn_on_mnist_rows(paper_run):
    """In task order cars, dtd, eurosat, gtsrb, mnist, …: the real suite's offsets 0, 196, 243, 253, 296 (748 rows)
    become 0, 5, 10, 15, 20 with the stand-ins' 5 classes (digits 10); SVHN owns no rows."""
    head, maps = load_joint_head(paper_run / "resources" / "vit-b32" / "heads" / "joint.safetensors", fakehub.TASKS)
    assert head.shape[0] == 6 * fakehub.CLASSES + 10
    assert maps["gtsrb"].tolist() == list(range(15, 20))
    assert maps["svhn"].tolist() == maps["mnist"].tolist() == list(range(20, 30))
    assert maps["resisc45"].tolist() == list(range(30, 35))
    # rows are template-averaged unit vectors times CLIP's logit scale
    scale = float(torch.tensor(2.6592).exp())  # CLIPConfig's default logit_scale_init_value
    torch.testing.assert_close(head.norm(dim=1), torch.full((head.shape[0],), scale), rtol=1e-4, atol=1e-3)


def test_hits_at_k_counts_the_label_among_the_k_best():
    features = torch.eye(4)
    head = torch.tensor([[4.0, 3, 2, 1], [1, 4, 3, 2], [1, 2, 4, 3], [1, 2, 3, 4]]).T  # class c scores row c high
    # feature i scores classes in the order of column i of the matrix above
    labels = torch.tensor([0, 3, 1, 1])
    scores = features @ head.T
    ranks = [int((scores[i] > scores[i, labels[i]]).sum()) for i in range(4)]
    expected = {str(k): sum(rank < k for rank in ranks) for k in (1, 2, 3)}
    assert count_hits(features, head, labels, [1, 2, 3]) == expected
    assert expected["1"] < expected["3"]


def test_a_sha256_mismatch_stops_the_download_naming_the_file(fake_suite, tmp_path):
    root, config = fake_suite
    lock = read_lock(config["vision"]["lock"])
    entry = lock["repos"]["model:fake-org/lora-dtd"]
    entry["files"]["adapter_model.bin"] = "0" * 64
    lock_path = tmp_path / "tampered.lock.json"
    lock_path.write_text(json.dumps(lock))
    with pytest.raises(HubError, match=r"fake-org/lora-dtd@.*adapter_model\.bin: sha256 mismatch"):
        fetch_repo_files(read_lock(lock_path), lock_path, "model", "fake-org/lora-dtd", fakehub.LocalHub(root / "hub"))


def test_a_repository_missing_from_the_lock_says_how_to_lock(tmp_path):
    with pytest.raises(HubError, match=r"no lock entry.*loramerge lock"):
        fetch_repo_files(read_lock(tmp_path / "absent.json"), tmp_path / "absent.json", "model", "org/repo")


def test_a_tampered_blob_stops_the_run(fake_suite, tmp_path):
    """The workflow's download job, through huggingface_hub's offline cache, refuses a file whose bytes changed."""
    root, config = fake_suite
    hub = tmp_path / "hub"
    shutil.copytree(root / "hub", hub, symlinks=True)
    blob = (next(hub.glob("models--fake-org--lora-gtsrb/snapshots/*/adapter_model.bin"))).resolve()
    blob.write_bytes(blob.read_bytes() + b"\0")
    workdir = paper_workdir(tmp_path, config)
    env = {**offline_env(root), "HF_HUB_CACHE": str(hub)}
    result = snakemake(
        workdir, "resources/vit-b32/adapters/gtsrb", "--configfile", str(workdir / "paper.yaml"), env=env, check=False
    )
    assert result.returncode != 0
    assert "sha256 mismatch" in result.stderr + result.stdout
    assert not (workdir / "resources" / "vit-b32" / "adapters" / "gtsrb").exists()


def test_a_wrong_split_size_stops_the_run(fake_suite, tmp_path):
    root, config = fake_suite
    config = json.loads(json.dumps(config))
    config["vision"]["tasks"]["svhn"]["sizes"]["test"] += 1
    workdir = paper_workdir(tmp_path, config)
    target = "resources/vit-b32/data/svhn/test.safetensors"
    result = snakemake(workdir, target, "--configfile", str(workdir / "paper.yaml"), env=offline_env(root), check=False)
    assert result.returncode != 0
    assert "the test split has 32 examples but the KnOTS protocol's is 33" in result.stderr + result.stdout
    data = workdir / "resources" / "vit-b32" / "data" / "svhn"
    assert not (data / "val.safetensors").exists() and not (data / "test.safetensors").exists()


def test_a_missing_class_name_file_stops_the_run(fake_suite, tmp_path):
    root, config = fake_suite
    config = json.loads(json.dumps(config))
    config["vision"]["tasks"]["dtd"]["classnames"] = str(tmp_path / "absent" / "dtd.txt")
    workdir = paper_workdir(tmp_path, config)
    result = snakemake(workdir, "--configfile", str(workdir / "paper.yaml"), "-n", env=offline_env(root), check=False)
    assert result.returncode != 0
    assert "absent/dtd.txt" in result.stderr + result.stdout
    with pytest.raises(DataError, match="class-name file does not exist"):
        read_class_names(tmp_path / "absent" / "dtd.txt")


def test_lock_records_commits_and_checksums_and_only_extends(fake_suite):
    root, config = fake_suite
    lock = read_lock(config["vision"]["lock"])
    entry = lock["repos"]["model:fake-org/lora-cars"]
    assert entry["revision"] == fakehub.LocalHub(root / "hub").resolve("fake-org/lora-cars", "model", "main")[0]
    assert sorted(entry["files"]) == ["adapter_config.json", "adapter_model.bin"]  # README.md matches no pattern
    assert len(lock["urls"]) == 5 and all(url.startswith("file://") for url in lock["urls"])
    kept = {"repos": {"model:fake-org/lora-cars": {"revision": "f" * 40, "files": {"x": "0" * 64}}}, "urls": {}}
    extended = lock_suite(config["vision"], kept, client=fakehub.LocalHub(root / "hub"), log=lambda _: None)
    assert extended["repos"]["model:fake-org/lora-cars"]["revision"] == "f" * 40
    assert extended["repos"]["model:fake-org/lora-dtd"] == lock["repos"]["model:fake-org/lora-dtd"]


def test_lock_refuses_a_pattern_that_matches_nothing(fake_suite):
    root, _ = fake_suite
    with pytest.raises(HubError, match=r"no file matches 'model\.safetensors'"):
        lock_repo("model", "fake-org/tiny-clip", ["model.safetensors"], client=fakehub.LocalHub(root / "hub"))
