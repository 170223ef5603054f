"""The offline vision demo (kind `demo_vision`): a tiny CLIP vision tower pre-trained here on generated images, one LoRA
adapter and cosine head trained per generated task. It is a small CLIP, so it shares the CLIP suites' runtime."""

from __future__ import annotations

from typing import Any

from loramerge.repro.plan import ConfigError
from loramerge.repro.suites.base import Suite
from loramerge.repro.suites.clip.suite import ClipVisionModel


class DemoVisionSuite(ClipVisionModel, Suite):
    kind = "demo_vision"
    section = "demo"
    statistics_split = "train"
    head_temperature = 20.0  # the cosine heads' training temperature (demo_vision.train)

    def check_section(self) -> None:
        demo = self.settings
        for task in demo["finetune"]["per_task"]:
            if task not in demo["tasks"]:
                raise ConfigError(f"demo.finetune.per_task.{task}", f"'{task}' is not one of demo.tasks")
        backbone = demo["backbone"]
        if demo["image_size"] % backbone["patch_size"]:
            raise ConfigError("demo.backbone.patch_size", f"must divide demo.image_size ({demo['image_size']})")
        if backbone["hidden_size"] % backbone["num_attention_heads"]:
            raise ConfigError("demo.backbone.num_attention_heads", "must divide demo.backbone.hidden_size")

    def published_key(self) -> str:
        return "published fine-tuned accuracies, which the demo does not have"

    def finetune_settings(self, task: str) -> dict[str, Any]:
        """One task's LoRA training settings: the shared ones with that task's overrides applied."""
        finetune = self.settings["finetune"]
        shared = {key: value for key, value in finetune.items() if key != "per_task"}
        return {**shared, **finetune["per_task"].get(task, {})}
