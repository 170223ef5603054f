"""A Llama sequence classifier as the text suites evaluate it: loading a saved backbone in a chosen dtype, and the
hidden state at each example's last real token, the vector a `score` head (3 × hidden) scores.

Batches are sorted by length (longest first) and padded on the right to their own longest example, so that padding
costs little; right padding under the causal mask leaves every real token's state unchanged, and the features come
back in the input order.
"""

from __future__ import annotations

from pathlib import Path

import torch

from loramerge.errors import SubjectError
from loramerge.repro.splits import PAD_ID, sequence_lengths
from loramerge.repro.suites.batches import run_in_batches

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


class TextModelError(SubjectError):
    """A text backbone folder or input that cannot be used; the message starts with its path or name."""


def load_backbone(folder: str | Path, device: str | torch.device = "cpu", dtype: str = "float32") -> torch.nn.Module:
    """The saved `LlamaForSequenceClassification` (local safetensors only, no remote code) in `dtype`, eval mode."""
    from transformers import LlamaForSequenceClassification

    folder = Path(folder)
    if dtype not in DTYPES:
        raise TextModelError(folder, f"dtype {dtype!r} is not one of {sorted(DTYPES)}")
    if not (folder / "config.json").is_file():
        raise TextModelError(folder, "missing config.json: not a saved backbone folder")
    try:
        model = LlamaForSequenceClassification.from_pretrained(
            folder, local_files_only=True, use_safetensors=True, trust_remote_code=False, torch_dtype=DTYPES[dtype]
        )
    except Exception as error:  # transformers raises many types (OSError, ValueError, safetensors errors)
        raise TextModelError(folder, f"cannot load the backbone: {error}") from error
    return model.to(device).eval()


def last_token_states(model: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """Final-norm hidden state at the last real token of each row of a PAD_ID-padded batch (on the model's device)."""
    lengths = sequence_lengths(tokens)
    mask = tokens != PAD_ID
    # padded positions are masked out of attention; any valid id stands in for them
    input_ids = torch.where(mask, tokens, 0).long()
    hidden = model.model(input_ids=input_ids, attention_mask=mask.long()).last_hidden_state
    return hidden[torch.arange(len(tokens), device=hidden.device), lengths - 1]


def _cropped(tokens: torch.Tensor) -> torch.Tensor:
    """A padded batch without the columns that are padding in every row."""
    return tokens[:, : int(sequence_lengths(tokens).max())]


def real_tokens(tokens: torch.Tensor) -> torch.Tensor:
    """Boolean batch × length mask of the real tokens of a padded batch, cropped as `batch_features` runs it."""
    return _cropped(tokens) != PAD_ID


def batch_features(model: torch.nn.Module, tokens: torch.Tensor, device: str | torch.device) -> torch.Tensor:
    """Last-token features (float32, on `device`) of one padded batch in its order, under the caller's grad mode."""
    return last_token_states(model, _cropped(tokens).to(device)).float()


def encode(
    model: torch.nn.Module,
    tokens: torch.Tensor,
    batch_size: int = 16,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Last-token features (N × hidden, float32, CPU) of PAD_ID-padded int32 token ids, in the input order. Batches
    that run out of GPU memory are retried smaller (`loramerge.repro.suites.batches`)."""
    if tokens.dtype != torch.int32 or tokens.ndim != 2:
        raise TextModelError("inputs", f"expected int32 N × L token ids, got {tokens.dtype} {tuple(tokens.shape)}")
    parameter = next(model.parameters())
    device = torch.device(device) if device is not None else parameter.device
    if parameter.device != device:
        model.to(device)
    features = torch.zeros(len(tokens), model.config.hidden_size)
    lengths = sequence_lengths(tokens)
    order = torch.argsort(lengths, descending=True, stable=True)

    def encode_batch(start: int, stop: int) -> None:
        rows = order[start:stop]
        batch = tokens[rows, : int(lengths[rows].max())].to(device)
        features[rows] = last_token_states(model, batch).float().cpu()

    with torch.inference_mode():
        run_in_batches(len(tokens), batch_size, encode_batch, device, progress)
    return features
