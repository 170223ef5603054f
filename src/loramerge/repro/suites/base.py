"""The Suite interface: everything the workflow needs to know about one family of suites, and the registry by `kind`.

A suite is chosen by the config's `kind` (`demo_vision`, `clip`, `demo_text`, `llama_nli`); its own settings live in
one config section (`demo`, `vision`, `demo_text`, `nli`). It knows
- its tasks, the relations in its section that the schema cannot check, and its published fine-tuned accuracies;
- which input rules (`workflow/inputs/<kind>.smk`) obtain the backbone and the adapters (hub at a locked commit, or
  trained for a demo), prepare each task's splits once and make each task's head. Those rules must produce, for the
  shared stages after them: `resources/<suite>/backbone`, `resources/<suite>/adapters/<task>`,
  `resources/<suite>/heads/<task>.safetensors` and `resources/<suite>/data/<task>/{val,test}.safetensors`;
- how to read a prepared split's inputs, load the backbone (in which dtypes) and compute the features that a task's
  head scores, and under which module-path prefixes an adapter's modules are found in the loaded backbone;
- which classes are masked per task, the temperature that turns head scores into the logits a task was trained with,
  and, for the statistics of the data-using merges (`loramerge.repro.stats`), which prepared split holds the
  unlabelled training inputs (`resources/<suite>/data/<task>/<statistics_split>.safetensors`), the features of one
  batch with gradients enabled, and which rows of a batch's layer inputs are real (not padding).
Everything after the adapters (decompose, merge, evaluate, search, analysis, report) is shared and knows no suite.

This module and every suite's class are torch-free: the workflow builds its DAG from them at every invocation. The
runtime methods import torch themselves.
"""

from __future__ import annotations

import importlib
import importlib.resources
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from loramerge.repro.plan import ConfigError

if TYPE_CHECKING:
    import torch

# kind -> "module:class"; imported on demand so that choosing one suite never imports another.
SUITE_KINDS: dict[str, str] = {
    "demo_vision": "loramerge.repro.suites.demo_vision.suite:DemoVisionSuite",
    "clip": "loramerge.repro.suites.clip.suite:ClipSuite",
    "demo_text": "loramerge.repro.suites.demo_text.suite:DemoTextSuite",
    "llama_nli": "loramerge.repro.suites.llama.suite:LlamaNliSuite",
}


class Suite(ABC):
    """One suite: a config's `suite` name (its results folder), its `kind` and its settings section."""

    kind: ClassVar[str]
    section: ClassVar[str]  # the config section holding this kind's settings
    module_prefixes: ClassVar[tuple[str, ...]] = ("",)
    dtypes: ClassVar[tuple[str, ...]] = ("float32",)  # the backbone dtypes `evaluate.dtype` may choose
    # A JSON schema (YAML, shipped beside the suite's module) for the settings section; the workflow's config schema
    # only knows that the section is an object. None: the config schema describes the section itself.
    section_schema: ClassVar[str | None] = None
    # The prepared split (`data/<task>/<name>.safetensors`) whose inputs feed per-task statistics; None: this kind
    # collects none (the Llama suite: its Grams would take ~51 GB, and its paper reports no data-using merge).
    statistics_split: ClassVar[str | None] = None
    # logits = head_temperature · features @ head.T: 1 where the head carries its scale (CLIP's logit_scale, a
    # `score` weight); the demo's cosine heads are saved unit-norm and were trained at a temperature.
    head_temperature: ClassVar[float] = 1.0

    def __init__(self, config: Mapping[str, Any]) -> None:
        if self.section not in config:
            raise ConfigError(self.section, f"a suite of kind '{self.kind}' needs a '{self.section}' section")
        self.config = config
        self.name: str = config["suite"]
        self.settings: Mapping[str, Any] = config[self.section]

    @property
    def tasks(self) -> list[str]:
        return list(self.settings["tasks"])

    @property
    def input_rules(self) -> str:
        """The rules that make this kind's backbone, adapters, data and heads, relative to the Snakefile."""
        return f"workflow/inputs/{self.kind}.smk"

    def check(self) -> None:
        """The section against its schema, then relations no schema can express; raises ConfigError naming the key."""
        self.validate_section()
        joint = self.config["evaluate"]["joint"]
        if joint and joint["select_k"] not in joint["ks"]:
            raise ConfigError("evaluate.joint.select_k", f"must be one of evaluate.joint.ks {joint['ks']}")
        if self.config["evaluate"]["normalize_by"] == "published" and not self.has_published_finetuned():
            raise ConfigError("evaluate.normalize_by", f"'published' needs {self.published_key()}; use 'measured'")
        dtype = self.config["evaluate"].get("dtype", "float32")
        if dtype not in self.dtypes:
            raise ConfigError("evaluate.dtype", f"suites of kind '{self.kind}' evaluate in {', '.join(self.dtypes)}")
        statistics_dtype = self.config.get("statistics", {}).get("dtype", "float32")
        if statistics_dtype not in self.dtypes:
            raise ConfigError("statistics.dtype", f"suites of kind '{self.kind}' run in {', '.join(self.dtypes)}")
        self.check_section()

    @abstractmethod
    def check_section(self) -> None:
        """Relations inside this kind's own section."""

    def validate_section(self) -> None:
        """The settings section against `section_schema`; the first violation is a ConfigError naming its key."""
        if self.section_schema is None:
            return
        import jsonschema
        import yaml

        package = type(self).__module__.rpartition(".")[0]
        schema = yaml.safe_load(importlib.resources.files(package).joinpath(self.section_schema).read_text("utf-8"))
        try:
            errors = sorted(
                jsonschema.Draft202012Validator(schema).iter_errors(self.settings), key=lambda e: list(e.path)
            )
        except RecursionError:  # the validator walks nested values recursively; a hostile config nests deep
            raise ConfigError(self.section, "nested too deeply to validate") from None
        if errors:
            first = errors[0]
            raise ConfigError(".".join([self.section, *map(str, first.path)]), first.message)

    def published_finetuned(self) -> dict[str, float]:
        """Task -> the fine-tuned test accuracy (%) the adapters' authors published; empty when there are none."""
        return {}

    def has_published_finetuned(self) -> bool:
        published = self.published_finetuned()
        return bool(published) and all(published.get(task) is not None for task in self.tasks)

    def published_key(self) -> str:
        """The config key that holds the published accuracies (for error messages)."""
        return "published fine-tuned accuracies, which this suite does not have"

    def joint_shared(self) -> dict[str, str]:
        """Task -> the task whose rows of the joint head it reuses (identical label sets); none by default."""
        return {}

    def masked_classes(self, task: str) -> list[int]:
        """Classes whose logits are set to −inf for `task` (none for the vision suites)."""
        return []

    def masked_by_task(self) -> dict[str, list[int]]:
        """Every task's masked classes, as the evaluation jobs receive them."""
        return {task: self.masked_classes(task) for task in self.tasks}

    def check_statistics(self, key: str) -> None:
        """That this suite can collect per-task statistics, which the merges at config key `key` read."""
        if self.statistics_split is None:
            raise ConfigError(key, f"reads per-task statistics, which suites of kind '{self.kind}' do not collect")

    # --- runtime (imports torch): the scripts ask for these by kind, with no config at hand ---------------------

    @classmethod
    @abstractmethod
    def load_backbone(
        cls, folder: str | Path, device: str | torch.device = "cpu", dtype: str = "float32"
    ) -> torch.nn.Module:
        """The backbone the input rules wrote, in `dtype` (one of `dtypes`) and eval mode on `device`."""

    @classmethod
    def load_inputs(cls, path: str | Path) -> tuple[Any, torch.Tensor, list[str]]:
        """(inputs `encode` takes, int64 labels, class names) of a prepared split file; images by default."""
        from loramerge.repro.splits import load_split

        return load_split(path)

    @classmethod
    @abstractmethod
    def encode(
        cls,
        model: torch.nn.Module,
        inputs: torch.Tensor,
        batch_size: int,
        device: str | torch.device,
        progress: bool = False,
        fp16: bool = True,
    ) -> torch.Tensor:
        """Features (N × D, float32, CPU) that a task head (C × D) scores by `features @ head.T`."""

    @classmethod
    @abstractmethod
    def statistics_row_mask(cls, inputs: Any) -> torch.Tensor | None:
        """Which rows of a layer input (batch × sequence, boolean) a batch of `inputs` fills with real tokens, for
        `statistics_features` on the same batch; None when every row is real."""

    @classmethod
    @abstractmethod
    def statistics_features(cls, model: torch.nn.Module, inputs: Any, device: str | torch.device) -> torch.Tensor:
        """Features (B × D, float32, on `device`) of one batch of `inputs` under the caller's grad mode, without
        autocast, so that statistics hooks see every layer input and gradients reach every weight."""


def suite_class(kind: str) -> type[Suite]:
    """The Suite subclass registered for `kind`."""
    if kind not in SUITE_KINDS:
        raise ConfigError("kind", f"unknown suite kind {kind!r}; known: {sorted(SUITE_KINDS)}")
    module_name, class_name = SUITE_KINDS[kind].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def load_suite(config: Mapping[str, Any]) -> Suite:
    """The suite a workflow config describes, its section checked; raises ConfigError."""
    suite = suite_class(config["kind"])(config)
    suite.check()
    return suite
