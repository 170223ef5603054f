"""The base model and the adapters of a Llama NLI suite, from their locked hub downloads.

- The base snapshot (a causal LM checkpoint in safetensors, one file or shards with an index) becomes a saved
  `LlamaForSequenceClassification` folder: its config with one label per class and the pad token KnOTS sets, the
  checkpoint's `model.*` tensors copied a shard at a time (so memory holds one shard, not the 8B model), the language
  modelling head left out, and a zero `score` weight, never used, since every task brings its own head. Tensors keep
  the checkpoint's dtype (bfloat16 for Llama-3); evaluation loads them in `evaluate.dtype`, and bfloat16 → float32
  is exact. The tokenizer files are kept beside it.
- An adapter (peft 0.3's pickled `adapter_model.bin`, read weights-only) is re-saved as safetensors, every tensor
  kept (its `score` head too), after checking that each LoRA module is a linear layer of the base model with the
  LoRA's shape, and that the head, if there, has one row per class.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from loramerge.adapters import load_adapter
from loramerge.errors import AdapterError
from loramerge.io import atomic_directory
from loramerge.repro.splits import DataError
from loramerge.repro.suites.clip.hubdata import convert_adapter as convert_peft_adapter

if TYPE_CHECKING:
    from transformers import LlamaConfig, LlamaForSequenceClassification

MODEL_CONFIG = "config.json"
SINGLE_WEIGHTS, WEIGHTS_INDEX = "model.safetensors", "model.safetensors.index.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
SCORE_KEY = "score.weight"
# the causal LM's output layer, which a sequence classifier does not have
LM_HEAD_KEY = "lm_head.weight"


def classifier_config(config_file: Path, class_names: Sequence[str], pad_token_id: int) -> LlamaConfig:
    """The base model's config as the sequence classifier KnOTS evaluates: one label per class, its pad token, no
    KV cache (every forward pass is a whole sequence) and exact linear layers (pretraining_tp 1)."""
    from transformers import LlamaConfig

    try:
        config = LlamaConfig.from_json_file(config_file)
    except (OSError, ValueError) as error:
        raise DataError(config_file, f"not a Llama config: {error}") from error
    config.architectures = ["LlamaForSequenceClassification"]
    config.num_labels = len(class_names)
    config.id2label = dict(enumerate(class_names))
    config.label2id = {name: index for index, name in enumerate(class_names)}
    config.pad_token_id = pad_token_id
    config.use_cache = False
    config.pretraining_tp = 1
    return config


def saved_config(folder: str | Path) -> LlamaConfig:
    """The config of a classifier folder this module wrote."""
    from transformers import LlamaConfig

    path = Path(folder) / MODEL_CONFIG
    try:
        return LlamaConfig.from_json_file(path)
    except (OSError, ValueError) as error:
        raise DataError(path, f"not a Llama config: {error}") from error


def _meta_classifier(config: LlamaConfig) -> LlamaForSequenceClassification:
    """The classifier of `config` on the meta device: its tensors' names and shapes, without their memory."""
    from transformers import LlamaForSequenceClassification

    with torch.device("meta"):
        return LlamaForSequenceClassification(config)


def expected_tensors(config: LlamaConfig) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor a `LlamaForSequenceClassification` of `config` loads."""
    return {name: tuple(tensor.shape) for name, tensor in _meta_classifier(config).state_dict().items()}


def linear_shapes(config: LlamaConfig) -> dict[str, tuple[int, int]]:
    """Module path -> (out, in) of every linear layer of the classifier (what a LoRA may target)."""
    return {
        name: (module.out_features, module.in_features)
        for name, module in _meta_classifier(config).named_modules()
        if isinstance(module, torch.nn.Linear)
    }


def _shards(files: Mapping[str, Path], source: str) -> list[str]:
    """The checkpoint's weight files, in name order."""
    if WEIGHTS_INDEX in files:
        try:
            weight_map = json.loads(files[WEIGHTS_INDEX].read_text())["weight_map"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise DataError(files[WEIGHTS_INDEX], f"not a safetensors index: {error}") from error
        shards = sorted(set(weight_map.values()))
    elif SINGLE_WEIGHTS in files:
        shards = [SINGLE_WEIGHTS]
    else:
        raise DataError(source, f"the snapshot has neither {WEIGHTS_INDEX} nor {SINGLE_WEIGHTS}")
    absent = [shard for shard in shards if shard not in files]
    if absent:
        raise DataError(source, f"weight files {absent} are not among the locked files; add them to backbone.files")
    return shards


def convert_llama_snapshot(
    files: Mapping[str, Path], folder: str | Path, class_names: Sequence[str], pad_token_id: int, source: str
) -> dict[str, int]:
    """Write the classifier folder (config, shards, index, tokenizer files); returns tensors and parameters copied."""
    for name in (MODEL_CONFIG, *TOKENIZER_FILES):
        if name not in files:
            raise DataError(source, f"the downloaded snapshot has no {name}")
    config = classifier_config(files[MODEL_CONFIG], class_names, pad_token_id)
    expected = expected_tensors(config)
    found: dict[str, tuple[int, ...]] = {}
    weight_map: dict[str, str] = {}
    dtype = None
    with atomic_directory(folder, overwrite=True) as staging:
        for shard in _shards(files, source):
            tensors = {}
            try:
                with safe_open(files[shard], framework="pt") as handle:
                    for key in sorted(handle.keys()):
                        if key != LM_HEAD_KEY:
                            tensors[key] = handle.get_tensor(key)
            except Exception as error:  # safetensors raises several private error types on corrupt files
                raise DataError(files[shard], f"unreadable safetensors file: {error}") from error
            _check_tensors(tensors, expected, files[shard])
            if not tensors:  # a shard of nothing but the language-modelling head
                continue
            found.update({key: tuple(tensor.shape) for key, tensor in tensors.items()})
            weight_map.update(dict.fromkeys(tensors, shard))
            dtype = dtype or next(iter(tensors.values())).dtype
            save_file(tensors, staging / shard, metadata={"format": "pt"})
        missing = sorted(set(expected) - set(found) - {SCORE_KEY})
        if missing:
            raise DataError(source, f"the checkpoint lacks {len(missing)} tensors of the model, e.g. {missing[:3]}")
        # never read (each task scores with its own head), but a saved model must hold every weight it loads
        score_shard = "model-score.safetensors"
        save_file({SCORE_KEY: torch.zeros(expected[SCORE_KEY], dtype=dtype)}, staging / score_shard, {"format": "pt"})
        weight_map[SCORE_KEY] = score_shard
        index = {"metadata": {}, "weight_map": dict(sorted(weight_map.items()))}
        (staging / WEIGHTS_INDEX).write_text(json.dumps(index, indent=2) + "\n")
        config.to_json_file(staging / MODEL_CONFIG)
        for name in TOKENIZER_FILES:
            shutil.copyfile(files[name], staging / name)
    return {"tensors": len(found) + 1, "parameters": sum(torch.Size(shape).numel() for shape in found.values())}


def _check_tensors(tensors: Mapping[str, torch.Tensor], expected: Mapping[str, tuple[int, ...]], path: Path) -> None:
    for key, tensor in tensors.items():
        if key not in expected:
            raise DataError(path, f"tensor {key!r} is not part of a LlamaForSequenceClassification of this config")
        if tuple(tensor.shape) != expected[key]:
            raise DataError(
                path, f"tensor {key!r} has shape {tuple(tensor.shape)} but the config gives {expected[key]}"
            )


def convert_adapter(
    files: Mapping[str, Path],
    folder: str | Path,
    shapes: Mapping[str, tuple[int, int]],
    head_key: str,
    head_shape: tuple[int, int],
    source: str,
) -> dict[str, int]:
    """The downloaded peft adapter as `adapter_config.json` + `adapter_model.safetensors` (as the CLIP suites convert
    theirs), checked against the base model's linear layers (`shapes`) before the folder appears; returns its number
    of LoRA modules and whether it has a head."""
    with atomic_directory(folder, overwrite=True) as staging:
        convert_peft_adapter(files, staging)
        adapter = load_adapter(staging)
        for module, lora in adapter.modules.items():
            if module not in shapes:
                raise AdapterError(source, f"LoRA module {module!r} is not a linear layer of the base model")
            if lora.shape != shapes[module]:
                raise AdapterError(
                    source,
                    f"LoRA module {module!r} has shape {lora.shape} (out × in) but the base model's is "
                    f"{shapes[module]}: the adapter was trained on another model",
                )
        head = adapter.other_tensors.get(head_key)
        if head is not None and tuple(head.shape) != tuple(head_shape):
            raise AdapterError(source, f"head {head_key!r} has shape {tuple(head.shape)}, expected {head_shape}")
    return {"modules": len(adapter.modules), "head": int(head is not None)}
