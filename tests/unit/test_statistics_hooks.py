"""Statistics collected through hooks (loramerge.repro.stats) on a tiny CLIP vision tower and a tiny Llama classifier:
Grams against XᵀX of the inputs captured directly, padding rows left out, a shared input's product computed once,
both Fisher estimators against plain loops over examples and classes with autograd, the fine-tuned weights applied
and taken off, byte-identical statistics folders for the same seed and data, and the config checks."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from pathlib import Path

import pytest
import torch
from conftest import write_adapter

from loramerge.adapters import load_adapter
from loramerge.repro.plan import ConfigError, build_plan
from loramerge.repro.splits import PAD_ID, pad_sequences
from loramerge.repro.stats.collect import collect_fisher, collect_gram, task_statistics
from loramerge.repro.stats.hooks import GramHooks, HookError, targeted_linears
from loramerge.repro.stats.needs import needed_kinds, statistics_kind
from loramerge.repro.stats.subset import describe_subset, draw_rows, inputs_sha256
from loramerge.repro.suites.base import load_suite
from loramerge.repro.suites.clip.model import build_backbone
from loramerge.repro.suites.demo_text.suite import DemoTextSuite
from loramerge.repro.suites.demo_vision.suite import DemoVisionSuite
from loramerge.stats import StatisticsInfo, adapter_weights_sha256, write_task_statistics

ATTENTION = ("q_proj", "k_proj", "v_proj")
VISION_TINY = {
    "hidden_size": 16,
    "intermediate_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "image_size": 16,
    "patch_size": 8,
    "projection_dim": 8,
}
VISION_MODULES = [f"encoder.layers.{i}.self_attn.{m}" for i in range(2) for m in (*ATTENTION, "out_proj")]
TEXT_MODULES = [f"model.layers.{i}.self_attn.{m}" for i in range(2) for m in (*ATTENTION, "o_proj")]
VOCAB = 40


def tiny_vision() -> torch.nn.Module:
    return build_backbone(VISION_TINY, seed=0)


def tiny_llama() -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForSequenceClassification

    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,  # k and v are narrower than q: one input, three output widths
        max_position_embeddings=64,
        num_labels=3,
        pad_token_id=0,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return LlamaForSequenceClassification(config).eval()


def images(count: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (count, 3, 16, 16), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def token_batch(count: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 12, (count,), generator=generator).tolist()
    return pad_sequences([torch.randint(1, VOCAB, (n,), generator=generator).tolist() for n in lengths])


def head(classes: int, width: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(classes, width, generator=torch.Generator().manual_seed(seed))


@contextlib.contextmanager
def captured_inputs(modules: dict[str, torch.nn.Module]):
    """Every input each module receives, as a list of tensors (the reference the hooks are checked against)."""
    seen: dict[str, list[torch.Tensor]] = {path: [] for path in modules}
    handles = [
        module.register_forward_pre_hook(lambda _, args, path=path: seen[path].append(args[0].detach().clone()))
        for path, module in modules.items()
    ]
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()


# ----------------------------------------------------------------------------------------------------------- Gram


def test_vision_grams_equal_xtx_of_the_captured_inputs_and_q_k_v_share_one_product():
    model, inputs = tiny_vision(), images(10)
    modules = targeted_linears(model, VISION_MODULES, DemoVisionSuite.module_prefixes)
    with captured_inputs(modules) as seen, torch.no_grad():
        for start in range(0, 10, 4):
            DemoVisionSuite.statistics_features(model, inputs[start : start + 4], "cpu")
    collected = collect_gram(DemoVisionSuite, model, modules, inputs, batch_size=4, device="cpu")
    tokens = (16 // 8) ** 2 + 1  # patches and the class token
    assert collected.counted == 10 * tokens and collected.examples == 10
    for path in VISION_MODULES:
        rows = torch.cat([x.reshape(-1, x.shape[-1]) for x in seen[path]]).double()
        assert len(rows) == collected.counted
        torch.testing.assert_close(collected.tensors[path], rows.T @ rows, rtol=1e-12, atol=1e-12)
        assert collected.tensors[path].dtype == torch.float64
    for layer in range(2):
        q, k, v = (collected.tensors[f"encoder.layers.{layer}.self_attn.{m}"] for m in ATTENTION)
        assert torch.equal(q, k) and torch.equal(q, v)


def test_a_shared_input_is_multiplied_once_per_batch():
    model = tiny_vision()
    modules = targeted_linears(model, VISION_MODULES, DemoVisionSuite.module_prefixes)
    hooks = GramHooks(modules)
    with hooks.attached(), torch.no_grad():
        for batch in images(6).split(3):
            with hooks.batch(None):
                DemoVisionSuite.statistics_features(model, batch, "cpu")
    # per layer and batch: one product for q, k and v, one for out_proj
    assert hooks.products == 2 * 2 * 2
    only_q = GramHooks(targeted_linears(model, ["encoder.layers.0.self_attn.q_proj"], DemoVisionSuite.module_prefixes))
    with only_q.attached(), torch.no_grad(), only_q.batch(None):
        DemoVisionSuite.statistics_features(model, images(3), "cpu")
    assert only_q.products == 1


def test_text_grams_leave_padding_rows_out():
    """The Gram of a padded batch equals the sum of the Grams of each example run alone, unpadded."""
    model, tokens = tiny_llama(), token_batch(7)
    assert (tokens == PAD_ID).any()
    modules = targeted_linears(model, TEXT_MODULES)
    collected = collect_gram(DemoTextSuite, model, modules, tokens, batch_size=4, device="cpu")
    lengths = (tokens != PAD_ID).sum(dim=1)
    assert collected.counted == int(lengths.sum())
    with captured_inputs(modules) as seen, torch.no_grad():
        for row, length in zip(tokens, lengths, strict=True):
            DemoTextSuite.statistics_features(model, row[:length].unsqueeze(0), "cpu")
    for path in TEXT_MODULES:
        rows = torch.cat([x.reshape(-1, x.shape[-1]) for x in seen[path]]).double()
        torch.testing.assert_close(collected.tensors[path], rows.T @ rows, rtol=1e-5, atol=1e-5)
    for layer in range(2):
        q, k, v = (collected.tensors[f"model.layers.{layer}.self_attn.{m}"] for m in ATTENTION)
        assert torch.equal(q, k) and torch.equal(q, v)


def test_a_row_mask_that_does_not_fit_the_input_is_refused():
    model = tiny_vision()
    hooks = GramHooks(targeted_linears(model, VISION_MODULES[:1], DemoVisionSuite.module_prefixes))
    message = r"q_proj: input of shape \(2, 5, 16\) does not fit the row mask \(2, 3\)"
    with hooks.attached(), torch.no_grad(), hooks.batch(torch.ones(2, 3, dtype=torch.bool)):  # noqa: SIM117
        with pytest.raises(HookError, match=message):
            DemoVisionSuite.statistics_features(model, images(2), "cpu")


def test_a_module_that_is_not_a_linear_layer_is_refused():
    with pytest.raises(HookError, match=r"encoder.layers.0.layer_norm1: is a LayerNorm, not an nn.Linear"):
        targeted_linears(tiny_vision(), ["encoder.layers.0.layer_norm1"], DemoVisionSuite.module_prefixes)
    with pytest.raises(HookError, match="no such module"):
        targeted_linears(tiny_vision(), ["encoder.layers.9.self_attn.q_proj"], DemoVisionSuite.module_prefixes)


# --------------------------------------------------------------------------------------------------------- Fisher


def log_probabilities(suite, model, batch, task_head, masked) -> torch.Tensor:
    kept = [c for c in range(task_head.shape[0]) if c not in masked]
    logits = suite.head_temperature * suite.statistics_features(model, batch, "cpu") @ task_head[kept].T
    return torch.log_softmax(logits, dim=-1)


def reference_fisher(suite, model, paths, inputs, task_head, masked, batch_size=None) -> dict[str, torch.Tensor]:
    """The Fisher of each dense weight from autograd on the weights themselves: one example and one class at a time
    (exact), or FusionBench's squared gradient of one batch's Σ sqrt(p) log p (batch_size given)."""
    weights = {path: module.weight for path, module in targeted_linears(model, paths, suite.module_prefixes).items()}
    totals = {path: torch.zeros_like(weight, dtype=torch.float64) for path, weight in weights.items()}
    for weight in weights.values():
        weight.requires_grad_(True)
    if batch_size is None:
        for example in inputs.split(1):
            log_p = log_probabilities(suite, model, example, task_head, masked)[0]
            for c in range(len(log_p)):
                grads = torch.autograd.grad(log_p[c], list(weights.values()), retain_graph=True)
                for path, grad in zip(weights, grads, strict=True):
                    totals[path] += float(log_p[c].detach().exp()) * grad.double() ** 2
    else:
        for batch in inputs.split(batch_size):
            log_p = log_probabilities(suite, model, batch, task_head, masked)
            loss = (log_p.exp().sqrt().detach() * log_p).sum()
            for path, grad in zip(weights, torch.autograd.grad(loss, list(weights.values())), strict=True):
                totals[path] += grad.double() ** 2
    return {path: total / len(inputs) for path, total in totals.items()}


@pytest.mark.parametrize("estimator", ["exact", "batch"])
def test_vision_fisher_matches_autograd_on_the_dense_weights(estimator):
    model, inputs, task_head = tiny_vision(), images(5), head(4, 8)
    paths = VISION_MODULES[:4]
    modules = targeted_linears(model, paths, DemoVisionSuite.module_prefixes)
    collected = collect_fisher(DemoVisionSuite, model, modules, inputs, task_head, (), 2, "cpu", estimator)
    expected = reference_fisher(
        DemoVisionSuite, model, paths, inputs, task_head, (), 2 if estimator == "batch" else None
    )
    assert collected.examples == 5 and collected.counted == 5 * 5
    for path in paths:
        assert collected.tensors[path].abs().max() > 0
        torch.testing.assert_close(collected.tensors[path], expected[path], rtol=1e-4, atol=1e-12)


def test_text_fisher_with_a_masked_class_and_padding_matches_autograd():
    model, tokens, task_head = tiny_llama(), token_batch(5, seed=3), head(3, 16)
    modules = targeted_linears(model, TEXT_MODULES)
    collected = collect_fisher(DemoTextSuite, model, modules, tokens, task_head, [1], 3, "cpu", "exact")
    lengths = (tokens != PAD_ID).sum(dim=1)
    assert collected.counted == int(lengths.sum())
    unpadded = [row[:length].unsqueeze(0) for row, length in zip(tokens, lengths, strict=True)]
    expected = {path: torch.zeros_like(f) for path, f in collected.tensors.items()}
    for example in unpadded:  # each example alone, so padding cannot enter the reference
        for path, value in reference_fisher(DemoTextSuite, model, TEXT_MODULES, example, task_head, [1]).items():
            expected[path] += value / len(unpadded)
    for path in TEXT_MODULES:
        torch.testing.assert_close(collected.tensors[path], expected[path], rtol=1e-4, atol=1e-10)


def test_fisher_leaves_the_gradient_flags_as_it_found_them():
    model = tiny_vision()
    flags = [parameter.requires_grad for parameter in model.parameters()]
    modules = targeted_linears(model, VISION_MODULES, DemoVisionSuite.module_prefixes)
    collect_fisher(DemoVisionSuite, model, modules, images(2), head(3, 8), (), 2, "cpu")
    assert [parameter.requires_grad for parameter in model.parameters()] == flags
    assert all(parameter.grad is None for parameter in model.parameters())


# ------------------------------------------------------------------------------------- one task, written to disk


def vision_adapter(folder: Path, seed: int = 0) -> Path:
    generator = torch.Generator().manual_seed(seed)
    factors = {
        path: (torch.randn(2, 16, generator=generator), torch.randn(16, 2, generator=generator) * 0.1)
        for path in VISION_MODULES
    }
    return write_adapter(folder, factors, {"r": 2, "lora_alpha": 2})


def write_statistics(folder: Path, adapter_folder: Path, rows_seed: int, kinds=("gram", "fisher")) -> Path:
    """What a statistics job (one per kind) does for one of its tasks (scripts/statistics.py)."""
    available = images(12, seed=5)
    rows = draw_rows(len(available), 8, rows_seed)
    inputs = available[rows]
    adapter = load_adapter(adapter_folder)
    update = {module: lora.delta() for module, lora in adapter.modules.items()}
    model = tiny_vision()
    for kind in kinds:
        collected = task_statistics(DemoVisionSuite, model, update, inputs, kind, 3, "cpu", head(4, 8), ())
        info = StatisticsInfo(
            examples=collected.examples,
            counted=collected.counted,
            unit="tokens",
            split=describe_subset("train", rows, len(available), rows_seed),
            split_sha256=inputs_sha256(inputs),
            adapter_sha256=adapter_weights_sha256(adapter),
        )
        write_task_statistics(folder / kind, "task", {kind: collected.tensors}, info)
    return folder


def test_the_same_seed_and_data_give_byte_identical_statistics(tmp_path):
    adapter = vision_adapter(tmp_path / "adapters" / "task")
    first, second = (write_statistics(tmp_path / name, adapter, rows_seed=7) for name in ("first", "second"))
    files = sorted(path.relative_to(first) for path in first.rglob("*") if path.is_file())
    assert [str(f) for f in files] == [
        "fisher/task/fisher.safetensors",
        "fisher/task/stats.json",
        "gram/task/gram.safetensors",
        "gram/task/stats.json",
    ]
    for name in files:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    other = write_statistics(tmp_path / "other", adapter, rows_seed=8, kinds=("gram",))
    assert (other / files[2]).read_bytes() != (first / files[2]).read_bytes()
    assert "8 of 12 rows drawn with seed 7" in (first / files[1]).read_text()


def test_the_fine_tuned_weights_are_applied_and_then_taken_off(tmp_path):
    adapter = load_adapter(vision_adapter(tmp_path / "task"))
    update = {module: lora.delta() for module, lora in adapter.modules.items()}
    model, inputs = tiny_vision(), images(4)
    before = copy.deepcopy(model.state_dict())
    fine_tuned = task_statistics(DemoVisionSuite, model, update, inputs, "gram", 4, "cpu")
    assert all(torch.equal(before[key], value) for key, value in model.state_dict().items())
    base = task_statistics(
        DemoVisionSuite, model, {path: torch.zeros_like(d) for path, d in update.items()}, inputs, "gram", 4, "cpu"
    )
    first_layer = "encoder.layers.0.self_attn.q_proj"  # its input comes before any ΔW
    assert torch.equal(fine_tuned.tensors[first_layer], base.tensors[first_layer])
    later = "encoder.layers.1.self_attn.q_proj"
    assert not torch.allclose(fine_tuned.tensors[later], base.tensors[later])
    with pytest.raises(ValueError, match="Fisher statistics need the task's head"):
        task_statistics(DemoVisionSuite, model, update, inputs, "fisher", 4, "cpu")


def test_rows_are_drawn_by_seed_distinct_and_ascending():
    rows = draw_rows(100, 10, seed=3)
    assert torch.equal(rows, draw_rows(100, 10, seed=3)) and not torch.equal(rows, draw_rows(100, 10, seed=4))
    assert len(set(rows.tolist())) == 10 and torch.equal(rows, rows.sort().values) and int(rows.max()) < 100
    assert torch.equal(draw_rows(6, 256, seed=0), torch.arange(6))  # a split smaller than N is counted whole


# ---------------------------------------------------------------------------------------------- configuration


def demo_config(methods: dict) -> dict:
    import yaml
    from workflow_runner import SMOKE_CONFIG

    config = yaml.safe_load(SMOKE_CONFIG.read_text())
    config["merge"]["methods"] = {"ta": {"order": ["lam"]}, **methods}
    return config


def test_planned_merges_name_the_statistics_kind_they_read():
    config = demo_config({"regmean": {"order": ["lam"]}, "fisher": {"order": ["lam"]}})
    plans = build_plan(config)
    assert {name: statistics_kind(plan) for name, plan in plans.items()} == {
        "ta": None,
        "regmean": "gram",
        "fisher": "fisher",
    }
    assert needed_kinds(load_suite(config), plans) == ["fisher", "gram"]
    plain = demo_config({})
    assert needed_kinds(load_suite(plain), build_plan(plain)) == []


def test_a_merge_whose_branches_read_two_kinds_is_refused():
    plan = dataclasses.replace(
        build_plan(demo_config({"regmean": {"order": ["lam"]}}))["regmean"], branches={"b": "fisher"}
    )
    with pytest.raises(ConfigError, match=r"config key 'merge.methods.regmean'.*both fisher and gram"):
        statistics_kind(plan)
