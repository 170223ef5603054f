"""The offline text demo's inputs: generated NLI pairs (determinism, every rule's labels recomputed from the text,
masked tasks), the word-level tokenizer's Llama-3 pair template, and the LoRA adapter as the hub's Llama adapters
are (the `score` head under peft's key, readable by the library), plus the suite's settings checks."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from loramerge.adapters import load_adapter
from loramerge.apply import load_update, updated
from loramerge.repro.plan import ConfigError
from loramerge.repro.splits import PAD_ID
from loramerge.repro.suites.base import load_suite
from loramerge.repro.suites.demo_text import data
from loramerge.repro.suites.demo_text.suite import DemoTextSuite
from loramerge.repro.suites.demo_text.tokenizer import (
    BEGIN_OF_TEXT,
    END_OF_TEXT,
    as_transformers_tokenizer,
    build_tokenizer,
    encode_pairs,
    load_tokenizer,
    save_tokenizer,
)
from loramerge.repro.suites.text.model import encode, load_backbone

ROOT = Path(__file__).resolve().parents[2]
CONFIG = yaml.safe_load((ROOT / "config" / "demo-nli.yaml").read_text())
ENTAILMENT, NEUTRAL, CONTRADICTION = range(3)

# --- the generator --------------------------------------------------------------------------------------------------


def test_the_same_seed_draws_the_same_pairs_and_splits_are_separate_streams():
    first = data.generate_task("negation", {"train": 50, "test": 30}, [], seed=4)
    again = data.generate_task("negation", {"train": 50, "test": 30}, [], seed=4)
    more_train = data.generate_task("negation", {"train": 80, "test": 30}, [], seed=4)
    other_seed = data.generate_task("negation", {"train": 50, "test": 30}, [], seed=5)
    assert first["train"].premises == again["train"].premises and np.array_equal(
        first["train"].labels, again["train"].labels
    )
    assert (
        first["test"].hypotheses == more_train["test"].hypotheses
    )  # asking for more training pairs changes no test pair
    assert first["train"].premises != other_seed["train"].premises


def _lexical(premise: list[str], hypothesis: list[str]) -> int:
    poles = {
        word: (dimension, pole) for dimension, pair in data.ADJECTIVES.items() for pole in (0, 1) for word in pair[pole]
    }
    assert premise[1] == hypothesis[1] and premise[-1] != hypothesis[-1]  # one place, two different adjectives
    (dimension, pole), (other_dimension, other_pole) = poles[premise[-1]], poles[hypothesis[-1]]
    if dimension != other_dimension:
        return NEUTRAL
    return ENTAILMENT if pole == other_pole else CONTRADICTION


def _up_down_across(parents: dict[str, str], same_subject: bool, first: str, second: str) -> int:
    def ancestors(category: str) -> set[str]:
        return {parents[category], *ancestors(parents[category])} if category in parents else set()

    if not same_subject or first in ancestors(second):
        return NEUTRAL
    return ENTAILMENT if second in ancestors(first) else CONTRADICTION


def _hypernymy(premise: list[str], hypothesis: list[str]) -> int:
    parents = {family: "animal" for family in data.ANIMALS}
    parents.update({kind: family for family, kinds in data.ANIMALS.items() for kind in kinds})
    for sentence in (premise, hypothesis):
        assert sentence[1:3] == ["is", "an" if sentence[3][0] in "aeiou" else "a"]
    return _up_down_across(parents, premise[0] == hypothesis[0], premise[-1], hypothesis[-1])


def _geography(premise: list[str], hypothesis: list[str]) -> int:
    parents = {city: country for country, cities in data.COUNTRIES.items() for city in cities}
    parents.update(dict.fromkeys(["france", "spain", "italy", "germany"], "europe"))
    same_subject = premise[:2] == hypothesis[:2]
    return _up_down_across(parents, same_subject, premise[-1], hypothesis[-1])


def _negation(premise: list[str], hypothesis: list[str]) -> int:
    if premise[0] in data.TIMES:  # "today the boy is ..." says the same of the boy
        premise = premise[1:]
    if premise[1] != hypothesis[1] or premise[-1] != hypothesis[-1]:  # another person or activity
        return NEUTRAL
    return ENTAILMENT if ("not" in premise) == ("not" in hypothesis) else CONTRADICTION


def _quantity(premise: list[str], hypothesis: list[str]) -> int:
    count, thing = data.NUMBERS.index(premise[2]) + 1, premise[3]
    comparison, bound, other = " ".join(hypothesis[2:4]), data.NUMBERS.index(hypothesis[4]) + 1, hypothesis[5]
    if thing != other:
        return NEUTRAL
    holds = count > bound if comparison == "more than" else count < bound
    assert comparison in ("more than", "fewer than")
    return ENTAILMENT if holds else CONTRADICTION


ORACLES = {
    "lexical": _lexical,
    "hypernymy": _hypernymy,
    "negation": _negation,
    "quantity": _quantity,
    "geography": _geography,
}


@pytest.mark.parametrize("rule", sorted(data.RULES))
def test_every_label_follows_from_the_pair_by_the_rule(rule):
    pairs = data.generate_task(rule, {"test": 600}, [], seed=0)["test"]
    assert sorted(Counter(pairs.labels.tolist()).values()) == [200, 200, 200]  # balanced
    for premise, hypothesis, label in zip(pairs.premises, pairs.hypotheses, pairs.labels, strict=True):
        assert ORACLES[rule](premise.split(), hypothesis.split()) == label, (premise, hypothesis, label)
        assert set(premise.split()) | set(hypothesis.split()) <= data.RULES[rule].words
    assert len(set(zip(pairs.premises, pairs.hypotheses, strict=True))) > 300  # not a handful of pairs repeated


def test_a_masked_task_has_only_the_other_classes_as_qnli_and_rte():
    labels = data.generate_task("quantity", {"test": 300}, [1], seed=0)["test"].labels
    assert Counter(labels.tolist()) == {ENTAILMENT: 150, CONTRADICTION: 150}
    labels = data.generate_task("geography", {"test": 300}, [2], seed=0)["test"].labels  # SciTail-like
    assert set(labels.tolist()) == {ENTAILMENT, NEUTRAL}
    with pytest.raises(data.DataError, match="fewer than two"):
        data.generate_task("quantity", {"test": 10}, [0, 1], seed=0)


def test_the_pretraining_mixture_pools_the_rules_in_a_stream_of_its_own():
    rules = ["lexical", "quantity", "geography"]
    mixture = data.generate_mixture(rules, 600, seed=1)
    assert mixture.premises == data.generate_mixture(list(reversed(rules)), 600, seed=1).premises
    assert Counter(mixture.labels.tolist()) == {ENTAILMENT: 200, NEUTRAL: 200, CONTRADICTION: 200}
    seen = Counter()
    for premise, hypothesis, label in zip(mixture.premises, mixture.hypotheses, mixture.labels, strict=True):
        words = set(premise.split()) | set(hypothesis.split())
        (rule,) = [name for name in rules if words <= data.RULES[name].words]  # each pair is one rule's
        assert ORACLES[rule](premise.split(), hypothesis.split()) == label
        seen[rule] += 1
    assert min(seen.values()) > 150
    task = data.generate_task("quantity", {"train": 600}, [], seed=1)["train"]
    assert not set(task.premises[:50]) <= set(mixture.premises)  # not the task's own draws


# --- the tokenizer --------------------------------------------------------------------------------------------------


def test_pairs_encode_with_llama3s_template_and_pad_with_pad_id(tmp_path):
    tokenizer = build_tokenizer()
    save_tokenizer(tokenizer, tmp_path / "tokenizer.json")
    tokenizer = load_tokenizer(tmp_path / "tokenizer.json")
    assert tokenizer.get_vocab_size() == len(data.vocabulary()) + 3
    bos, ids = tokenizer.token_to_id(BEGIN_OF_TEXT), tokenizer.get_vocab()
    tokens = encode_pairs(
        tokenizer, ["the house near the lake is big", "rex is a dog"], ["the house is large", "rex is a poodle"], 32
    )
    words = lambda text: [ids[word] for word in text.split()]  # noqa: E731
    assert tokens[0].tolist() == [bos, *words("the house near the lake is big"), bos, *words("the house is large")]
    assert tokens[1].tolist() == [bos, *words("rex is a dog"), bos, *words("rex is a poodle"), *[PAD_ID] * 3]
    assert tokens.dtype == torch.int32 and tokenizer.token_to_id(END_OF_TEXT) not in tokens


def test_long_pairs_lose_words_from_the_longer_segment_first():
    tokenizer = build_tokenizer()
    premise, hypothesis = "the house near the river is very big", "the house is big"
    tokens = encode_pairs(tokenizer, [premise], [hypothesis], max_length=11)
    bos, ids = tokenizer.token_to_id(BEGIN_OF_TEXT), tokenizer.get_vocab()
    kept = [bos, *(ids[w] for w in premise.split()[:5]), bos, *(ids[w] for w in hypothesis.split())]
    assert tokens[0].tolist() == kept


def test_the_transformers_tokenizer_encodes_pairs_as_the_splits_do():
    tokenizer = build_tokenizer()
    wrapped = as_transformers_tokenizer(tokenizer)
    premises, hypotheses = (
        ["there are five cups on the table", "anna lives in paris"],
        ["there are more than two cups", "anna lives in europe"],
    )
    tokens = encode_pairs(tokenizer, premises, hypotheses, 12)
    for row, (premise, hypothesis) in enumerate(zip(premises, hypotheses, strict=True)):
        ids = wrapped(premise, hypothesis, truncation=True, max_length=12)["input_ids"]
        assert ids == [token for token in tokens[row].tolist() if token != PAD_ID]
    assert (wrapped.bos_token, wrapped.pad_token, wrapped.eos_token) == (BEGIN_OF_TEXT, END_OF_TEXT, END_OF_TEXT)


def test_an_unknown_word_stops_with_its_pair():
    with pytest.raises(data.DataError, match="outside the tokenizer's vocabulary: 'the zebra is big'"):
        encode_pairs(build_tokenizer(), ["the zebra is big"], ["the house is big"], 16)


# --- backbone and adapters ------------------------------------------------------------------------------------------

TINY = {
    "hidden_size": 16,
    "intermediate_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
}
TRAINING = {"rank": 2, "lora_alpha": 4, "steps": 6, "batch_size": 8, "lr": 0.01}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny backbone pre-trained for a few steps, and a LoRA adapter of a masked (QNLI-like) task saved from it."""
    from loramerge.repro.suites.demo_text.train import (
        adapter_head,
        build_backbone,
        finetune_lora,
        pretrain,
        save_backbone,
        save_task_adapter,
    )

    folder = tmp_path_factory.mktemp("demo_text")
    tokenizer = build_tokenizer()
    mixture = data.generate_mixture(["quantity"], 64, seed=0)
    tokens = encode_pairs(tokenizer, mixture.premises, mixture.hypotheses, 24)
    model = build_backbone(TINY, tokenizer, 24, 3, seed=0)
    pretrain(model, tokens, torch.from_numpy(mixture.labels), {"steps": 3, "batch_size": 16, "lr": 0.01}, 0, False)
    save_backbone(model, tokenizer, folder / "backbone")
    pairs = data.generate_task("quantity", {"train": 64}, [NEUTRAL], seed=0)["train"]
    tokens = encode_pairs(tokenizer, pairs.premises, pairs.hypotheses, 24)
    peft_model, _ = finetune_lora(
        folder / "backbone", tokens, torch.from_numpy(pairs.labels), [NEUTRAL], TRAINING, seed=1, progress=False
    )
    save_task_adapter(peft_model, folder / "adapter")
    return folder, peft_model, adapter_head(peft_model), tokens


def test_the_backbone_folder_loads_with_the_text_runtime_and_carries_its_tokenizer(trained):
    from transformers import AutoTokenizer

    folder = trained[0] / "backbone"
    model = load_backbone(folder)
    assert model.config.pad_token_id == build_tokenizer().token_to_id(END_OF_TEXT)
    assert model.config.num_key_value_heads < model.config.num_attention_heads  # grouped-query attention
    saved = AutoTokenizer.from_pretrained(folder)
    assert saved("anna lives in paris", "anna lives in france")["input_ids"] == [
        token
        for token in encode_pairs(build_tokenizer(), ["anna lives in paris"], ["anna lives in france"], 24)[0].tolist()
    ]


def test_the_adapter_carries_its_score_head_under_the_hubs_key_and_loads_in_the_library(trained):
    folder, _, head, _ = trained
    tensors = load_file(folder / "adapter" / "adapter_model.safetensors")
    assert "base_model.model.score.weight" in tensors and tensors["base_model.model.score.weight"].shape == (3, 16)
    assert "base_model.model.model.layers.0.self_attn.o_proj.lora_B.weight" in tensors
    config = json.loads((folder / "adapter" / "adapter_config.json").read_text())
    assert config["task_type"] == "SEQ_CLS" and config["target_modules"] == ["k_proj", "o_proj", "q_proj", "v_proj"]
    adapter = load_adapter(folder / "adapter")
    assert sorted(adapter.modules) == [f"model.layers.0.self_attn.{m}_proj" for m in ("k", "o", "q", "v")]
    assert torch.equal(adapter.other_tensors["base_model.model.score.weight"], head)


def test_a_masked_class_gets_no_training_so_its_head_row_stays_the_pretrained_one(trained):
    """Every task starts from the backbone's head; −1e10 logits pass no gradient to a masked class's row."""
    folder, _, head, _ = trained
    pretrained = load_backbone(folder / "backbone").score.weight.detach()
    assert torch.equal(head[NEUTRAL], pretrained[NEUTRAL])
    assert not torch.equal(head[[ENTAILMENT, CONTRADICTION]], pretrained[[ENTAILMENT, CONTRADICTION]])


def test_backbone_plus_the_adapters_update_scored_by_the_head_is_the_trained_classifier(trained):
    folder, peft_model, head, tokens = trained
    backbone = load_backbone(folder / "backbone")
    with updated(backbone, load_update(folder / "adapter"), 1.0, DemoTextSuite.module_prefixes):
        features = encode(backbone, tokens, batch_size=16)
    mask, pad = tokens != PAD_ID, backbone.config.pad_token_id
    with torch.no_grad():
        logits = peft_model(input_ids=torch.where(mask, tokens, pad).long(), attention_mask=mask.long()).logits
    torch.testing.assert_close(features @ head.T, logits, rtol=1e-4, atol=1e-5)


# --- the suite ------------------------------------------------------------------------------------------------------


def test_the_demo_config_is_a_text_suite_with_a_masked_task():
    suite = load_suite(CONFIG)
    assert isinstance(suite, DemoTextSuite) and suite.name == "demo-nli" and len(suite.tasks) >= 4
    assert suite.masked_classes("quantity") == [NEUTRAL] and suite.masked_classes("lexical") == []
    assert suite.masked_by_task()["quantity"] == [NEUTRAL] and suite.published_finetuned() == {}
    assert CONFIG["evaluate"]["normalize_by"] == "measured" and CONFIG["report"]["paper"] is None
    assert (ROOT / suite.input_rules).is_file()


def test_the_schema_names_every_rule_of_the_generator():
    schema = yaml.safe_load((ROOT / "src/loramerge/repro/suites/demo_text/section.schema.yaml").read_text())
    assert schema["properties"]["tasks"]["additionalProperties"]["properties"]["rule"]["enum"] == list(data.RULES)


def _nested(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


def _edited(edit) -> dict:
    config = copy.deepcopy(CONFIG)
    edit(config["demo_text"])
    return config


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (lambda s: s["tasks"]["lexical"].update(rule="syllogism"), "demo_text.tasks.lexical.rule"),
        (lambda s: s["tasks"]["quantity"].update(masked=[0, 1]), "demo_text.tasks.quantity.masked"),
        (lambda s: s["tasks"]["quantity"].update(masked=[3]), "demo_text.tasks.quantity.masked"),
        (lambda s: s["finetune"]["per_task"].update(cars={"steps": 3}), "demo_text.finetune.per_task.cars"),
        (lambda s: s["backbone"].update(num_attention_heads=3), "demo_text.backbone.num_attention_heads"),
        (lambda s: s["backbone"].update(num_key_value_heads=3), "demo_text.backbone.num_key_value_heads"),
        (lambda s: s["finetune"].update(target_modules=["out_proj"]), "demo_text.finetune.target_modules"),
        (lambda s: s.pop("max_length"), "demo_text"),
        (lambda s: s["finetune"].update(target_modules=_nested(3000)), "demo_text"),  # deeper than Python recurses
    ],
)
def test_inconsistent_settings_name_their_key(edit, key):
    with pytest.raises(ConfigError, match=f"config key '{key}"):
        load_suite(_edited(edit))


def test_choosing_the_text_demo_imports_neither_torch_nor_another_suite():
    code = (
        "import sys, yaml; from loramerge.repro.suites.base import load_suite; "
        f"load_suite(yaml.safe_load(open({str(ROOT / 'config' / 'demo-nli.yaml')!r}))); "
        "assert 'torch' not in sys.modules, 'torch imported'; "
        "assert not any(s in name for name in sys.modules for s in ('demo_vision', 'clip')), 'another suite imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
