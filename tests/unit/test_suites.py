"""The Suite interface: the registry by kind, each suite's config checks, tasks, published accuracies and input
rules, and that choosing a suite (what every DAG build does) imports neither torch nor another suite."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from loramerge.repro.plan import ConfigError
from loramerge.repro.suites.base import SUITE_KINDS, Suite, load_suite, suite_class
from loramerge.repro.suites.clip.suite import ClipSuite
from loramerge.repro.suites.demo_vision.suite import DemoVisionSuite

ROOT = Path(__file__).resolve().parents[2]
DEMO = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
VIT_B32 = yaml.safe_load((ROOT / "config" / "paper-vit-b32.yaml").read_text())
VIT_L14 = yaml.safe_load((ROOT / "config" / "paper-vit-l14.yaml").read_text())
SCHEMA = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())


def test_every_kind_is_in_the_schema_and_has_its_input_rules():
    assert set(SCHEMA["properties"]["kind"]["enum"]) == set(SUITE_KINDS)
    for kind in SUITE_KINDS:
        cls = suite_class(kind)
        assert issubclass(cls, Suite) and cls.kind == kind
        assert cls.section in SCHEMA["properties"]
    for config in (DEMO, VIT_B32, VIT_L14):
        assert (ROOT / load_suite(config).input_rules).is_file()


def test_configs_map_to_their_suites():
    demo, b32, l14 = load_suite(DEMO), load_suite(VIT_B32), load_suite(VIT_L14)
    assert isinstance(demo, DemoVisionSuite) and demo.name == "demo" and demo.tasks == list(DEMO["demo"]["tasks"])
    assert isinstance(b32, ClipSuite) and isinstance(l14, ClipSuite)
    assert (b32.name, l14.name) == ("vit-b32", "vit-l14") and b32.tasks == l14.tasks and len(l14.tasks) == 8
    assert demo.published_finetuned() == {} and b32.published_finetuned()["cars"] == 74.0
    assert l14.published_finetuned()["sun397"] == 79.597
    assert b32.joint_shared() == {"svhn": "mnist"} and demo.joint_shared() == {}
    assert all(suite.masked_classes("cars") == [] for suite in (b32, l14))
    assert ClipSuite.module_prefixes == DemoVisionSuite.module_prefixes == ("", "vision_model.")


def test_the_vit_l14_suite_is_the_vit_b32_suite_on_another_backbone():
    b32, l14 = VIT_B32["vision"], VIT_L14["vision"]
    assert l14["backbone"]["repo"] == "openai/clip-vit-large-patch14"
    for task in b32["tasks"]:
        assert l14["tasks"][task]["adapter"].startswith("hoffman-lab/KnOTS-ViT-L-14_lora_R16_")
        # the class names and data are shared, not copied
        for key in ("classnames", "dataset", "split", "sizes", "templates"):
            assert l14["tasks"][task][key] == b32["tasks"][task][key], (task, key)
    assert VIT_L14["evaluate"]["joint"] is None and l14["lock"] != b32["lock"]


def test_the_lock_is_an_input_only_once_it_exists(tmp_path):
    config = copy.deepcopy(VIT_B32)
    config["vision"]["lock"] = str(tmp_path / "suite.lock.json")
    suite = load_suite(config)
    assert suite.lock_inputs() == []
    (tmp_path / "suite.lock.json").write_text("{}")
    assert suite.lock_inputs() == [str(tmp_path / "suite.lock.json")]
    assert suite.permutation_url("mnist").endswith("/baa35e8/dataset/shuffled_idxs/mnist_shuffled_idxs.pt")


def test_per_task_overrides_apply_to_that_task_only():
    config = copy.deepcopy(DEMO)
    config["demo"]["finetune"]["per_task"] = {"shapes": {"steps": 7}}
    suite = load_suite(config)
    assert suite.finetune_settings("shapes")["steps"] == 7
    assert suite.finetune_settings("digits")["steps"] == DEMO["demo"]["finetune"]["steps"]
    assert "per_task" not in suite.finetune_settings("digits")


def _edited(config: dict, edit) -> dict:
    config = copy.deepcopy(config)
    edit(config)
    return config


@pytest.mark.parametrize(
    ("config", "key"),
    [
        (_edited(DEMO, lambda c: c.update(kind="nli")), "kind"),
        (_edited(DEMO, lambda c: c.update(kind="clip")), "vision"),
        (_edited(DEMO, lambda c: c["evaluate"].update(normalize_by="published")), "evaluate.normalize_by"),
        (_edited(DEMO, lambda c: c["demo"]["finetune"]["per_task"].update(cars={})), "demo.finetune.per_task.cars"),
        (_edited(DEMO, lambda c: c["demo"]["backbone"].update(patch_size=5)), "demo.backbone.patch_size"),
        (_edited(DEMO, lambda c: c["demo"]["backbone"].update(num_attention_heads=5)), "demo.backbone.num_attention"),
        (_edited(VIT_B32, lambda c: c["evaluate"]["joint"].update(select_k=4)), "evaluate.joint.select_k"),
        (_edited(VIT_B32, lambda c: c["vision"]["joint_shared"].update(svhn="usps")), "vision.joint_shared.svhn"),
        (
            _edited(VIT_B32, lambda c: c["vision"]["tasks"]["mnist"].pop("permutation")),
            "vision.tasks.mnist.permutation",
        ),
        (
            _edited(VIT_B32, lambda c: c["vision"]["tasks"]["dtd"]["dataset"]["files"].pop("val")),
            "vision.tasks.dtd.dataset.files",
        ),
        (
            _edited(
                VIT_L14,
                lambda c: (
                    c["evaluate"].update(normalize_by="published"),
                    c["vision"]["tasks"]["cars"].update(finetuned_published=None),
                ),
            ),
            "evaluate.normalize_by",
        ),
    ],
)
def test_inconsistent_suite_settings_name_their_key(config, key):
    with pytest.raises(ConfigError, match=f"config key '{key}"):
        load_suite(config)


def test_choosing_a_suite_imports_neither_torch_nor_another_suite():
    # the CLIP suites must not import the demo (the demo, a tiny CLIP, may import the CLIP runtime)
    for path, other in (("paper-vit-l14.yaml", "demo_vision"), ("config.yaml", None)):
        code = (
            "import sys, yaml; from loramerge.repro.suites.base import load_suite; "
            f"load_suite(yaml.safe_load(open({str(ROOT / 'config' / path)!r}))); "
            "assert 'torch' not in sys.modules, 'torch imported'; "
            f"assert not any({other!r} and {other!r} in name for name in sys.modules), 'another suite imported'"
        )
        subprocess.run([sys.executable, "-c", code], check=True)


def _with_train_files(config: dict) -> dict:
    config = copy.deepcopy(config)
    for task, spec in config["vision"]["tasks"].items():
        spec["dataset"]["files"].setdefault("train", [f"data/{task}-train-*.parquet"])
    return config


def test_statistics_come_from_each_suites_training_inputs():
    assert (DemoVisionSuite.statistics_split, ClipSuite.statistics_split) == ("train", "statistics")
    assert suite_class("demo_text").statistics_split == "train" and suite_class("llama_nli").statistics_split is None
    # the demo's cosine heads are saved unit-norm: its logits need the training temperature back
    assert DemoVisionSuite.head_temperature == 20.0 and ClipSuite.head_temperature == 1.0
    load_suite(DEMO).check_statistics("merge.methods.regmean")
    load_suite(_with_train_files(VIT_B32)).check_statistics("merge.methods.regmean")


def test_a_clip_task_without_train_files_cannot_give_statistics():
    config = _with_train_files(VIT_B32)
    del config["vision"]["tasks"]["gtsrb"]["dataset"]["files"]["train"]
    suite = load_suite(config)  # naming train files is optional until a merge reads statistics
    with pytest.raises(ConfigError, match=r"'vision.tasks.gtsrb.dataset.files.train'.*merge.methods.fisher reads"):
        suite.check_statistics("merge.methods.fisher")


def test_a_split_the_protocol_does_not_read_is_still_refused():
    config = _with_train_files(VIT_B32)
    config["vision"]["tasks"]["cars"]["dataset"]["files"]["val"] = ["data/val-*"]
    with pytest.raises(ConfigError, match=r"'vision.tasks.cars.dataset.files'.*permutation split reads exactly"):
        load_suite(config)


def test_the_llama_suite_collects_no_statistics():
    from snakemake.utils import update_config

    config = copy.deepcopy(DEMO)
    update_config(config, yaml.safe_load((ROOT / "config" / "paper-llama3-8b.yaml").read_text()))
    with pytest.raises(ConfigError, match=r"'merge.methods.regmean'.*kind 'llama_nli' do not collect"):
        load_suite(config).check_statistics("merge.methods.regmean")


def test_the_statistics_dtype_is_one_the_suite_runs_in():
    config = _edited(VIT_B32, lambda c: c.update(statistics={"dtype": "bfloat16"}))
    with pytest.raises(ConfigError, match=r"'statistics.dtype'.*kind 'clip' run in float32"):
        load_suite(config)
