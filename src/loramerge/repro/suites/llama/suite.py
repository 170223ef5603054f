"""The Llama NLI suite (kind `llama_nli`, section `nli`): torch-free, as the workflow builds its DAG from it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loramerge.repro.plan import ConfigError
from loramerge.repro.suites.base import Suite
from loramerge.repro.suites.text.runtime import LlamaClassifierModel

if TYPE_CHECKING:
    from loramerge.repro.hub import RepoRequest

# The dataset files each split method reads (train_test_split: the dataset's validation split, cut in two).
SPLIT_FILES = {"official": {"val", "test"}, "train_test_split": {"validation"}}
# The settings of a task that its prepared splits depend on (the rest, e.g. its adapter, reruns no data job).
DATA_KEYS = ("dataset", "labels", "drop_labels", "split", "max_length", "sizes")


class LlamaNliSuite(LlamaClassifierModel, Suite):
    kind = "llama_nli"
    section = "nli"
    section_schema = "section.schema.yaml"

    def check_section(self) -> None:
        nli = self.settings
        heads = nli["heads"]
        if heads["source"] == "authors" and heads["authors"] is None:
            raise ConfigError("nli.heads.authors", "heads.source 'authors' needs the authors' heads file (url, sha256)")
        classes = len(nli["class_names"])
        for task, spec in nli["tasks"].items():
            key = f"nli.tasks.{task}"
            labels = spec["labels"]
            if len(labels) != classes:
                raise ConfigError(f"{key}.labels", f"one label value per class ({classes}), got {len(labels)}")
            values = [value for value in labels if value is not None]
            if len(set(values)) != len(values):
                raise ConfigError(f"{key}.labels", f"two classes have the same label value: {labels}")
            dropped = set(spec.get("drop_labels", [])) & set(values)
            if dropped:
                raise ConfigError(f"{key}.drop_labels", f"{sorted(dropped, key=str)} are also class labels")
            for index in spec["masked"]:
                if index >= classes:
                    raise ConfigError(f"{key}.masked", f"class {index} is not one of the {classes} classes")
                if labels[index] is not None:
                    raise ConfigError(
                        f"{key}.masked", f"class {index} is masked but label {labels[index]!r} maps to it"
                    )
            needed = SPLIT_FILES[spec["split"]["method"]]
            if set(spec["dataset"]["files"]) != needed:
                raise ConfigError(
                    f"{key}.dataset.files",
                    f"a {spec['split']['method']} split reads exactly the files {sorted(needed)}",
                )

    def published_finetuned(self) -> dict[str, float]:
        return {task: spec["finetuned_published"] for task, spec in self.settings["tasks"].items()}

    def published_key(self) -> str:
        return "nli.tasks.*.finetuned_published"

    def masked_classes(self, task: str) -> list[int]:
        return list(self.settings["tasks"][task]["masked"])

    def data_spec(self, task: str) -> dict[str, Any]:
        """The settings `task`'s evaluation splits are made from."""
        spec = self.settings["tasks"][task]
        return {key: spec[key] for key in DATA_KEYS if key in spec}

    # --- downloads ---------------------------------------------------------------------------------------------

    @property
    def lock(self) -> str:
        """The lock file of the suite's downloads (hub commits and sha256 of every file and URL)."""
        return self.settings["lock"]

    def lock_inputs(self) -> list[str]:
        """The lock file as a job input once it exists (relocking then reruns the downloads), else nothing."""
        return [self.lock] if Path(self.lock).exists() else []

    def authors_heads(self) -> Mapping[str, str] | None:
        """The authors' heads file (url, sha256), or None when the config leaves it out."""
        return self.settings["heads"]["authors"]

    @staticmethod
    def lock_requests(nli: Mapping[str, Any]) -> tuple[list[RepoRequest], list[str]]:
        """What `loramerge lock` records for an `nli` section: the base model (gated), every adapter and dataset,
        and the authors' heads file when configured."""
        from loramerge.repro.hub import RepoRequest

        backbone = nli["backbone"]
        repos = [RepoRequest("model", backbone["repo"], backbone["files"], backbone["revision"], backbone["gated"])]
        for spec in nli["tasks"].values():
            repos.append(RepoRequest("model", spec["adapter"], nli["adapter_files"]))
            dataset = spec["dataset"]
            patterns = [pattern for split in sorted(dataset["files"]) for pattern in dataset["files"][split]]
            repos.append(RepoRequest("dataset", dataset["repo"], patterns, dataset["revision"]))
        authors = nli["heads"]["authors"]
        return repos, [authors["url"]] if authors else []
