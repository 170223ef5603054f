"""An offline stand-in for the Llama NLI suite's downloads, in the hub cache layout of tests/fakehub.py and under the
real repository names, file names, columns and splits of config/paper-llama3-8b.yaml:

- `meta-llama/Meta-Llama-3-8B`: a tiny Llama causal LM (grouped-query attention like Llama-3, bfloat16 shards with
  an index) and a byte-level tokenizer built offline whose pair template puts <|begin_of_text|> before each segment;
- six adapters as peft 0.3 saved them (a pickled `adapter_model.bin` without adapter names, with the task's
  `base_model.model.score.weight`);
- the six datasets: SNLI and SciTail parquet files, SICK on its `refs/convert/parquet` revision, the SetFit JSON-lines
  files (MNLI's `validation_matched.jsonl`), with the real columns and label spellings;
- the authors' heads file behind a file:// URL (each adapter's head, masked rows zeroed, as the real file is).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import torch
import yaml
from fakehub import ROOT, LocalHub, _cut_down, _torch_bytes, write_repo

TASKS = ("snli", "mnli", "sick", "qnli", "rte", "scitail")
HIDDEN, LAYERS, HEADS, KV_HEADS, RANK = 32, 2, 4, 2, 4
BOS, EOS = "<|begin_of_text|>", "<|end_of_text|>"
BOS_ID, EOS_ID = 256, 257  # after the 256 byte symbols
VAL_ROWS, TEST_ROWS = 12, 20  # official splits (SNLI: plus unlabelled rows, which are dropped)
VALIDATION_ROWS = {"mnli": 40, "qnli": 45, "rte": 25}  # validation splits that train_test_split cuts
WORDS = "a man woman dog cat child plays runs sits sleeps in the park on grass near house red blue small"


def tokenizer_files(scratch: Path) -> dict[str, bytes]:
    """A character-level byte BPE tokenizer (no merges) with Llama-3's special tokens and pair template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from tokenizers.pre_tokenizers import ByteLevel

    vocab = {symbol: index for index, symbol in enumerate(sorted(ByteLevel.alphabet()))}
    vocab.update({BOS: BOS_ID, EOS: EOS_ID})
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([BOS, EOS])
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS}:1 $B:1", special_tokens=[(BOS, BOS_ID)]
    )
    tokenizer.save(str(scratch / "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": BOS, "eos_token": EOS}
    return {
        "tokenizer.json": (scratch / "tokenizer.json").read_bytes(),
        "tokenizer_config.json": json.dumps(config).encode(),
        "special_tokens_map.json": json.dumps({"bos_token": BOS, "eos_token": EOS}).encode(),
    }


def tiny_llama_files(scratch: Path) -> dict[str, bytes]:
    """The base repository: config, bfloat16 shards and their index (as Meta's), tokenizer files and a file the lock
    leaves out (original/, Meta's own checkpoint format)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=EOS_ID + 1,
        hidden_size=HIDDEN,
        intermediate_size=64,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS,
        max_position_embeddings=512,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    folder = scratch / "llama"
    LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(folder, max_shard_size="40KB")
    files = {path.name: path.read_bytes() for path in folder.iterdir()}
    return {**files, **tokenizer_files(scratch), "original/params.json": b"{}"}


def module_shapes() -> dict[str, tuple[int, int]]:
    head_dim = HIDDEN // HEADS
    attention = {"q_proj": HIDDEN, "k_proj": KV_HEADS * head_dim, "v_proj": KV_HEADS * head_dim, "o_proj": HIDDEN}
    return {
        f"model.layers.{layer}.self_attn.{name}": (out_features, HIDDEN)
        for layer in range(LAYERS)
        for name, out_features in attention.items()
    }


def adapter_state(task_index: int, shapes: dict[str, tuple[int, int]] | None = None) -> dict[str, torch.Tensor]:
    """A rank-4 LoRA on q/k/v/o_proj and a score head, keyed as peft 0.3 saved a sequence classifier's adapter."""
    generator = torch.Generator().manual_seed(200 + task_index)
    state = {}
    for module, (out_features, in_features) in (shapes or module_shapes()).items():
        state[f"base_model.model.{module}.lora_A.weight"] = torch.randn(RANK, in_features, generator=generator) * 0.3
        state[f"base_model.model.{module}.lora_B.weight"] = torch.randn(out_features, RANK, generator=generator) * 0.3
    state["base_model.model.score.weight"] = torch.randn(3, HIDDEN, generator=generator)
    return state


def adapter_files(state: dict[str, torch.Tensor]) -> dict[str, bytes]:
    config = {
        "peft_type": "LORA",
        "task_type": "SEQ_CLS",
        "base_model_name_or_path": "meta-llama/Meta-Llama-3-8B",
        "r": RANK,
        "lora_alpha": RANK,
        "lora_dropout": 0.1,
        "bias": "none",
        "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"],
        "modules_to_save": None,
        "fan_in_fan_out": False,
        "inference_mode": True,
        "init_lora_weights": True,
    }
    return {
        "adapter_config.json": json.dumps(config).encode(),
        "adapter_model.bin": _torch_bytes(dict(state)),
        "README.md": b"x",
    }


def _pairs(rows: int, seed: int) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(seed)

    def sentence() -> str:
        return " ".join(rng.choice(WORDS.split(), int(rng.integers(3, 9)))).capitalize() + "."

    return [sentence() for _ in range(rows)], [sentence() for _ in range(rows)]


def parquet_bytes(scratch: Path, name: str, columns: dict[str, list], features: dict[str, Any]) -> bytes:
    import datasets

    dataset = datasets.Dataset.from_dict(columns, features=datasets.Features(features))
    path = scratch / f"{name}.parquet"
    dataset.to_parquet(str(path))
    return path.read_bytes()


def jsonl_bytes(columns: dict[str, list]) -> bytes:
    rows = [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)]
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


def _nli_features(first: str, second: str) -> dict[str, Any]:
    import datasets

    names = ["entailment", "neutral", "contradiction"]
    return {
        first: datasets.Value("string"),
        second: datasets.Value("string"),
        "label": datasets.ClassLabel(names=names),
    }


def dataset_files(scratch: Path, task: str, seed: int) -> dict[str, bytes]:
    """One task's dataset files, named and laid out as its hub repository is."""
    rng = np.random.default_rng(seed)
    if task == "snli":
        files = {}
        for split, rows in (("validation", VAL_ROWS), ("test", TEST_ROWS)):
            premise, hypothesis = _pairs(rows + 2, seed + len(split))
            labels = [*rng.integers(0, 3, rows).tolist(), -1, -1]  # pairs without a gold label
            order = rng.permutation(rows + 2)
            columns = {
                "premise": [premise[i] for i in order],
                "hypothesis": [hypothesis[i] for i in order],
                "label": [labels[i] for i in order],
            }
            name = f"plain_text/{split}-00000-of-00001.parquet"
            files[name] = parquet_bytes(scratch, f"snli-{split}", columns, _nli_features("premise", "hypothesis"))
        return files
    if task == "sick":
        import datasets

        files = {}
        for split, rows in (("validation", VAL_ROWS), ("test", TEST_ROWS)):
            sentence_a, sentence_b = _pairs(rows, seed + len(split))
            columns = {
                "id": [str(i) for i in range(rows)],
                "sentence_A": sentence_a,
                "sentence_B": sentence_b,
                "label": rng.integers(0, 3, rows).tolist(),
                "relatedness_score": rng.uniform(1, 5, rows).tolist(),
            }
            features = {
                "id": datasets.Value("string"),
                **_nli_features("sentence_A", "sentence_B"),
                "relatedness_score": datasets.Value("float32"),
            }
            files[f"default/{split}/0000.parquet"] = parquet_bytes(scratch, f"sick-{split}", columns, features)
        return files
    if task == "scitail":
        import datasets

        files = {}
        for split, rows in (("validation", VAL_ROWS), ("test", TEST_ROWS)):
            premise, hypothesis = _pairs(rows, seed + len(split))
            labels = [str(label) for label in rng.choice(["entails", "neutral"], rows)]
            columns = {"premise": premise, "hypothesis": hypothesis, "label": labels}
            features = {name: datasets.Value("string") for name in columns}
            name = f"tsv_format/{split}-00000-of-00001.parquet"
            files[name] = parquet_bytes(scratch, f"scitail-{split}", columns, features)
        return files
    # the SetFit repositories: JSON lines, text1/text2, label and its text, and the GLUE index
    rows = VALIDATION_ROWS[task]
    text1, text2 = _pairs(rows, seed)
    classes = 3 if task == "mnli" else 2
    names = ["entailment", "neutral", "contradiction"] if task == "mnli" else ["entailment", "not_entailment"]
    labels = rng.integers(0, classes, rows).tolist()
    columns = {"text1": text1, "text2": text2, "label": labels, "idx": list(range(rows))}
    columns["label_text"] = [names[label] for label in labels]
    validation = "validation_matched.jsonl" if task == "mnli" else "validation.jsonl"
    return {validation: jsonl_bytes(columns), "train.jsonl": jsonl_bytes({key: [] for key in columns})}


def build(root: Path, lock_path: Path) -> dict[str, Any]:
    """The fake hub under `root` (hub cache at root/hub, the authors' heads file at root/heads/heads.pt) and a
    paper-llama3-8b config that reads it, with its lock written and its grids cut down."""
    from loramerge.repro.hub import extend_lock, write_lock
    from loramerge.repro.suites.llama.suite import LlamaNliSuite

    cache, scratch = root / "hub", root / "scratch"
    for folder in (cache, scratch, root / "heads"):
        folder.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load((ROOT / "config" / "paper-llama3-8b.yaml").read_text())
    nli = config["nli"]
    nli["lock"] = str(lock_path)
    nli["backbone"]["pad_token_id"] = EOS_ID  # the real one, 128001, is outside the tiny vocabulary
    write_repo(cache, "model", nli["backbone"]["repo"], tiny_llama_files(scratch))
    heads = {}
    for index, (task, spec) in enumerate(nli["tasks"].items()):
        state = adapter_state(index)
        write_repo(cache, "model", spec["adapter"], adapter_files(state))
        heads[task] = state["base_model.model.score.weight"].clone()
        heads[task][spec["masked"]] = 0.0
        dataset = spec["dataset"]
        commit = write_repo(cache, "dataset", dataset["repo"], dataset_files(scratch, task, 10 * index))
        if dataset["revision"] != "main":  # SICK's refs/convert/parquet
            ref = cache / f"datasets--{dataset['repo'].replace('/', '--')}" / "refs" / dataset["revision"]
            ref.parent.mkdir(parents=True, exist_ok=True)
            ref.write_text(commit)
        if spec["split"]["method"] == "official":
            spec["sizes"] = {"val": VAL_ROWS, "test": TEST_ROWS}
        else:
            rows = VALIDATION_ROWS[task]
            val = math.ceil(spec["split"]["val_fraction"] * rows)  # datasets' rule
            spec["sizes"] = {"val": val, "test": rows - val}
    heads_file = root / "heads" / "heads.pt"
    heads_file.write_bytes(_torch_bytes(heads))
    nli["heads"]["authors"] = {
        "url": heads_file.as_uri(),
        "sha256": hashlib.sha256(heads_file.read_bytes()).hexdigest(),
    }
    with mock.patch.dict(os.environ, {"HF_TOKEN": "fake-token"}):
        write_lock(
            lock_path, extend_lock(*LlamaNliSuite.lock_requests(nli), client=LocalHub(cache), log=lambda _: None)
        )
    return cut_down(config)


def cut_down(config: dict[str, Any]) -> dict[str, Any]:
    """fakehub's cut-down grids, every point of a method in one evaluation job, and the paper's column only once the
    repository packages its tables (their folder, and a `report.paper` value the config schema accepts)."""
    config = _cut_down(copy.deepcopy(config))
    config["evaluate"]["points_per_job"] = None
    paper = config["report"]["paper"]
    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    accepted = schema["properties"]["report"]["properties"]["paper"]["enum"]
    packaged = (ROOT / "src" / "loramerge" / "repro" / "report" / "paper" / paper).is_dir() and paper in accepted
    config["report"]["paper"] = paper if packaged else None
    return config
