"""Reading peft LoRA adapter folders: key names of every peft version, scales, ranks, file formats, extra tensors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from conftest import SHAPES, random_adapter_dirs, random_factors, write_adapter
from safetensors.torch import save_file

from loramerge.adapters import canonical_module_path, load_adapter, load_adapters
from loramerge.api import merge
from loramerge.errors import AdapterError

Q0, V0 = "encoder.layers.0.self_attn.q_proj", "encoder.layers.0.self_attn.v_proj"
Q1, V1 = "encoder.layers.1.self_attn.q_proj", "encoder.layers.1.self_attn.v_proj"


def _factors(seed: int = 0, rank: int = 4, shapes=SHAPES) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    return random_factors(torch.Generator().manual_seed(seed), shapes, rank)


def _assert_delta(module, A: torch.Tensor, B: torch.Tensor, scale: float) -> None:
    assert module.scale == pytest.approx(scale, rel=1e-12)
    torch.testing.assert_close(module.delta(), scale * B.double() @ A.double(), check_dtype=False)


# --------------------------------------------------------------------------------------------- key names


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        # peft 0.3: no adapter name in the key
        ("base_model.model.encoder.layers.0.self_attn.q_proj.lora_A.weight", (Q0, "A")),
        ("base_model.model.encoder.layers.0.self_attn.q_proj.lora_B.weight", (Q0, "B")),
        # newer peft state dicts: adapter name infix
        ("base_model.model.encoder.layers.0.self_attn.q_proj.lora_A.default.weight", (Q0, "A")),
        ("base_model.model.encoder.layers.0.self_attn.q_proj.lora_B.default.weight", (Q0, "B")),
        ("base_model.model.encoder.layers.0.self_attn.q_proj.lora_A.my-task_2.weight", (Q0, "A")),
        # .base_layer in the path
        ("base_model.model.encoder.layers.0.self_attn.q_proj.base_layer.lora_A.weight", (Q0, "A")),
        ("base_model.model.encoder.layers.0.self_attn.q_proj.base_layer.lora_B.default.weight", (Q0, "B")),
        # no base_model.model. prefix
        ("encoder.layers.0.self_attn.q_proj.lora_A.weight", (Q0, "A")),
        ("encoder.layers.0.self_attn.q_proj.lora_B.default.weight", (Q0, "B")),
        ("encoder.layers.0.self_attn.q_proj.base_layer.lora_A.default.weight", (Q0, "A")),
        # only the peft wrapper prefix is stripped: a base model whose own root is called `model` keeps it
        ("base_model.model.model.layers.3.mlp.down_proj.lora_A.weight", ("model.layers.3.mlp.down_proj", "A")),
    ],
)
def test_canonical_module_path_of_every_peft_key_style(key: str, expected: tuple[str, str]) -> None:
    assert canonical_module_path(key) == expected


@pytest.mark.parametrize(
    "key",
    [
        "base_model.model.classifier.weight",
        "base_model.model.classifier.bias",
        "base_model.model.encoder.layers.0.self_attn.q_proj.base_layer.weight",
        "base_model.model.encoder.layers.0.self_attn.q_proj.lora_A.default.bias",
        "base_model.model.classifier.modules_to_save.default.weight",
    ],
)
def test_canonical_module_path_is_none_for_other_tensors(key: str) -> None:
    assert canonical_module_path(key) is None


KEY_STYLES = [  # (key_prefix, adapter_name, module suffix)
    pytest.param("base_model.model.", None, "", id="peft-0.3"),
    pytest.param("base_model.model.", "default", "", id="adapter-name-infix"),
    pytest.param("base_model.model.", "task-7", "", id="custom-adapter-name"),
    pytest.param("base_model.model.", None, ".base_layer", id="base-layer"),
    pytest.param("base_model.model.", "default", ".base_layer", id="base-layer-and-infix"),
    pytest.param("", None, "", id="no-prefix"),
    pytest.param("", "default", "", id="no-prefix-and-infix"),
]


@pytest.mark.parametrize(("key_prefix", "adapter_name", "suffix"), KEY_STYLES)
def test_every_key_style_loads_to_the_same_modules(
    tmp_path: Path, key_prefix: str, adapter_name: str | None, suffix: str
) -> None:
    factors = _factors()
    written = {f"{module}{suffix}": pair for module, pair in factors.items()}
    folder = write_adapter(
        tmp_path / "adapter", written, config={"lora_alpha": 6}, key_prefix=key_prefix, adapter_name=adapter_name
    )
    adapter = load_adapter(folder)
    assert sorted(adapter.modules) == sorted(SHAPES)
    assert adapter.other_tensors == {}
    assert adapter.weights_file == folder / "adapter_model.safetensors"
    for module, (A, B) in factors.items():
        lora = adapter.modules[module]
        assert lora.rank == 4
        assert lora.shape == SHAPES[module]
        torch.testing.assert_close(lora.A, A, rtol=0, atol=0)
        torch.testing.assert_close(lora.B, B, rtol=0, atol=0)
        _assert_delta(lora, A, B, 6 / 4)


def test_all_key_styles_give_identical_adapters(tmp_path: Path) -> None:
    factors = _factors(seed=3)
    loaded = []
    for index, param in enumerate(KEY_STYLES):
        key_prefix, adapter_name, suffix = param.values
        written = {f"{module}{suffix}": pair for module, pair in factors.items()}
        loaded.append(
            load_adapter(
                write_adapter(tmp_path / str(index), written, key_prefix=key_prefix, adapter_name=adapter_name)
            )
        )
    reference = loaded[0]
    for adapter in loaded[1:]:
        assert adapter.modules.keys() == reference.modules.keys()
        for module in SHAPES:
            torch.testing.assert_close(
                adapter.modules[module].delta(), reference.modules[module].delta(), rtol=0, atol=0
            )


# --------------------------------------------------------------------------------------------- scales


@pytest.mark.parametrize(
    ("rank", "alpha", "rslora", "scale"),
    [
        (4, 8, False, 2.0),
        (4, 6, False, 1.5),
        (4, 6, True, 3.0),  # lora_alpha / sqrt(r)
        (9, 6, True, 2.0),
        (9, 6, False, 6 / 9),
        (4, 1, False, 0.25),  # scale < 1 is kept, not clipped
    ],
)
def test_scale_is_alpha_over_r_or_over_sqrt_r_for_rslora(
    tmp_path: Path, rank: int, alpha: int, rslora: bool, scale: float
) -> None:
    factors = _factors(rank=rank)
    config = {"r": rank, "lora_alpha": alpha, "use_rslora": rslora}
    adapter = load_adapter(write_adapter(tmp_path / "a", factors, config=config))
    for module, (A, B) in factors.items():
        _assert_delta(adapter.modules[module], A, B, scale)


@pytest.mark.parametrize("rslora", [False, True])
def test_rank_pattern_and_alpha_pattern_give_per_module_scales(tmp_path: Path, rslora: bool) -> None:
    generator = torch.Generator().manual_seed(1)
    ranks = {Q0: 8, Q1: 8, V0: 4, V1: 4}
    factors = {m: next(iter(random_factors(generator, {m: SHAPES[m]}, ranks[m]).values())) for m in SHAPES}
    config = {
        "r": 4,
        "lora_alpha": 8,
        "use_rslora": rslora,
        "rank_pattern": {"q_proj": 8},
        "alpha_pattern": {"layers.1.self_attn.v_proj": 2},
    }
    adapter = load_adapter(write_adapter(tmp_path / "a", factors, config=config))
    alphas = {Q0: 8, Q1: 8, V0: 8, V1: 2}
    for module, (A, B) in factors.items():
        r = ranks[module]
        expected = alphas[module] / (math.sqrt(r) if rslora else r)
        assert adapter.modules[module].rank == r
        _assert_delta(adapter.modules[module], A, B, expected)
    # the q_proj modules (r = 8 from rank_pattern) must not get the default r = 4 in their scale
    assert adapter.modules[Q0].scale != pytest.approx(8 / 4)


def test_first_matching_pattern_wins(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(2)
    ranks = {Q0: 8, Q1: 6, V0: 4, V1: 4}
    factors = {m: next(iter(random_factors(generator, {m: SHAPES[m]}, ranks[m]).values())) for m in SHAPES}
    config = {
        "r": 4,
        "lora_alpha": 4,
        "rank_pattern": {"layers.0.self_attn.q_proj": 8, "q_proj": 6},
        "alpha_pattern": {"layers.0.self_attn.q_proj": 16, "q_proj": 3},
    }
    adapter = load_adapter(write_adapter(tmp_path / "a", factors, config=config))
    expected = {Q0: 16 / 8, Q1: 3 / 6, V0: 1.0, V1: 1.0}
    for module, (A, B) in factors.items():
        assert adapter.modules[module].rank == ranks[module]
        _assert_delta(adapter.modules[module], A, B, expected[module])

    # the same patterns in the other order: `q_proj` matches first, so layer 0's q_proj must have rank 6, not 8
    config["rank_pattern"] = {"q_proj": 6, "layers.0.self_attn.q_proj": 8}
    write_adapter(tmp_path / "b", factors, config=config)
    with pytest.raises(AdapterError, match=r"r=6 but the factors have rank 8") as caught:
        load_adapter(tmp_path / "b")
    assert caught.value.path == str(tmp_path / "b" / "adapter_model.safetensors")


@pytest.mark.parametrize(
    ("rank_pattern", "ranks"),
    [
        # a pattern must match a whole dotted suffix: `proj` is not `q_proj`, `self_attn` is not a module's tail
        ({"proj": 8, "self_attn": 8, "q": 8}, {Q0: 4, Q1: 4, V0: 4, V1: 4}),
        # patterns are regular expressions
        ({r"layers\.1\.self_attn\.(q|v)_proj": 6}, {Q0: 4, Q1: 6, V0: 4, V1: 6}),
        ({r"encoder\.layers\.\d+\.self_attn\.v_proj": 2}, {Q0: 4, Q1: 4, V0: 2, V1: 2}),
        # the full canonical path matches too
        ({V0: 2}, {Q0: 4, Q1: 4, V0: 2, V1: 4}),
    ],
)
def test_rank_pattern_matches_dotted_suffixes_as_regex(tmp_path: Path, rank_pattern: dict, ranks: dict) -> None:
    generator = torch.Generator().manual_seed(4)
    factors = {m: next(iter(random_factors(generator, {m: SHAPES[m]}, ranks[m]).values())) for m in SHAPES}
    adapter = load_adapter(
        write_adapter(tmp_path / "a", factors, config={"r": 4, "lora_alpha": 12, "rank_pattern": rank_pattern})
    )
    for module, (A, B) in factors.items():
        assert adapter.modules[module].rank == ranks[module]
        _assert_delta(adapter.modules[module], A, B, 12 / ranks[module])


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"r": 8}, "r=8 but the factors have rank 4"),
        ({"r": 2}, "r=2 but the factors have rank 4"),
        ({"r": 4, "rank_pattern": {"v_proj": 6}}, "r=6 but the factors have rank 4"),
    ],
)
def test_config_rank_that_disagrees_with_the_factors_is_an_adapter_error(
    tmp_path: Path, config: dict, message: str
) -> None:
    folder = write_adapter(tmp_path / "a", _factors(rank=4), config=config)
    with pytest.raises(AdapterError, match=message) as caught:
        load_adapter(folder)
    assert str(folder / "adapter_model.safetensors") in str(caught.value)


def test_peft_saved_adapter_matches_peft_delta_weights(tmp_path: Path) -> None:
    """Cross-check against peft itself: its saved keys, rank_pattern, alpha_pattern and rsLoRA scaling."""
    from peft import LoraConfig, get_peft_model

    class Attention(torch.nn.Module):
        def __init__(self, dims: dict[str, tuple[int, int]]) -> None:
            super().__init__()
            self.q_proj = torch.nn.Linear(dims["q_proj"][1], dims["q_proj"][0])
            self.v_proj = torch.nn.Linear(dims["v_proj"][1], dims["v_proj"][0])

    class Layer(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.self_attn = Attention({"q_proj": SHAPES[Q0], "v_proj": SHAPES[V0]})

    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = torch.nn.ModuleList([Layer(), Layer()])

    class Model(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = Encoder()
            self.classifier = torch.nn.Linear(24, 3)

    torch.manual_seed(0)
    config = LoraConfig(
        r=4,
        lora_alpha=8,
        target_modules=["q_proj", "v_proj"],
        rank_pattern={"layers.1.self_attn.q_proj": 6},
        alpha_pattern={"v_proj": 3},
        use_rslora=True,
        modules_to_save=["classifier"],
    )
    model = get_peft_model(Model(), config)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_" in name:
                parameter.copy_(torch.randn_like(parameter))
    model.save_pretrained(tmp_path / "peft")
    expected = {}
    for module in SHAPES:
        layer = model.base_model.model.get_submodule(module)
        expected[module] = layer.get_delta_weight("default").detach()

    adapter = load_adapter(tmp_path / "peft")
    assert sorted(adapter.modules) == sorted(SHAPES)
    assert adapter.modules[Q1].rank == 6 and adapter.modules[Q0].rank == 4
    assert adapter.modules[Q1].scale == pytest.approx(8 / math.sqrt(6))
    assert adapter.modules[V0].scale == pytest.approx(3 / 2)
    for module in SHAPES:
        torch.testing.assert_close(adapter.modules[module].delta(), expected[module], rtol=1e-5, atol=1e-6)
    # the saved head (modules_to_save) is kept aside, not merged
    assert adapter.other_tensors and all("classifier" in key for key in adapter.other_tensors)

    # the in-memory state dict carries the adapter name (`lora_A.default.weight`): same result
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items() if "lora_" in k}
    assert all(".default.weight" in key for key in state)
    (tmp_path / "raw").mkdir()
    save_file(state, tmp_path / "raw" / "adapter_model.safetensors")
    (tmp_path / "raw" / "adapter_config.json").write_text((tmp_path / "peft" / "adapter_config.json").read_text())
    raw = load_adapter(tmp_path / "raw")
    for module in SHAPES:
        torch.testing.assert_close(raw.modules[module].delta(), expected[module], rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------------------------- adapter sets


def test_heterogeneous_ranks_load_into_one_adapter_set(tmp_path: Path) -> None:
    paths = random_adapter_dirs(tmp_path, n=3, ranks=(2, 4, 6))
    adapter_set = load_adapters(paths)
    assert len(adapter_set) == 3
    assert adapter_set.task_names == ["task0", "task1", "task2"]
    assert adapter_set.modules == sorted(SHAPES)
    for module, stack in adapter_set.stacks.items():
        assert stack.name == module
        assert stack.tasks == (0, 1, 2)
        assert stack.ranks == (2, 4, 6)
        assert stack.shape == SHAPES[module]
        for position, adapter in enumerate(adapter_set.adapters):
            lora = adapter.modules[module]
            assert lora.scale == pytest.approx(2.0)  # lora_alpha = 2r in every adapter
            # the scale is folded into B: the stack's ΔW is the adapter's scale·B·A
            torch.testing.assert_close(stack.delta(position), lora.delta())
            torch.testing.assert_close(stack.B[position], 2.0 * lora.B)
            torch.testing.assert_close(stack.A[position], lora.A, rtol=0, atol=0)


def test_module_in_only_some_adapters_is_stacked_over_those_tasks(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(5)
    everything = random_factors(generator, SHAPES, 4)
    without_v1 = {m: p for m, p in random_factors(generator, SHAPES, 2).items() if m != V1}
    only_v1_q0 = random_factors(generator, {V1: SHAPES[V1], Q0: SHAPES[Q0]}, 6)
    paths = [
        write_adapter(tmp_path / "all", everything),
        write_adapter(tmp_path / "no_v1", without_v1),
        write_adapter(tmp_path / "v1_q0", only_v1_q0),
    ]
    adapter_set = load_adapters(paths)
    assert adapter_set.modules == sorted(SHAPES)
    expected_tasks = {Q0: (0, 1, 2), V0: (0, 1), Q1: (0, 1), V1: (0, 2)}
    for module, tasks in expected_tasks.items():
        stack = adapter_set.stacks[module]
        assert stack.tasks == tasks, module
        assert stack.ranks == tuple((4, 2, 6)[t] for t in tasks)
        for position, task in enumerate(tasks):
            torch.testing.assert_close(stack.delta(position), adapter_set.adapters[task].modules[module].delta())


def test_module_in_a_single_adapter_is_kept(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(6)
    paths = [
        write_adapter(tmp_path / "a", random_factors(generator, {Q0: SHAPES[Q0]}, 4)),
        write_adapter(tmp_path / "b", random_factors(generator, {Q0: SHAPES[Q0], V1: SHAPES[V1]}, 4)),
    ]
    adapter_set = load_adapters(paths)
    assert adapter_set.modules == sorted([Q0, V1])
    assert adapter_set.stacks[V1].tasks == (1,)
    assert adapter_set.stacks[Q0].tasks == (0, 1)


# --------------------------------------------------------------------------------------------- file formats


@pytest.mark.parametrize("adapter_name", [None, "default"])
def test_pickled_bin_loads_like_safetensors(tmp_path: Path, adapter_name: str | None) -> None:
    factors = _factors(seed=7)
    config = {"lora_alpha": 5}
    from_safetensors = load_adapter(write_adapter(tmp_path / "st", factors, config, adapter_name=adapter_name))
    from_pickle = load_adapter(
        write_adapter(tmp_path / "pt", factors, config, adapter_name=adapter_name, pickle_weights=True)
    )
    assert not (tmp_path / "pt" / "adapter_model.safetensors").exists()
    assert from_pickle.weights_file == tmp_path / "pt" / "adapter_model.bin"
    assert "adapter_model.bin" in from_pickle.sha256
    assert from_pickle.modules.keys() == from_safetensors.modules.keys() == SHAPES.keys()
    for module in SHAPES:
        left, right = from_pickle.modules[module], from_safetensors.modules[module]
        assert left.scale == right.scale == pytest.approx(5 / 4)
        torch.testing.assert_close(left.A, right.A, rtol=0, atol=0)
        torch.testing.assert_close(left.B, right.B, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("pickle_weights", [False, True])
def test_factors_are_converted_to_float32(tmp_path: Path, dtype: torch.dtype, pickle_weights: bool) -> None:
    factors = {m: (A.to(dtype), B.to(dtype)) for m, (A, B) in _factors(seed=8).items()}
    adapter = load_adapter(write_adapter(tmp_path / "a", factors, pickle_weights=pickle_weights))
    for module, (A, B) in factors.items():
        lora = adapter.modules[module]
        assert lora.A.dtype == lora.B.dtype == torch.float32
        torch.testing.assert_close(lora.A, A.float(), rtol=0, atol=0)
        torch.testing.assert_close(lora.B, B.float(), rtol=0, atol=0)
        assert lora.delta().dtype == torch.float32
    adapter_set = load_adapters([tmp_path / "a", tmp_path / "a"])
    for stack in adapter_set.stacks.values():
        assert all(t.dtype == torch.float32 for t in (*stack.A, *stack.B))


def _write_with_extra(folder: Path, factors, extra: dict[str, torch.Tensor], config: dict | None = None) -> Path:
    folder.mkdir(parents=True)
    state = dict(extra)
    for module, (A, B) in factors.items():
        state[f"base_model.model.{module}.lora_A.weight"] = A
        state[f"base_model.model.{module}.lora_B.weight"] = B
    save_file(state, folder / "adapter_model.safetensors")
    (folder / "adapter_config.json").write_text(
        json.dumps({"peft_type": "LORA", "r": 4, "lora_alpha": 8, **(config or {})})
    )
    return folder


def test_non_lora_tensors_are_kept_aside_and_not_merged(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(9)
    heads = [
        {
            "base_model.model.classifier.weight": torch.randn(3, 24, generator=generator),
            "base_model.model.classifier.bias": torch.randn(3, generator=generator),
            "base_model.model.classifier.modules_to_save.default.weight": torch.randn(3, 24, generator=generator),
        }
        for _ in range(2)
    ]
    paths = [_write_with_extra(tmp_path / f"t{i}", random_factors(generator, SHAPES, 4), heads[i]) for i in range(2)]
    adapter = load_adapter(paths[0])
    assert adapter.other_tensors.keys() == heads[0].keys()
    for key, tensor in heads[0].items():
        torch.testing.assert_close(adapter.other_tensors[key], tensor, rtol=0, atol=0)
    assert sorted(adapter.modules) == sorted(SHAPES)

    adapter_set = load_adapters(paths)
    assert adapter_set.modules == sorted(SHAPES)
    merged = merge(adapter_set, "ta")
    assert sorted(merged) == sorted(SHAPES)
    for module, update in merged.items():
        expected = sum(a.modules[module].delta() for a in adapter_set.adapters)
        torch.testing.assert_close(update.dense(), expected, rtol=1e-5, atol=1e-5)
