"""Pretraining the tiny backbone on a pretext task, and LoRA fine-tuning it per task with a cosine classifier head.

Heads are CLIP-style: unit-norm class vectors, logits = TEMPERATURE · normalize(features) @ head.T, so a saved head
predicts with argmax(normalize(features) @ head.T) exactly as a zero-shot head of text embeddings does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from tqdm import tqdm

from loramerge.apply import load_update
from loramerge.io import atomic_directory
from loramerge.repro.heads import HEAD_FILE, load_head, save_head
from loramerge.repro.splits import DataError
from loramerge.repro.suites.clip.model import image_features, load_backbone, preprocess
from loramerge.repro.suites.demo_vision.suite import DemoVisionSuite
from loramerge.repro.suites.evaluation import EvalTask, evaluate
from loramerge.repro.suites.training import check_training_labels, shuffled_batches, warmup_cosine_schedule

if TYPE_CHECKING:
    from peft import PeftModel

TEMPERATURE = DemoVisionSuite.head_temperature  # the statistics' Fisher scores the saved heads at it too
DEFAULT_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "out_proj")
_TAIL_FRACTION = 0.1  # the last 10 % of steps give the reported training loss and accuracy


def _check_training_data(
    images: torch.Tensor, labels: torch.Tensor, n_classes: int, steps: int, batch_size: int
) -> None:
    if images.dtype != torch.uint8 or images.ndim != 4 or len(images) != len(labels) or len(images) == 0:
        raise DataError("training data", f"expected uint8 N×3×S×S images and N labels, got {tuple(images.shape)}")
    check_training_labels(labels, n_classes, steps, batch_size)


def cosine_logits(features: torch.Tensor, head: torch.Tensor) -> torch.Tensor:
    return TEMPERATURE * F.normalize(features, dim=-1) @ F.normalize(head, dim=-1).T


def _train_loop(
    parameters: list[torch.nn.Parameter],
    logits_of: Callable[[torch.Tensor], torch.Tensor],
    pixel_values: torch.Tensor,
    labels: torch.Tensor,
    steps: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    generator: torch.Generator,
    description: str,
    progress: bool,
) -> dict:
    optimizer = torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay)
    scheduler = warmup_cosine_schedule(optimizer, steps)
    tail_start = steps - max(1, round(_TAIL_FRACTION * steps))
    tail_loss, tail_correct, tail_seen = 0.0, 0, 0
    bar = tqdm(shuffled_batches(len(labels), batch_size, steps, generator), desc=description, disable=not progress)
    for step, batch in enumerate(bar):
        logits = logits_of(pixel_values[batch])
        loss = F.cross_entropy(logits, labels[batch])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if step >= tail_start:
            tail_loss += loss.item() * len(batch)
            tail_correct += int((logits.argmax(dim=1) == labels[batch]).sum())
            tail_seen += len(batch)
        if progress and step % 20 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    return {"steps": steps, "final_loss": tail_loss / tail_seen, "train_accuracy": tail_correct / tail_seen}


def pretrain(
    model: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    n_classes: int,
    steps: int = 800,
    batch_size: int = 128,
    lr: float = 2e-3,
    seed: int = 0,
    progress: bool = True,
    device: str | torch.device = "cpu",
) -> dict:
    """Train the whole backbone in place on `device`, with a throwaway cosine head, on pretext labels; returns
    training stats. Random draws (head, batch order) come from CPU generators, so they do not depend on the device."""
    _check_training_data(images, labels, n_classes, steps, batch_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = torch.nn.Parameter(torch.randn(n_classes, model.config.projection_dim).to(device))
    generator = torch.Generator().manual_seed(seed)
    model.to(device)
    pixel_values, labels = preprocess(images.to(device)), labels.to(device)
    model.train()
    try:
        stats = _train_loop(
            [*model.parameters(), head],
            lambda batch: cosine_logits(model(pixel_values=batch).image_embeds, head),
            pixel_values,
            labels,
            steps,
            batch_size,
            lr,
            0.05,
            generator,
            "pretrain",
            progress,
        )
    finally:
        model.eval()
    return stats


def prototype_head(features: torch.Tensor, labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Unit-norm mean feature per class (zeros for a class without examples): a training-free head."""
    sums = torch.zeros(n_classes, features.shape[1], device=features.device)
    sums.index_add_(0, labels, F.normalize(features.float(), dim=-1))
    return F.normalize(sums, dim=-1)


def finetune_lora(
    backbone_folder: str | Path,
    images: torch.Tensor,
    labels: torch.Tensor,
    n_classes: int,
    rank: int = 4,
    lora_alpha: float = 8.0,
    target_modules: Sequence[str] = DEFAULT_TARGET_MODULES,
    steps: int = 300,
    batch_size: int = 64,
    lr: float = 1e-2,
    seed: int = 0,
    progress: bool = True,
    device: str | torch.device = "cpu",
) -> tuple[PeftModel, torch.Tensor, dict]:
    """LoRA on the backbone plus a cosine head (n_classes × projection_dim, unit rows) trained jointly on a task,
    on `device`; the head is returned on the CPU.

    The head starts from the class prototypes of the pretrained features, so few steps suffice.
    """
    from peft import LoraConfig, get_peft_model  # here: pre-training, in the same module, does not use peft

    _check_training_data(images, labels, n_classes, steps, batch_size)
    backbone = load_backbone(backbone_folder, device)
    pixel_values, labels = preprocess(images.to(device)), labels.to(device)
    with torch.no_grad():
        initial_features = torch.cat([image_features(backbone, chunk) for chunk in pixel_values.split(512)])
    config = LoraConfig(
        r=rank, lora_alpha=lora_alpha, target_modules=list(target_modules), lora_dropout=0.0, bias="none"
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        peft_model = get_peft_model(backbone, config)
    head = torch.nn.Parameter(prototype_head(initial_features, labels, n_classes))
    generator = torch.Generator().manual_seed(seed)
    trainable = [parameter for parameter in peft_model.parameters() if parameter.requires_grad]
    peft_model.train()
    try:
        stats = _train_loop(
            [*trainable, head],
            lambda batch: cosine_logits(peft_model(pixel_values=batch).image_embeds, head),
            pixel_values,
            labels,
            steps,
            batch_size,
            lr,
            0.0,
            generator,
            "finetune",
            progress,
        )
    finally:
        peft_model.eval()
    return peft_model, F.normalize(head.detach(), dim=-1).float().cpu().contiguous(), stats


def save_task_adapter(
    peft_model: PeftModel,
    head: torch.Tensor,
    class_names: Sequence[str],
    folder: str | Path,
    metadata: Mapping[str, str] | None = None,
    overwrite: bool = False,
) -> None:
    """A peft adapter folder as downloaded ones are (config + safetensors weights) plus `head.safetensors`."""
    with atomic_directory(folder, overwrite=overwrite) as staging:
        peft_model.save_pretrained(staging, safe_serialization=True)
        # peft's model card records library versions and the local base-model path; it adds nothing to load.
        (staging / "README.md").unlink(missing_ok=True)
        save_head(staging / HEAD_FILE, head, class_names, metadata)


def evaluate_adapter(
    backbone_folder: str | Path,
    adapter_folder: str | Path,
    task: str,
    split: str,
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> dict:
    """Accuracy of one trained adapter on its own task: backbone + its ΔW at scale 1, with the head saved beside it."""
    head, class_names = load_head(Path(adapter_folder) / HEAD_FILE)
    if len(labels) and int(labels.max()) >= len(class_names):
        raise DataError(adapter_folder, f"the head has {len(class_names)} classes but a label is {int(labels.max())}")
    model = load_backbone(backbone_folder, device)
    eval_task = EvalTask(task, split, images, labels, head)
    update = load_update(adapter_folder)
    return evaluate(DemoVisionSuite, model, [eval_task], [1.0], update, batch_size, device, progress)[0]
