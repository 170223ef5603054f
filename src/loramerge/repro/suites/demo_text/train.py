"""The demo's tiny Llama sequence classifier: built from a LlamaConfig, pre-trained whole on the mixture of the tasks'
rules, then LoRA fine-tuned per task with peft, its `score` head trained beside the LoRA as the hub's KnOTS Llama
adapters were: every task starts from the pre-trained head, as theirs all started from one head.

The classifier pools the last real token (padding is `<|end_of_text|>`, which no text contains), so a task's
logits are `score(last hidden state)`: exactly what the evaluation computes from the saved head. Masked classes'
logits are set to −1e10 while training, as KnOTS trains QNLI, RTE and SciTail.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from peft import LoraConfig, PeftModel, get_peft_model, get_peft_model_state_dict
from tokenizers import Tokenizer
from tqdm import tqdm
from transformers import LlamaConfig, LlamaForSequenceClassification

from loramerge.io import atomic_directory
from loramerge.repro.splits import PAD_ID, DataError, sequence_lengths
from loramerge.repro.suites.demo_text.tokenizer import BEGIN_OF_TEXT, END_OF_TEXT, as_transformers_tokenizer
from loramerge.repro.suites.text.model import load_backbone
from loramerge.repro.suites.training import check_training_labels, shuffled_batches, warmup_cosine_schedule

TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj")
# Where peft saves a sequence classifier's trained head (modules_to_save, adapter name stripped): the hub's key.
SCORE_KEY = "base_model.model.score.weight"
MASKED_LOGIT = -1e10
_MAX_GRAD_NORM = 1.0  # clipped: without it an unlucky batch can throw a short LoRA run off for good
_TAIL_FRACTION = 0.1  # the last 10 % of steps give the reported training loss and accuracy


def build_backbone(
    settings: Mapping[str, int], tokenizer: Tokenizer, max_length: int, n_classes: int, seed: int
) -> LlamaForSequenceClassification:
    """A randomly initialised classifier (`settings`: LlamaConfig sizes) over `tokenizer`'s ids, padding with
    `<|end_of_text|>` as Llama-3 does; the same seed gives the same weights."""
    config = LlamaConfig(
        **settings,
        vocab_size=tokenizer.get_vocab_size(),
        max_position_embeddings=max_length,
        num_labels=n_classes,
        pad_token_id=tokenizer.token_to_id(END_OF_TEXT),
        bos_token_id=tokenizer.token_to_id(BEGIN_OF_TEXT),
        eos_token_id=tokenizer.token_to_id(END_OF_TEXT),
    )
    # fork_rng: seed the initialisation without changing the caller's global random state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForSequenceClassification(config)
    return model.eval()


def save_backbone(model: LlamaForSequenceClassification, tokenizer: Tokenizer, folder: str | Path) -> None:
    """The model (config.json, model.safetensors) and its tokenizer as transformers saves them, renamed into place
    when complete."""
    with atomic_directory(folder) as staging:
        model.save_pretrained(staging, safe_serialization=True)
        as_transformers_tokenizer(tokenizer).save_pretrained(staging)


def _check_training_data(
    tokens: torch.Tensor, labels: torch.Tensor, n_classes: int, steps: int, batch_size: int
) -> None:
    if tokens.dtype != torch.int32 or tokens.ndim != 2 or len(tokens) != len(labels) or len(tokens) == 0:
        raise DataError("training data", f"expected int32 N × L token ids and N labels, got {tuple(tokens.shape)}")
    check_training_labels(labels, n_classes, steps, batch_size)


def _model_inputs(tokens: torch.Tensor, pad_token_id: int) -> dict[str, torch.Tensor]:
    """A PAD_ID-padded batch, cut to its longest row, as input ids padded with the model's pad token and a mask."""
    tokens = tokens[:, : int(sequence_lengths(tokens).max())]
    mask = tokens != PAD_ID
    return {"input_ids": torch.where(mask, tokens, pad_token_id).long(), "attention_mask": mask.long()}


def _train(
    model: torch.nn.Module,
    tokens: torch.Tensor,
    labels: torch.Tensor,
    masked: Sequence[int],
    settings: Mapping[str, float],
    seed: int,
    description: str,
    progress: bool,
) -> dict:
    """AdamW over the model's trainable parameters (warm-up, cosine decay) on cross-entropy, masked classes' logits
    at MASKED_LOGIT; returns the loss and accuracy over the last steps."""
    steps, batch_size = int(settings["steps"]), int(settings["batch_size"])
    parameters = [parameter for parameter in model.parameters() if parameter.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=settings["lr"], weight_decay=settings.get("weight_decay", 0.0))
    scheduler = warmup_cosine_schedule(optimizer, steps)
    pad_token_id = model.config.pad_token_id
    is_masked = torch.zeros(model.config.num_labels, dtype=torch.bool)
    is_masked[list(masked)] = True
    device = next(model.parameters()).device
    tail_start = steps - max(1, round(_TAIL_FRACTION * steps))
    tail_loss, tail_correct, tail_seen = 0.0, 0, 0
    generator = torch.Generator().manual_seed(seed)
    model.train()
    try:
        bar = tqdm(shuffled_batches(len(labels), batch_size, steps, generator), desc=description, disable=not progress)
        for step, batch in enumerate(bar):
            inputs = {key: value.to(device) for key, value in _model_inputs(tokens[batch], pad_token_id).items()}
            logits = model(**inputs).logits.masked_fill(is_masked.to(device), MASKED_LOGIT)
            loss = F.cross_entropy(logits, labels[batch].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, _MAX_GRAD_NORM)
            optimizer.step()
            scheduler.step()
            if step >= tail_start:
                tail_loss += loss.item() * len(batch)
                tail_correct += int((logits.argmax(dim=1).cpu() == labels[batch]).sum())
                tail_seen += len(batch)
            if progress and step % 20 == 0:
                bar.set_postfix(loss=f"{loss.item():.3f}")
    finally:
        model.eval()
    return {"steps": steps, "final_loss": tail_loss / tail_seen, "train_accuracy": tail_correct / tail_seen}


def pretrain(
    model: LlamaForSequenceClassification,
    tokens: torch.Tensor,
    labels: torch.Tensor,
    settings: Mapping[str, float],
    seed: int,
    progress: bool = True,
    device: str | torch.device = "cpu",
) -> dict:
    """Train the whole model in place on the pre-training pairs (`settings`: steps, batch_size, lr); returns training
    stats. The batch order comes from a CPU generator, so it does not depend on the device."""
    _check_training_data(tokens, labels, model.config.num_labels, int(settings["steps"]), int(settings["batch_size"]))
    model.to(device)
    return _train(model, tokens, labels, (), {**settings, "weight_decay": 0.01}, seed, "pretrain", progress)


def finetune_lora(
    backbone_folder: str | Path,
    tokens: torch.Tensor,
    labels: torch.Tensor,
    masked: Sequence[int],
    settings: Mapping[str, float],
    target_modules: Sequence[str] = TARGET_MODULES,
    seed: int = 0,
    progress: bool = True,
    device: str | torch.device = "cpu",
) -> tuple[PeftModel, dict]:
    """LoRA (`settings`: rank, lora_alpha, steps, batch_size, lr) on the backbone's attention projections, and its
    `score` head trained beside it (peft's SEQ_CLS modules_to_save)."""
    backbone = load_backbone(backbone_folder, device)
    _check_training_data(
        tokens, labels, backbone.config.num_labels, int(settings["steps"]), int(settings["batch_size"])
    )
    config = LoraConfig(
        task_type="SEQ_CLS",
        r=int(settings["rank"]),
        lora_alpha=settings["lora_alpha"],
        target_modules=list(target_modules),
        lora_dropout=0.0,
        bias="none",
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        peft_model = get_peft_model(backbone, config)
    stats = _train(peft_model, tokens, labels, masked, settings, seed, "finetune", progress)
    return peft_model, stats


def adapter_head(peft_model: PeftModel) -> torch.Tensor:
    """The trained `score` weight (n_classes × hidden), as the adapter file stores it."""
    return get_peft_model_state_dict(peft_model)[SCORE_KEY].detach().float().cpu().contiguous()


def save_task_adapter(peft_model: PeftModel, folder: str | Path) -> None:
    """A peft adapter folder as downloaded ones are: adapter_config.json and adapter_model.safetensors, the LoRA
    factors and the `score` head under SCORE_KEY."""
    with atomic_directory(folder) as staging:
        peft_model.save_pretrained(staging, safe_serialization=True)
        # peft's model card records library versions and the local base-model path; it adds nothing to load.
        (staging / "README.md").unlink(missing_ok=True)
        # peft keeps target_modules as a set, written in an order that changes between processes; sorted, the
        # config (whose sha256 every merge records) is the same file in every run.
        config_path = staging / "adapter_config.json"
        config = json.loads(config_path.read_text())
        config["target_modules"] = sorted(config["target_modules"])
        config_path.write_text(json.dumps(config, indent=2, sort_keys=True))
