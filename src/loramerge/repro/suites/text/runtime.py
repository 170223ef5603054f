"""The runtime of the text suites, torch-free until used: a Llama sequence classifier scored by per-task heads.

The backbone is a `LlamaForSequenceClassification` (its own `score` weight unused: every task brings its head), so
that an adapter's module paths (`model.layers.<i>.self_attn.q_proj`, as peft saves a sequence classifier's LoRA)
name the backbone's modules as they are.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import torch


class LlamaClassifierModel:
    module_prefixes: ClassVar[tuple[str, ...]] = ("",)
    dtypes: ClassVar[tuple[str, ...]] = ("float32", "bfloat16")

    @classmethod
    def load_backbone(
        cls, folder: str | Path, device: str | torch.device = "cpu", dtype: str = "float32"
    ) -> torch.nn.Module:
        from loramerge.repro.suites.text.model import load_backbone

        return load_backbone(folder, device, dtype)

    @classmethod
    def load_inputs(cls, path: str | Path) -> tuple[Any, torch.Tensor, list[str]]:
        from loramerge.repro.splits import load_token_split

        return load_token_split(path)

    @classmethod
    def encode(
        cls,
        model: torch.nn.Module,
        inputs: torch.Tensor,
        batch_size: int,
        device: str | torch.device,
        progress: bool = False,
        fp16: bool = True,
    ) -> torch.Tensor:
        """Last-token hidden states; text suites run in the dtype the backbone was loaded in (`evaluate.dtype`), so
        `fp16` (the CLIP suites' per-task autocast) does not apply."""
        from loramerge.repro.suites.text.model import encode

        return encode(model, inputs, batch_size, device, progress)

    @classmethod
    def statistics_row_mask(cls, inputs: torch.Tensor) -> torch.Tensor:
        """The real tokens of the batch, cropped to its longest example as `statistics_features` runs it."""
        from loramerge.repro.suites.text.model import real_tokens

        return real_tokens(inputs)

    @classmethod
    def statistics_features(
        cls, model: torch.nn.Module, inputs: torch.Tensor, device: str | torch.device
    ) -> torch.Tensor:
        from loramerge.repro.suites.text.model import batch_features

        return batch_features(model, inputs, device)
