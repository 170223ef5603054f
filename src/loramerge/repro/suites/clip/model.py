"""The CLIP vision tower every vision suite runs (a tiny one built here for the demo, a converted hub one for the
paper suites): building, saving, loading, and encoding uint8 images into L2-normalized projected embeddings."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from loramerge.errors import SubjectError
from loramerge.io import atomic_directory
from loramerge.repro.suites.batches import run_in_batches

# A CLIP-shaped model small enough to pretrain in seconds on two CPU cores.
DEFAULT_BACKBONE_CONFIG: dict[str, int] = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "image_size": 32,
    "patch_size": 8,
    "projection_dim": 32,
}
# OpenAI CLIP's normalization constants, so the demo backbone preprocesses like the real ones.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
BACKBONE_WEIGHTS = "model.safetensors"
BACKBONE_CONFIG = "config.json"


class ModelError(SubjectError):
    """A backbone folder or input that cannot be used; the message starts with its path or name."""


def build_backbone(config: Mapping[str, int] | None = None, seed: int = 0) -> CLIPVisionModelWithProjection:
    """A randomly initialised backbone (defaults: DEFAULT_BACKBONE_CONFIG); the same seed gives the same weights."""
    settings = {**DEFAULT_BACKBONE_CONFIG, **(config or {})}
    unknown = set(settings) - set(CLIPVisionConfig().to_dict())
    if unknown:
        raise ModelError("backbone config", f"unknown CLIPVisionConfig keys: {sorted(unknown)}")
    if settings["image_size"] % settings["patch_size"]:
        raise ModelError("backbone config", f"image_size {settings['image_size']} is not a multiple of patch_size")
    # fork_rng: seed the initialisation without changing the caller's global random state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIPVisionModelWithProjection(CLIPVisionConfig(**settings))
    return model.eval()


def save_backbone(model: CLIPVisionModelWithProjection, folder: str | Path, overwrite: bool = False) -> None:
    """`config.json` + `model.safetensors`, written to a staging folder that is renamed into place when complete."""
    with atomic_directory(folder, overwrite=overwrite) as staging:
        model.save_pretrained(staging, safe_serialization=True)


def load_backbone(folder: str | Path, device: str | torch.device = "cpu") -> CLIPVisionModelWithProjection:
    """A backbone saved by `save_backbone` (local files only, no remote code), in eval mode on `device`."""
    folder = Path(folder)
    for name in (BACKBONE_CONFIG, BACKBONE_WEIGHTS):
        if not (folder / name).is_file():
            raise ModelError(folder, f"missing {name}: not a saved backbone folder")
    try:
        model = CLIPVisionModelWithProjection.from_pretrained(
            folder, local_files_only=True, use_safetensors=True, trust_remote_code=False
        )
    except Exception as error:  # transformers raises many types (OSError, ValueError, safetensors errors)
        raise ModelError(folder, f"cannot load the backbone: {error}") from error
    return model.to(device).eval()


def preprocess(images: torch.Tensor) -> torch.Tensor:
    """uint8 N×3×S×S -> float32, scaled to [0, 1] and normalized with CLIP's channel mean and std."""
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ModelError("images", f"expected uint8 N×3×S×S, got {images.dtype} {tuple(images.shape)}")
    mean = torch.tensor(CLIP_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=images.device).view(1, 3, 1, 1)
    return (images.float() / 255.0 - mean) / std


def image_features(model: torch.nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
    """L2-normalized projected embeddings; works for the backbone and for a peft model wrapping it."""
    return F.normalize(model(pixel_values=pixel_values).image_embeds.float(), dim=-1)


def _device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def encode(
    model: torch.nn.Module,
    images: torch.Tensor,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    progress: bool = False,
    fp16: bool = True,
) -> torch.Tensor:
    """L2-normalized `image_embeds` (N × projection_dim, float32, CPU) of uint8 images; fp16 autocast on CUDA unless
    `fp16` is off (KnOTS evaluates per task under autocast, jointly in fp32). Batches that run out of GPU memory are
    retried smaller (`loramerge.repro.suites.batches`)."""
    device = torch.device(device) if device is not None else _device_of(model)
    if _device_of(model) != device:
        model.to(device)
    chunks = []

    def encode_batch(start: int, stop: int) -> None:
        chunks.append(image_features(model, preprocess(images[start:stop].to(device))).cpu())

    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16, enabled=fp16 and device.type == "cuda"):
        run_in_batches(len(images), batch_size, encode_batch, device, progress)
    if not chunks:
        return torch.zeros(0, model.config.projection_dim)
    return torch.cat(chunks)
