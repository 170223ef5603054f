"""The statistics stage in the DAG: with regmean and fisher in the plan, one `statistics` job per kind writes every
task's statistics, and the merge job of a data-using method depends on the folder of its own kind (other merges on
none); one real run of the vision demo's smallest config writes statistics folders that the library reads, and a
second run has nothing to do; on the offline fake hub, the CLIP suite prepares each task's seeded training images
first. The smoke config and the fake paper config with RegMean and Fisher merging added; dry runs, then two small
runs (~2 min)."""

from __future__ import annotations

import re
import shutil

import fakehub
import torch
import yaml
from workflow_runner import ROOT, SMOKE_CONFIG, dry_run_jobs, job_counts, snakemake, workdir_with

from loramerge import load_adapters
from loramerge.repro.splits import load_split
from loramerge.stats import Statistics

DATA_USING = {
    "regmean": {
        "grid": {"off_diagonal": [0.9, 1.0]},
        "defaults": {"off_diagonal": 0.9},
        "order": ["lam", "off_diagonal"],
    },
    "fisher": {"order": ["lam"]},
}


def config_with_statistics() -> dict:
    config = yaml.safe_load(SMOKE_CONFIG.read_text())
    config["merge"]["methods"].update(DATA_USING)
    return config


def test_statistics_jobs_are_one_per_kind_and_feed_the_data_using_merges(tmp_path):
    config = config_with_statistics()
    tasks = list(config["demo"]["tasks"])
    workdir = workdir_with(tmp_path, config)
    assert job_counts(workdir)["statistics"] == 2
    jobs = dry_run_jobs(workdir)
    by_output = {job["output"][0]: job["input"] for job in jobs["statistics"]}
    assert sorted(by_output) == ["resources/demo/stats/fisher", "resources/demo/stats/gram"]
    for kind, inputs in by_output.items():
        adapters = [path for path in inputs if "/adapters/" in path]
        heads = [path for path in inputs if "/heads/" in path]
        assert adapters == [f"resources/demo/adapters/{task}" for task in tasks]
        assert heads == ([f"resources/demo/heads/{task}.safetensors" for task in tasks] if "fisher" in kind else [])
    merges = {job["output"][0]: set(job["input"]) for job in jobs["merge"]}
    assert len(merges) == len(config["merge"]["methods"])
    for path, inputs in merges.items():
        statistics = {item for item in inputs if item.startswith("resources/demo/stats/")}
        kind = {"regmean": "gram", "fisher": "fisher"}.get(path.split("/")[3])
        assert statistics == ({f"resources/demo/stats/{kind}"} if kind else set()), path


def test_without_data_using_merges_nothing_collects_statistics(tmp_path):
    counts = job_counts(workdir_with(tmp_path, yaml.safe_load(SMOKE_CONFIG.read_text())))
    assert "statistics" not in counts and counts["merge"] > 0


def test_a_statistics_run_writes_folders_the_library_reads(tmp_path):
    config = config_with_statistics()
    workdir = workdir_with(tmp_path, config)
    tasks = list(config["demo"]["tasks"])
    targets = [f"resources/demo/stats/{kind}" for kind in ("gram", "fisher")]
    snakemake(workdir, *targets)
    adapters = load_adapters([workdir / "resources/demo/adapters" / task for task in tasks])
    tokens = (16 // 8) ** 2 + 1  # the smoke tower's patches and class token
    for kind in ("gram", "fisher"):
        statistics = Statistics(workdir / "resources/demo/stats" / kind, adapters)
        for task, info in enumerate(statistics.info):
            assert info.examples == 120 and info.counted == 120 * tokens  # 120 training images, fewer than 256
            assert info.split.startswith("train: 120 of 120 rows drawn with seed ")
            for module in adapters.modules:
                tensor = statistics.tensor(kind, task, module)
                assert tensor.abs().sum() > 0
                if kind == "gram":  # a sum of xᵀx: symmetric with a positive diagonal
                    assert torch.allclose(tensor, tensor.T) and bool((tensor.diagonal() > 0).all())
    again = snakemake(workdir, "--dry-run", *targets)
    assert "Nothing to be done" in again.stdout + again.stderr


def test_the_clip_suite_collects_statistics_on_its_seeded_training_images(tmp_path):
    root = tmp_path / "paper"
    config = fakehub.build(root, root / "work" / "paper.lock.json")
    # config/config.yaml fixes RegMean's off-diagonal scale, which this extension may not sweep as well
    config["merge"]["methods"] = {"ta": config["merge"]["methods"]["ta"], "fisher": DATA_USING["fisher"]}
    config["merge"]["methods"]["regmean"] = {"order": ["lam"]}
    workdir = root / "work"
    (workdir / "config").mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "config" / "config.yaml", workdir / "config" / "config.yaml")
    (workdir / "paper.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    env = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HUB_CACHE": str(root / "hub"), "HF_HOME": str(root)}
    configfile = ("--configfile", str(workdir / "paper.yaml"))
    tasks = len(fakehub.TASKS)
    result = snakemake(workdir, *configfile, "--dry-run", "--quiet", "rules", env=env)
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", result.stdout + result.stderr, re.M))
    assert (counts["statistics_data"], counts["statistics"]) == (str(tasks), "2")  # fisher and gram
    snakemake(workdir, "resources/vit-b32/stats/gram", *configfile, env=env)  # --configfile takes nargs
    images, _, _ = load_split(workdir / "resources/vit-b32/data/cars/statistics.safetensors")
    assert images.shape == (fakehub.TRAIN_ROWS, 3, fakehub.IMAGE_SIZE, fakehub.IMAGE_SIZE)  # 20 < 256: all of them
    stats = (workdir / "resources/vit-b32/stats/gram/cars/stats.json").read_text()
    tokens = (fakehub.IMAGE_SIZE // 8) ** 2 + 1
    assert f'"counted": {fakehub.TRAIN_ROWS * tokens}' in stats and "statistics: 20 of 20 rows" in stats
