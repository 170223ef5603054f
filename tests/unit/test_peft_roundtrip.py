"""A merged peft adapter loads with PeftModel.from_pretrained and acts exactly as W0 + ΔW."""

from __future__ import annotations

import json

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file
from transformers import CLIPVisionConfig, CLIPVisionModel

from loramerge import load_adapters, merge, merge_to_folder

TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]


def tiny_clip() -> CLIPVisionModel:
    torch.manual_seed(0)  # the same base weights on every call
    config = CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=32, patch_size=8
    )
    return CLIPVisionModel(config).eval()


@pytest.fixture(scope="module")
def peft_adapter_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("peft_adapters")
    dirs = []
    for task in range(3):
        torch.manual_seed(100 + task)
        config = LoraConfig(
            r=4, lora_alpha=8, target_modules=TARGETS, init_lora_weights=False, rank_pattern={"out_proj": 2}
        )
        model = get_peft_model(tiny_clip(), config)
        model.save_pretrained(root / f"task{task}")
        dirs.append(root / f"task{task}")
    return dirs


@pytest.fixture(scope="module")
def pixels():
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def with_delta(deltas: dict[str, torch.Tensor]) -> CLIPVisionModel:
    model = tiny_clip()
    state = model.state_dict()
    for name, delta in deltas.items():
        state[name] = state[name] + delta
    model.load_state_dict(state)
    return model


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("knots_ties", {"top_k": 20, "lam": 0.8}),
        ("hybrid", {"alpha": 0.6}),
        ("ta", {"lam": 0.5}),
        ("core_ties", {}),
        ("cur_r_ties", {}),
        ("core_tsv", {"lam": 0.6}),
        ("core_iso", {"lam": 0.6}),
        ("lora_lego", {"clusters": 3, "seed": 1}),
        ("mix", {"first": "knots_ties", "second": "ta", "alpha": 0.5}),
    ],
)
def test_peft_output_equals_the_dense_update(peft_adapter_dirs, pixels, tmp_path, method, params):
    adapters = load_adapters(peft_adapter_dirs)
    out = merge_to_folder(adapters, method, tmp_path / "merged", params, output_format="peft")
    loaded = PeftModel.from_pretrained(tiny_clip(), out).eval()
    deltas = {f"{name}.weight": update.dense() for name, update in merge(adapters, method, **params).items()}
    expected = with_delta(deltas)
    with torch.no_grad():
        got, want, base = loaded(pixel_values=pixels), expected(pixel_values=pixels), tiny_clip()(pixel_values=pixels)
    torch.testing.assert_close(got.last_hidden_state, want.last_hidden_state, atol=1e-5, rtol=1e-5)
    assert (want.last_hidden_state - base.last_hidden_state).abs().max() > 1e-2  # the merge changes the model


def test_heterogeneous_module_ranks_go_to_rank_pattern(peft_adapter_dirs, tmp_path):
    adapters = load_adapters(peft_adapter_dirs)
    out = merge_to_folder(adapters, "ta", tmp_path / "ta", {}, output_format="peft")
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["r"] == 12 and config["lora_alpha"] == 12
    assert all(name.endswith("out_proj") and rank == 6 for name, rank in config["rank_pattern"].items())
    assert config["rank_pattern"] == config["alpha_pattern"] and len(config["rank_pattern"]) == 2


def test_delta_output_matches_the_peft_adapter(peft_adapter_dirs, pixels, tmp_path):
    adapters = load_adapters(peft_adapter_dirs)
    params = {"alpha": "auto-magnitude"}
    delta_dir = merge_to_folder(adapters, "hybrid", tmp_path / "delta", params, output_format="delta")
    peft_dir = merge_to_folder(adapters, "hybrid", tmp_path / "peft", params, output_format="peft")
    deltas = load_file(delta_dir / "delta.safetensors")
    assert sorted(deltas) == sorted(f"{name}.weight" for name in adapters.modules)
    with torch.no_grad():
        from_delta = with_delta(deltas)(pixel_values=pixels).last_hidden_state
        from_peft = PeftModel.from_pretrained(tiny_clip(), peft_dir)(pixel_values=pixels).last_hidden_state
    torch.testing.assert_close(from_delta, from_peft, atol=1e-5, rtol=1e-5)
    manifest = json.loads((peft_dir / "merge.json").read_text())
    assert set(manifest["alpha_per_module"]) == set(adapters.modules)
    assert all(0 < alpha < 1 for alpha in manifest["alpha_per_module"].values())
