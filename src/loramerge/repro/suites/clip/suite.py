"""CLIP suites (kind `clip`): the KnOTS ViT adapters on a CLIP vision tower, downloaded at locked hub commits, KnOTS
splits prepared once as uint8 crops, zero-shot text heads. ViT-B/32 and ViT-L/14 are two configs of this kind."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from loramerge.repro.plan import ConfigError
from loramerge.repro.suites.base import Suite

if TYPE_CHECKING:
    import torch

# The data files each split protocol reads (permutation: the test split's head is validation; release_complement:
# validation is the full release, `release`, minus train and test); any may add train for statistics.
_SPLIT_FILES = {"permutation": {"test"}, "official": {"val", "test"}, "release_complement": {"train", "test"}}


class ClipVisionModel:
    """The runtime every CLIP-shaped suite shares: a `CLIPVisionModelWithProjection` whose L2-normalized image
    embeddings a cosine head scores. Adapters trained on the bare vision tower name modules without `vision_model.`."""

    module_prefixes: tuple[str, ...] = ("", "vision_model.")

    @classmethod
    def load_backbone(
        cls, folder: str | Path, device: str | torch.device = "cpu", dtype: str = "float32"
    ) -> torch.nn.Module:
        """Always float32 weights: KnOTS evaluates per task under fp16 autocast (`encode`), jointly in fp32."""
        from loramerge.repro.suites.clip.model import load_backbone

        return load_backbone(folder, device)

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
        from loramerge.repro.suites.clip.model import encode

        return encode(model, inputs, batch_size, device, progress, fp16)

    @classmethod
    def statistics_row_mask(cls, inputs: torch.Tensor) -> None:
        """Every token of a ViT (the class token and each patch) is real."""
        return None

    @classmethod
    def statistics_features(
        cls, model: torch.nn.Module, inputs: torch.Tensor, device: str | torch.device
    ) -> torch.Tensor:
        from loramerge.repro.suites.clip.model import image_features, preprocess

        return image_features(model, preprocess(inputs.to(device)))


class ClipSuite(ClipVisionModel, Suite):
    kind = "clip"
    section = "vision"
    # a seeded subset of each task's training images, prepared by the input rules from `dataset.files.train`
    statistics_split = "statistics"

    def check_section(self) -> None:
        vision = self.settings
        for task, spec in vision["tasks"].items():
            key = f"vision.tasks.{task}"
            if spec["split"] == "permutation" and "permutation" not in spec:
                raise ConfigError(f"{key}.permutation", "a permutation split needs the KnOTS permutation file name")
            if (spec["split"] == "release_complement") != ("release" in spec):
                raise ConfigError(f"{key}.release", "exactly the release_complement split reads a full release")
            needed = _SPLIT_FILES[spec["split"]]
            # `train` may always be named: the statistics of the data-using merges read it
            if not needed <= set(spec["dataset"]["files"]) <= needed | {"train"}:
                raise ConfigError(
                    f"{key}.dataset.files",
                    f"a {spec['split']} split reads exactly the splits {sorted(needed)} (and train, for statistics)",
                )
        for task, owner in vision["joint_shared"].items():
            if task not in vision["tasks"] or owner not in vision["tasks"]:
                raise ConfigError(f"vision.joint_shared.{task}", f"'{task}' and '{owner}' must both be tasks")

    def check_statistics(self, key: str) -> None:
        """Statistics are collected on each task's training images, so every task must name its train files."""
        super().check_statistics(key)
        for task, spec in self.settings["tasks"].items():
            if "train" not in spec["dataset"]["files"]:
                raise ConfigError(
                    f"vision.tasks.{task}.dataset.files.train",
                    f"{key} reads per-task statistics, collected on each task's training images: name the files "
                    "of the dataset's train split (then relock)",
                )

    def published_finetuned(self) -> dict[str, float]:
        return {task: spec["finetuned_published"] for task, spec in self.settings["tasks"].items()}

    def published_key(self) -> str:
        return "vision.tasks.*.finetuned_published"

    def joint_shared(self) -> dict[str, str]:
        return dict(self.settings["joint_shared"])

    @property
    def lock(self) -> str:
        """The lock file of the suite's downloads (hub commits and sha256 of every file)."""
        return self.settings["lock"]

    def lock_inputs(self) -> list[str]:
        """The lock file as a job input once it exists (relocking then reruns the downloads), else nothing."""
        return [self.lock] if Path(self.lock).exists() else []

    def permutation_url(self, task: str) -> str:
        """Where the KnOTS split permutation of `task` is downloaded from, at the pinned revision."""
        permutations = self.settings["permutations"]
        return permutations["url"].format(
            revision=permutations["revision"], file=self.settings["tasks"][task]["permutation"]
        )
