"""The Llama NLI suite's protocol details and bad inputs, offline on tiny stand-ins (tests/fakehub_llama.py): KnOTS's
split indices are `datasets`' own, labels remap before a split, masked classes, the pair template, last-token pooling
of the converted base model, and every bad input stopping with a message that names it and leaving nothing behind."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import datasets
import fakehub_llama
import httpx2
import pytest
import torch
import yaml
from fakehub import LocalHub, write_repo
from huggingface_hub.errors import GatedRepoError
from safetensors.torch import save_file
from snakemake.utils import update_config

from loramerge.errors import AdapterError
from loramerge.repro.hub import HubError, RepoRequest, extend_lock, fetch_gated_repo_files, lock_url
from loramerge.repro.plan import ConfigError
from loramerge.repro.splits import DataError, pad_sequences
from loramerge.repro.suites.base import load_suite
from loramerge.repro.suites.evaluation import count_correct
from loramerge.repro.suites.llama.data import (
    class_ids,
    evaluation_splits,
    load_tokenizer,
    pair_template,
    read_pairs,
    split_indices,
    tokenize_pairs,
)
from loramerge.repro.suites.llama.hubinputs import convert_adapter, convert_llama_snapshot, linear_shapes, saved_config
from loramerge.repro.suites.llama.suite import LlamaNliSuite
from loramerge.repro.suites.llama.taskheads import fetch_authors_heads, task_head

ROOT = Path(__file__).resolve().parents[2]
CLASSES = ["entailment", "neutral", "contradiction"]
HEAD_KEY = "base_model.model.score.weight"


def paper_config() -> dict:
    """config/paper-llama3-8b.yaml merged over config/config.yaml, as Snakemake merges them."""
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    update_config(config, yaml.safe_load((ROOT / "config" / "paper-llama3-8b.yaml").read_text()))
    return config


def written(folder: Path, files: dict[str, bytes]) -> dict[str, Path]:
    """The files on disk, as a download returns them (repository name -> local path)."""
    paths = {}
    for name, content in files.items():
        paths[name] = folder / name
        paths[name].parent.mkdir(parents=True, exist_ok=True)
        paths[name].write_bytes(content)
    return paths


@pytest.fixture(scope="module")
def backbone(tmp_path_factory) -> Path:
    """The tiny base model converted as the suite converts Meta-Llama-3-8B."""
    root = tmp_path_factory.mktemp("base")
    files = written(root / "hub", fakehub_llama.tiny_llama_files(root))
    convert_llama_snapshot(files, root / "backbone", CLASSES, fakehub_llama.EOS_ID, "tiny")
    return root / "backbone"


# --------------------------------------------------------------------------------------------------- the protocol


@pytest.mark.parametrize(
    ("rows", "val_fraction", "shuffle", "sizes"),
    [(9815, 0.2, False, (1963, 7852)), (5463, 0.2, True, (1093, 4370)), (277, 0.5, True, (139, 138))],
    ids=["mnli", "qnli", "rte"],
)
def test_split_indices_are_datasets_own_train_test_split(rows, val_fraction, shuffle, sizes):
    """KnOTS validates on the `test` part of train_test_split(seed=42) and tests on its `train` part."""
    dataset = datasets.Dataset.from_dict({"row": list(range(rows))})
    theirs = dataset.train_test_split(test_size=val_fraction, shuffle=shuffle, seed=42)
    ours = split_indices(rows, val_fraction, shuffle, 42, "task")
    assert ours["val"].tolist() == list(theirs["test"]["row"]) and ours["test"].tolist() == list(theirs["train"]["row"])
    assert (len(ours["val"]), len(ours["test"])) == sizes  # the protocol's sizes
    if not shuffle:  # MNLI: the first 80 % are test, the last 20 % validation
        assert ours["test"].tolist() == list(range(7852))


def test_labels_map_to_classes_and_unlabelled_pairs_are_dropped():
    rows, classes, dropped = class_ids([0, 1, 1, 0], [0, None, 1], [], "qnli")
    assert classes.tolist() == [0, 2, 2, 0] and rows.tolist() == [0, 1, 2, 3] and dropped == 0  # 1 → 2
    _, classes, _ = class_ids(["neutral", "entails"], ["entails", "neutral", None], [], "scitail")
    assert classes.tolist() == [1, 0]
    rows, classes, dropped = class_ids([-1, 2, 0, -1], [0, 1, 2], [-1], "snli")
    assert rows.tolist() == [1, 2] and classes.tolist() == [2, 0] and dropped == 2
    with pytest.raises(DataError, match=r"snli: label values \{'3': 1\}"):
        class_ids([0, 3], [0, 1, 2], [-1], "snli")


def test_the_remap_comes_before_the_split(tmp_path):
    """RTE's labels are remapped on the whole validation split, then cut: the rows are those of train_test_split."""
    files = written(tmp_path, fakehub_llama.dataset_files(tmp_path, "rte", 0))
    spec = copy.deepcopy(paper_config()["nli"]["tasks"]["rte"])
    spec["sizes"] = {"val": 13, "test": 12}
    tokenizer = load_tokenizer(
        written(tmp_path / "tok", fakehub_llama.tokenizer_files(tmp_path))["tokenizer.json"].parent
    )
    splits = evaluation_splits(files, spec, tokenizer, "rte")
    labels = list(read_pairs([files["validation.jsonl"]], spec["dataset"], "rte")["label"])
    theirs = datasets.Dataset.from_dict({"label": labels}).train_test_split(test_size=0.5, shuffle=True, seed=42)
    assert splits["val"].labels.tolist() == [2 * label for label in theirs["test"]["label"]]
    assert splits["test"].labels.tolist() == [2 * label for label in theirs["train"]["label"]]


def test_the_suite_reads_the_paper_config():
    suite = load_suite(paper_config())
    assert isinstance(suite, LlamaNliSuite) and suite.tasks == list(fakehub_llama.TASKS)
    assert suite.masked_by_task() == {"snli": [], "mnli": [], "sick": [], "qnli": [1], "rte": [1], "scitail": [2]}
    published = {"snli": 92.498, "mnli": 90.308, "sick": 91.582, "qnli": 94.485, "rte": 89.855, "scitail": 96.519}
    assert suite.published_finetuned() == published
    assert "adapter" not in suite.data_spec("qnli") and suite.data_spec("qnli")["labels"] == [0, None, 1]
    repos, urls = LlamaNliSuite.lock_requests(suite.settings)
    assert repos[0] == RepoRequest(
        "model", "meta-llama/Meta-Llama-3-8B", suite.settings["backbone"]["files"], "main", True
    )
    assert len(repos) == 1 + 2 * 6 and urls == [suite.settings["heads"]["authors"]["url"]]


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (lambda nli: nli["tasks"]["qnli"].update(masked=[0]), "nli.tasks.qnli.masked"),
        (lambda nli: nli["tasks"]["rte"].update(labels=[0, 1]), "nli.tasks.rte.labels"),
        (lambda nli: nli["tasks"]["snli"].update(drop_labels=[2]), "nli.tasks.snli.drop_labels"),
        (lambda nli: nli["tasks"]["mnli"]["split"].update(method="official"), "nli.tasks.mnli"),
        (lambda nli: nli["heads"].update(authors=None), "nli.heads.authors"),
        (lambda nli: nli["tasks"]["sick"].pop("max_length"), "nli.tasks.sick"),
    ],
    ids=["masked-label", "label-count", "dropped-class", "split-files", "no-authors-file", "schema"],
)
def test_bad_settings_name_their_key(edit, key):
    config = paper_config()
    edit(config["nli"])
    with pytest.raises(ConfigError, match=f"config key '{key}"):
        load_suite(config)


def test_masked_classes_are_never_predicted():
    head = torch.eye(3)
    features = torch.tensor([[0.0, 5.0, 1.0], [0.0, 5.0, 2.0]])  # class 1 scores highest
    qnli = LlamaNliSuite.masked_classes(load_suite(paper_config()), "qnli")
    assert count_correct(features, head, torch.tensor([2, 2]), qnli) == 2
    assert count_correct(features, head, torch.tensor([2, 2])) == 0


def test_the_pair_template_puts_begin_of_text_before_each_segment(tmp_path):
    folder = written(tmp_path, fakehub_llama.tokenizer_files(tmp_path))["tokenizer.json"].parent
    tokenizer = load_tokenizer(folder)
    assert pair_template(tokenizer) == "<|begin_of_text|>{first}<|begin_of_text|>{second}"
    ids = tokenize_pairs(tokenizer, ["A cat.", "Dogs run."], ["Yes.", "No."], 2000, "toy")
    cat, yes = (tokenizer(text, add_special_tokens=False)["input_ids"] for text in ("A cat.", "Yes."))
    assert ids[0] == [fakehub_llama.BOS_ID, *cat, fakehub_llama.BOS_ID, *yes]
    assert [len(row) for row in tokenize_pairs(tokenizer, ["A cat."], ["Yes."], 6, "toy")] == [6]  # truncated
    with pytest.raises(DataError, match="row 1: the second segment is not text but None"):
        tokenize_pairs(tokenizer, ["a", "b"], ["c", None], 10, "toy")


def test_last_token_features_score_as_the_hub_classifier_on_right_padded_batches(backbone):
    """The converted base loads as the suite's backbone (float32 from bfloat16 shards), and a head scoring its
    last-token features gives LlamaForSequenceClassification's own logits on a right-padded batch."""
    model = LlamaNliSuite.load_backbone(backbone)
    assert model.dtype == torch.float32 and model.config.pad_token_id == fakehub_llama.EOS_ID
    tokenizer = load_tokenizer(backbone)
    premises, hypotheses = ["A cat sits.", "Dogs.", "A man runs in the park."], ["Yes.", "A red house.", "No."]
    ids = tokenize_pairs(tokenizer, premises, hypotheses, 2000, "toy")
    features = LlamaNliSuite.encode(model, pad_sequences(ids), batch_size=2, device="cpu")
    head = torch.randn(3, fakehub_llama.HIDDEN, generator=torch.Generator().manual_seed(0))
    width = max(map(len, ids))
    padded = torch.tensor([row + [fakehub_llama.EOS_ID] * (width - len(row)) for row in ids])
    with torch.no_grad():
        model.score.weight.copy_(head)
        logits = model(input_ids=padded, attention_mask=(padded != fakehub_llama.EOS_ID).long()).logits
    torch.testing.assert_close(features @ head.T, logits, rtol=1e-4, atol=1e-5)


def test_the_converted_base_keeps_the_checkpoint_weights(backbone, tmp_path):
    from safetensors.torch import load_file

    original = {}
    for path in written(tmp_path, fakehub_llama.tiny_llama_files(tmp_path)).values():
        if path.name.startswith("model-"):
            original.update(load_file(path))
    converted = {}
    for path in backbone.glob("model-*.safetensors"):
        converted.update(load_file(path))
    assert set(converted) == (set(original) - {"lm_head.weight"}) | {"score.weight"}
    assert all(torch.equal(converted[key], original[key]) for key in original if key != "lm_head.weight")
    assert not converted["score.weight"].any()  # never used: each task brings its head


# --------------------------------------------------------------------------------------------------- bad inputs


def test_a_gated_repository_without_a_token_names_hf_token(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    request = RepoRequest("model", "meta-llama/Meta-Llama-3-8B", ["config.json"], gated=True)
    with pytest.raises(HubError, match=r"meta-llama/Meta-Llama-3-8B: a gated repository: set HF_TOKEN.*not set"):
        extend_lock([request], [], client=LocalHub(tmp_path), log=lambda _: None)
    lock = {"repos": {"model:meta-llama/Meta-Llama-3-8B": {"revision": "0" * 40, "files": {"x": "0" * 64}}}}
    with pytest.raises(HubError, match="HF_TOKEN is not set"):
        fetch_gated_repo_files(lock, tmp_path / "lock.json", "model", "meta-llama/Meta-Llama-3-8B", LocalHub(tmp_path))


class RefusingHub(LocalHub):
    """The hub answering 403 for a gated repository the token's account has not been granted."""

    def download(self, repo_id: str, filename: str, repo_type: str, revision: str) -> str:
        response = httpx2.Response(403, request=httpx2.Request("GET", f"https://huggingface.co/{repo_id}"))
        raise GatedRepoError(f"Access to model {repo_id} is restricted.", response=response)


def test_a_refused_token_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_wrong")
    write_repo(tmp_path, "model", "meta-llama/Meta-Llama-3-8B", {"config.json": b"{}"})
    request = RepoRequest("model", "meta-llama/Meta-Llama-3-8B", ["config.json"], gated=True)
    with pytest.raises(HubError, match=r"refused the token in HF_TOKEN.*accept its licence"):
        extend_lock([request], [], client=RefusingHub(tmp_path), log=lambda _: None)
    lock = extend_lock([request], [], client=LocalHub(tmp_path), log=lambda _: None)
    with pytest.raises(HubError, match="refused the token in HF_TOKEN"):
        fetch_gated_repo_files(lock, tmp_path / "lock.json", "model", request.repo_id, RefusingHub(tmp_path))


def test_an_adapter_that_does_not_fit_the_base_stops(backbone, tmp_path):
    config = saved_config(backbone)
    shapes = fakehub_llama.module_shapes()
    shapes["model.layers.1.self_attn.k_proj"] = (24, fakehub_llama.HIDDEN)  # 3 KV heads where the base has 2
    files = written(tmp_path / "download", fakehub_llama.adapter_files(fakehub_llama.adapter_state(0, shapes)))
    out = tmp_path / "adapters" / "snli"
    with pytest.raises(
        AdapterError, match=r"org/snli: LoRA module 'model.layers.1.self_attn.k_proj' has shape \(24, 32\)"
    ):
        convert_adapter(files, out, linear_shapes(config), HEAD_KEY, (3, config.hidden_size), "org/snli")
    assert not out.exists() and not (tmp_path / "adapters").exists()
    state = fakehub_llama.adapter_state(0)
    state[HEAD_KEY] = torch.zeros(2, fakehub_llama.HIDDEN)
    files = written(tmp_path / "download", fakehub_llama.adapter_files(state))
    with pytest.raises(AdapterError, match=rf"head '{HEAD_KEY}' has shape \(2, 32\), expected \(3, 32\)"):
        convert_adapter(files, out, linear_shapes(config), HEAD_KEY, (3, config.hidden_size), "org/snli")
    assert not out.exists()


def test_a_checkpoint_that_does_not_fit_its_config_stops(tmp_path):
    files = written(tmp_path / "hub", fakehub_llama.tiny_llama_files(tmp_path))
    config = json.loads(files["config.json"].read_text())
    files["config.json"].write_text(json.dumps({**config, "intermediate_size": 48}))
    with pytest.raises(
        DataError,
        match=r"'model\.layers\.0\.mlp\.down_proj\.weight' has shape \(32, 64\) but the config gives \(32, 48\)",
    ):
        convert_llama_snapshot(files, tmp_path / "backbone", CLASSES, fakehub_llama.EOS_ID, "tiny")
    assert not (tmp_path / "backbone").exists()


def adapter_with_head(folder: Path, head: torch.Tensor) -> Path:
    folder.mkdir(parents=True)
    save_file({HEAD_KEY: head}, folder / "adapter_model.safetensors")
    return folder


def test_heads_of_the_wrong_shape_or_that_disagree_stop(tmp_path):
    head = torch.randn(3, 8)
    adapter = adapter_with_head(tmp_path / "adapter", head)
    authors = tmp_path / "authors.safetensors"
    save_file({"qnli": torch.zeros(2, 8)}, authors)
    with pytest.raises(
        DataError, match=r"authors.safetensors: the authors' head of task 'qnli' must be a float \(3, 8\)"
    ):
        task_head("qnli", adapter, HEAD_KEY, authors, "authors", (3, 8), [1], 1e-6)
    masked_zeroed = head.clone()
    masked_zeroed[1] = 0
    save_file({"qnli": masked_zeroed}, authors)
    chosen, info = task_head("qnli", adapter, HEAD_KEY, authors, "authors", (3, 8), [1], 1e-6)
    assert torch.equal(chosen, masked_zeroed) and info == {"source": "authors", "compared": True, "max_difference": 0}
    with pytest.raises(DataError, match=r"qnli: the adapter's head and the authors' differ .* rows \[0, 1, 2\]"):
        task_head("qnli", adapter, HEAD_KEY, authors, "authors", (3, 8), [], 1e-6)  # row 1 counts when unmasked
    with pytest.raises(DataError, match="holds no head for task 'rte'"):
        task_head("rte", adapter, HEAD_KEY, authors, "adapter", (3, 8), [1], 1e-6)


def test_the_authors_file_at_another_checksum_stops(tmp_path):
    pickled = tmp_path / "heads.pt"
    torch.save({"qnli": torch.randn(3, 8)}, pickled)
    url, pinned = pickled.as_uri(), hashlib.sha256(pickled.read_bytes()).hexdigest()
    destination = tmp_path / "resources" / "authors_heads.safetensors"
    lock = {"repos": {}, "urls": {url: lock_url(url)}}
    with pytest.raises(HubError, match=r"the lock records sha256 \w+ but nli\.heads\.authors\.sha256 pins 0{64}"):
        fetch_authors_heads(lock, tmp_path / "lock.json", url, "0" * 64, destination)
    pickled.write_bytes(pickled.read_bytes() + b"\0")  # the file changed after it was locked
    with pytest.raises(HubError, match="sha256 mismatch"):
        fetch_authors_heads(lock, tmp_path / "lock.json", url, pinned, destination)
    assert not destination.exists()


def test_a_dataset_without_an_expected_column_stops(tmp_path):
    files = written(tmp_path, fakehub_llama.dataset_files(tmp_path, "scitail", 0))
    spec = copy.deepcopy(paper_config()["nli"]["tasks"]["scitail"])
    spec["dataset"]["text_columns"] = ["premise", "claim"]
    tokenizer = load_tokenizer(
        written(tmp_path / "tok", fakehub_llama.tokenizer_files(tmp_path))["tokenizer.json"].parent
    )
    with pytest.raises(DataError, match=r"allenai/scitail: no column 'claim'; the columns are \['premise'"):
        evaluation_splits(files, spec, tokenizer, "allenai/scitail")
