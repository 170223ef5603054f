"""The offline text demo (kind `demo_text`): a tiny Llama sequence classifier pre-trained here on generated sentence
pairs, one LoRA adapter with its `score` head trained per generated NLI task. It runs on the text suites' runtime,
as the Llama-3-8B NLI suite does, so every stage after the adapters sees the same files."""

from __future__ import annotations

from typing import Any

from loramerge.repro.plan import ConfigError
from loramerge.repro.suites.base import Suite
from loramerge.repro.suites.text.runtime import LlamaClassifierModel

N_CLASSES = 3  # entailment, neutral, contradiction (demo_text.data.CLASS_NAMES; that module imports numpy)


class DemoTextSuite(LlamaClassifierModel, Suite):
    kind = "demo_text"
    section = "demo_text"
    section_schema = "section.schema.yaml"
    statistics_split = "train"

    def check_section(self) -> None:
        demo = self.settings
        for task in demo["finetune"]["per_task"]:
            if task not in demo["tasks"]:
                raise ConfigError(f"demo_text.finetune.per_task.{task}", f"'{task}' is not one of demo_text.tasks")
        for task, spec in demo["tasks"].items():
            if len(set(spec.get("masked", []))) > N_CLASSES - 2:
                raise ConfigError(f"demo_text.tasks.{task}.masked", f"must leave at least two of {N_CLASSES} classes")
        backbone = demo["backbone"]
        if backbone["hidden_size"] % backbone["num_attention_heads"]:
            raise ConfigError("demo_text.backbone.num_attention_heads", "must divide demo_text.backbone.hidden_size")
        if (backbone["hidden_size"] // backbone["num_attention_heads"]) % 2:
            raise ConfigError("demo_text.backbone.num_attention_heads", "must leave an even head size (rotary)")
        if backbone["num_attention_heads"] % backbone["num_key_value_heads"]:
            raise ConfigError(
                "demo_text.backbone.num_key_value_heads", "must divide demo_text.backbone.num_attention_heads"
            )

    def published_key(self) -> str:
        return "published fine-tuned accuracies, which the demo does not have"

    def masked_classes(self, task: str) -> list[int]:
        """The classes a task never has (QNLI- and RTE-like tasks: neutral), from `demo_text.tasks.<task>.masked`."""
        return sorted(self.settings["tasks"][task].get("masked", []))

    def finetune_settings(self, task: str) -> dict[str, Any]:
        """One task's LoRA training settings: the shared ones with that task's overrides applied."""
        finetune = self.settings["finetune"]
        shared = {key: value for key, value in finetune.items() if key != "per_task"}
        return {**shared, **finetune["per_task"].get(task, {})}
