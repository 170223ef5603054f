"""CLIP zero-shot classification heads (`docs/protocol.md` §2.1) and the joint head over the union of label spaces.

A head row is the mean over templates of the L2-normalized text embeddings of one class, normalized again and scaled
by CLIP's `logit_scale.exp()` (100 for OpenAI CLIP); each prompt is tokenised alone, without padding, as KnOTS does.
The joint head stacks the per-task heads in task order, except that a task may *share* another task's rows (SVHN
uses MNIST's digit rows), which gives ViT-B/32's 748 classes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from loramerge.atomic import write_atomically
from loramerge.repro.heads import HEAD_KEY
from loramerge.repro.splits import CLASS_NAMES_KEY, DataError, read_labelled_tensors
from loramerge.repro.suites.clip.templates import prompts

if TYPE_CHECKING:
    from transformers import CLIPModel, CLIPTokenizer

JOINT_MAP_PREFIX = "local2joint."
TASKS_KEY = "tasks"


def read_class_names(path: str | Path, expected: int | None = None) -> list[str]:
    """One class name per line, in label order; blank or duplicate names and a wrong count are errors."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "class-name file does not exist")
    names = path.read_text(encoding="utf-8").splitlines()
    if not names or any(not name.strip() for name in names):
        raise DataError(path, "class-name file is empty or has a blank line")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise DataError(path, f"duplicate class names: {duplicates[:5]}")
    if expected is not None and len(names) != expected:
        raise DataError(path, f"lists {len(names)} class names but the dataset has {expected} classes")
    return names


def load_clip(folder: str | Path, device: str | torch.device = "cpu") -> tuple[CLIPModel, CLIPTokenizer]:
    """(CLIPModel, CLIPTokenizer) of a local backbone folder: local files only, safetensors only, no remote code."""
    from transformers import CLIPModel, CLIPTokenizer

    try:
        model = CLIPModel.from_pretrained(folder, local_files_only=True, use_safetensors=True, trust_remote_code=False)
        tokenizer = CLIPTokenizer.from_pretrained(folder, local_files_only=True)
    except Exception as error:  # transformers raises OSError, ValueError, safetensors errors
        raise DataError(folder, f"cannot load the CLIP model and tokenizer: {error}") from error
    return model.to(device).eval(), tokenizer


@torch.inference_mode()
def text_head(model: CLIPModel, tokenizer: CLIPTokenizer, class_names: Sequence[str], family: str) -> torch.Tensor:
    """C × D float32 zero-shot head; row c has norm logit_scale.exp()."""
    device = next(model.parameters()).device
    rows = []
    for name in class_names:
        embeddings = []
        for prompt in prompts(family, name):
            tokens = tokenizer(prompt, return_tensors="pt").to(device)
            # text_projection(text_model(...)[1]) as KnOTS computes it; get_text_features' return type varies by version
            pooled = model.text_model(**tokens).pooler_output
            embeddings.append(F.normalize(model.text_projection(pooled).float(), dim=-1)[0])
        rows.append(F.normalize(torch.stack(embeddings).mean(dim=0), dim=0))
    return (torch.stack(rows) * model.logit_scale.exp().float()).cpu().contiguous()


def joint_head(
    heads: Mapping[str, tuple[torch.Tensor, list[str]]], shared: Mapping[str, str]
) -> tuple[torch.Tensor, list[str], dict[str, torch.Tensor]]:
    """(joint head, joint class names, task -> int64 local-to-joint label map) from per-task heads in task order.

    A task in `shared` contributes no rows and maps its labels onto the rows of the task it shares with, which must
    have the same class names in the same order."""
    rows, names, maps, offset = [], [], {}, 0
    for task, (head, class_names) in heads.items():
        if task in shared:
            continue
        rows.append(head)
        names.extend(class_names)
        maps[task] = torch.arange(offset, offset + len(class_names), dtype=torch.int64)
        offset += len(class_names)
    for task, owner in shared.items():
        if task not in heads or owner not in maps:
            raise DataError(
                "evaluate.joint", f"'{task}' shares rows with '{owner}', but both must be tasks that own rows"
            )
        if heads[task][1] != heads[owner][1]:
            raise DataError("evaluate.joint", f"'{task}' shares rows with '{owner}' but their class names differ")
        maps[task] = maps[owner].clone()
    return torch.cat(rows), names, {task: maps[task] for task in heads}


def save_joint_head(
    path: str | Path, head: torch.Tensor, class_names: Sequence[str], maps: Mapping[str, torch.Tensor]
) -> None:
    tensors = {HEAD_KEY: head.float().contiguous(), **{JOINT_MAP_PREFIX + task: m for task, m in maps.items()}}
    header = {CLASS_NAMES_KEY: json.dumps(list(class_names)), TASKS_KEY: json.dumps(list(maps))}
    write_atomically(path, lambda staging: save_file(tensors, staging, metadata=header))


def load_joint_head(path: str | Path, tasks: Sequence[str]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(joint head, task -> local-to-joint map) of a file written by `save_joint_head`, validated."""
    keys = (HEAD_KEY, *(JOINT_MAP_PREFIX + task for task in tasks))
    tensors, class_names = read_labelled_tensors(path, keys, "joint head")
    head = tensors[HEAD_KEY]
    if head.ndim != 2 or head.shape[0] != len(class_names):
        raise DataError(path, f"joint head of shape {tuple(head.shape)} does not match {len(class_names)} names")
    maps = {task: tensors[JOINT_MAP_PREFIX + task] for task in tasks}
    for task, mapping in maps.items():
        if mapping.dtype != torch.int64 or mapping.ndim != 1 or int(mapping.max()) >= len(class_names):
            raise DataError(path, f"the label map of '{task}' must be int64 indices below {len(class_names)}")
    return head.float(), maps
