"""The paper-llama3-8b DAG end to end on an offline fake hub (tests/fakehub_llama.py): the gated base read with
HF_TOKEN, the adapters checked and converted, the authors' heads compared with the adapters', KnOTS's splits
tokenised with the pair template, and every table written; and the errors of a missing token or a wrong split."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import fakehub_llama
import pytest
import torch
import yaml
from safetensors import safe_open
from snakemake.utils import update_config
from workflow_runner import FIGURES, ROOT, evaluation_jobs, shared_stage_counts, snakemake

from loramerge.repro.heads import load_head
from loramerge.repro.plan import build_plan
from loramerge.repro.report.table3 import pertask_table
from loramerge.repro.splits import load_token_split

SUITE = "llama3-8b"
CONFIG = ROOT / "config" / "paper-llama3-8b.yaml"


def offline_env(root: Path, token: str = "fake-token") -> dict[str, str]:
    """The fake hub's cache, offline, and a token for the gated base ("" stands for none)."""
    return {
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_HUB_CACHE": str(root / "hub"),
        "HF_HOME": str(root / "hf-home"),
        "HF_TOKEN": token,
    }


def workdir(root: Path, config: dict) -> Path:
    folder = root / "work"
    (folder / "config").mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "config" / "config.yaml", folder / "config" / "config.yaml")
    (folder / "paper.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return folder


@pytest.fixture(scope="module")
def fake_suite(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("llama")
    return root, fakehub_llama.build(root, root / "work" / "paper.lock.json")


@pytest.fixture(scope="module")
def llama_run(fake_suite) -> Path:
    root, config = fake_suite
    folder = workdir(root, config)
    snakemake(folder, "--configfile", str(folder / "paper.yaml"), env=offline_env(root))
    return folder


def dry_run_counts(folder: Path, config_path: Path) -> dict[str, int]:
    output = snakemake(folder, "--configfile", str(config_path), "-n", "--quiet", "rules").stdout
    block = output.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    return {match[1]: int(match[2]) for match in re.finditer(r"^(\w+)\s+(\d+)$", block, re.M) if match[1] != "total"}


def test_the_paper_config_dry_runs_to_the_whole_dag(tmp_path):
    config = yaml.safe_load(CONFIG.read_text())
    # the paper's column only once the repository packages Table 4
    config["report"]["paper"] = fakehub_llama.cut_down(config)["report"]["paper"]
    (tmp_path / "paper.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    counts = dry_run_counts(tmp_path, tmp_path / "paper.yaml")
    merged = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    update_config(merged, config)  # as Snakemake merges --configfile over the Snakefile's config
    tasks = len(config["nli"]["tasks"])
    shared = shared_stage_counts(merged, tasks)
    inputs = {"nli_backbone": 1, "nli_adapter": tasks, "nli_authors_heads": 1, "nli_head": tasks, "nli_data": tasks}
    assert {rule: counts[rule] for rule in (*inputs, *shared) if rule in counts} == {**inputs, **shared}
    # One merge job per method, over its points: 3 top-K for each of 5 TIES-family methods, 11 DARE points (10 p and
    # the 1e-5 default) × 3 seeds for 2, TA, α, Core-TSV and Core-Iso 1 each, LoRA-LEGO 3 K × 3 seeds, the mix's 11 α
    # on one seed, and TARA 2 variants × 3 seeds; RegMean and Fisher (config/config.yaml's) are dropped: this suite
    # collects no statistics
    plans = build_plan(merged)
    points = sum(len(plan.points) for plan in plans.values())
    assert counts["merge"] == len(plans) == 14
    assert points == 5 * 3 + 2 * 33 + 1 + 11 + 2 + 3 * 3 + 11 + 2 * 3
    assert "statistics" not in counts
    assert counts["evaluate_merged"] == evaluation_jobs(merged) == points  # one point per job


def test_whole_dag_runs_offline_on_the_fake_hub(fake_suite, llama_run):
    _, config = fake_suite
    results = llama_run / "results" / SUITE
    paper = config["report"]["paper"]
    pertask = f"{pertask_table(paper)}_pertask"  # the paper's Table 4 once the repository packages it
    tables = ["finetuned_accuracy", pertask, "table7_alpha", "table1_energy_svd", "table2_energy_cur"]
    for table in tables:
        for extension in ("csv", "md", "tex"):
            assert (results / "tables" / f"{table}.{extension}").stat().st_size > 0, table
    for figure in FIGURES:
        assert (results / "figures" / f"{figure}.png").stat().st_size > 0
    if paper:  # the paper's rows beside ours
        assert "paper" in (results / "tables" / f"{pertask}.csv").read_text()
    finetuned = json.loads((results / "finetuned" / "qnli.json").read_text())
    assert {record["split"] for record in finetuned["records"]} == {"val", "test"}


def test_the_backbone_is_a_sequence_classifier_with_the_tokenizer(llama_run):
    backbone = llama_run / "resources" / SUITE / "backbone"
    config = json.loads((backbone / "config.json").read_text())
    assert config["architectures"] == ["LlamaForSequenceClassification"]
    assert config["id2label"] == {"0": "entailment", "1": "neutral", "2": "contradiction"}
    assert config["pad_token_id"] == fakehub_llama.EOS_ID and config["use_cache"] is False
    assert {"tokenizer.json", "tokenizer_config.json", "model.safetensors.index.json"} <= {
        path.name for path in backbone.iterdir()
    }
    weight_map = json.loads((backbone / "model.safetensors.index.json").read_text())["weight_map"]
    assert "lm_head.weight" not in weight_map and "score.weight" in weight_map


def test_splits_follow_the_protocol_and_record_the_pair_template(fake_suite, llama_run):
    root, _ = fake_suite
    data = llama_run / "resources" / SUITE / "data"
    mnli = [json.loads(line) for line in next((root / "hub").glob("datasets--SetFit--mnli/snapshots/*/val*")).open()]
    _, test_labels, names = load_token_split(data / "mnli" / "test.safetensors")
    _, val_labels, _ = load_token_split(data / "mnli" / "val.safetensors")
    # unshuffled: the first 80 % are test, the last 20 % validation
    assert test_labels.tolist() == [row["label"] for row in mnli[:32]]
    assert val_labels.tolist() == [row["label"] for row in mnli[32:]]
    assert names == ["entailment", "neutral", "contradiction"]
    for task, masked in (("qnli", 1), ("rte", 1), ("scitail", 2)):
        for split in ("val", "test"):
            _, labels, _ = load_token_split(data / task / f"{split}.safetensors")
            assert masked not in labels.tolist()
    with safe_open(data / "snli" / "val.safetensors", framework="pt") as handle:
        metadata = handle.metadata()
    assert metadata["pair_template"] == "<|begin_of_text|>{first}<|begin_of_text|>{second}"
    assert json.loads(metadata["dropped"]) == 2  # SNLI pairs without a gold label


def test_heads_are_the_authors_and_agree_with_the_adapters(fake_suite, llama_run):
    root, _ = fake_suite
    authors = torch.load(root / "heads" / "heads.pt", weights_only=True)
    for task in fakehub_llama.TASKS:
        head, names = load_head(llama_run / "resources" / SUITE / "heads" / f"{task}.safetensors")
        assert torch.equal(head, authors[task]) and names == ["entailment", "neutral", "contradiction"]
    rte, _ = load_head(llama_run / "resources" / SUITE / "heads" / "rte.safetensors")
    assert float(rte[1].abs().max()) == 0.0  # the masked row, zero in the authors' file


def test_a_missing_token_stops_the_gated_download(fake_suite, tmp_path):
    root, config = fake_suite
    folder = workdir(tmp_path, config)
    target = f"resources/{SUITE}/backbone"
    result = snakemake(
        folder, target, "--configfile", str(folder / "paper.yaml"), env=offline_env(root, ""), check=False
    )
    assert result.returncode != 0
    assert "meta-llama/Meta-Llama-3-8B: a gated repository: set HF_TOKEN" in result.stdout + result.stderr
    assert not (folder / target).exists()


def test_a_wrong_split_size_stops_the_data_job(fake_suite, tmp_path):
    root, config = fake_suite
    config = json.loads(json.dumps(config))
    config["nli"]["tasks"]["rte"]["sizes"]["val"] += 1
    folder = workdir(tmp_path, config)
    target = f"resources/{SUITE}/data/rte/val.safetensors"
    result = snakemake(folder, target, "--configfile", str(folder / "paper.yaml"), env=offline_env(root), check=False)
    data = folder / "resources" / SUITE / "data" / "rte"
    assert result.returncode != 0
    assert "the val split has 13 examples but the KnOTS protocol's is 14" in result.stdout + result.stderr
    assert not (data / "val.safetensors").exists() and not (data / "test.safetensors").exists()
