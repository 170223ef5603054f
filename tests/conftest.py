"""Random peft-format adapters written to disk, the way every test builds its inputs (no network); and the reduced
demo's two clean runs, made once per session for the workflow tests that read, copy or compare against them."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from workflow_runner import SMOKE_CONFIG, snakemake, workdir_with

from loramerge.adapters import AdapterSet, load_adapters

SHAPES = {  # module path -> (out, in): two blocks of an attention stack with a non-square projection
    "encoder.layers.0.self_attn.q_proj": (24, 20),
    "encoder.layers.0.self_attn.v_proj": (16, 20),
    "encoder.layers.1.self_attn.q_proj": (24, 20),
    "encoder.layers.1.self_attn.v_proj": (16, 20),
}


def write_adapter(
    folder: Path,
    factors: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
    config: Mapping | None = None,
    key_prefix: str = "base_model.model.",
    adapter_name: str | None = None,
    pickle_weights: bool = False,
) -> Path:
    """A peft LoRA folder: factors maps module path -> (A r×I, B O×r)."""
    folder.mkdir(parents=True, exist_ok=True)
    ranks = {a.shape[0] for a, _ in factors.values()}
    full_config = {"peft_type": "LORA", "r": max(ranks), "lora_alpha": 2 * max(ranks), "target_modules": None}
    full_config.update(config or {})
    infix = f".{adapter_name}" if adapter_name else ""
    state = {}
    for module, (A, B) in factors.items():
        state[f"{key_prefix}{module}.lora_A{infix}.weight"] = A.contiguous()
        state[f"{key_prefix}{module}.lora_B{infix}.weight"] = B.contiguous()
    if pickle_weights:
        torch.save(state, folder / "adapter_model.bin")
    else:
        save_file(state, folder / "adapter_model.safetensors")
    (folder / "adapter_config.json").write_text(json.dumps(full_config))
    return folder


def random_factors(
    generator: torch.Generator, shapes: Mapping[str, tuple[int, int]], rank: int, scale: float = 1.0
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    return {
        module: (
            torch.randn(rank, in_features, generator=generator) * scale,
            torch.randn(out_features, rank, generator=generator) * scale,
        )
        for module, (out_features, in_features) in shapes.items()
    }


def random_adapter_dirs(
    root: Path, n: int = 3, ranks: tuple[int, ...] | None = None, shapes=SHAPES, seed: int = 0
) -> list[Path]:
    """n adapters with ranks `ranks` (default 4 each) and lora_alpha = 2r, so each scale is 2."""
    generator = torch.Generator().manual_seed(seed)
    ranks = ranks or (4,) * n
    return [write_adapter(root / f"task{t}", random_factors(generator, shapes, ranks[t])) for t in range(n)]


@pytest.fixture
def adapter_dirs(tmp_path: Path) -> list[Path]:
    return random_adapter_dirs(tmp_path / "adapters")


@pytest.fixture
def adapters(adapter_dirs: list[Path]) -> AdapterSet:
    return load_adapters(adapter_dirs)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The folder is the lane: tests/workflow runs Snakemake end to end, tests/cluster starts SLURM."""
    for item in items:
        lane = Path(item.path).parent.name
        if lane == "workflow":
            item.add_marker(pytest.mark.workflow)
        elif lane == "cluster":
            item.add_marker(pytest.mark.slurm)


@pytest.fixture
def mixed_adapters(tmp_path: Path) -> AdapterSet:
    """Ranks 2, 4 and 6, and one module that the third adapter does not have."""
    generator = torch.Generator().manual_seed(7)
    dirs = []
    for task, rank in enumerate((2, 4, 6)):
        shapes = dict(SHAPES)
        if task == 2:
            shapes.pop("encoder.layers.1.self_attn.v_proj")
        dirs.append(write_adapter(tmp_path / f"task{task}", random_factors(generator, shapes, rank)))
    return load_adapters(dirs)


@pytest.fixture(scope="session")
def smoke_runs(tmp_path_factory) -> tuple[Path, Path]:
    """Two clean runs of the reduced demo in two working directories, the first on two cores, the second on one
    (jobs then run in another order, and alone)."""
    runs = []
    for name, cores in (("first", "2"), ("second", "1")):
        workdir = workdir_with(tmp_path_factory.mktemp(name), SMOKE_CONFIG)
        snakemake(workdir, "--cores", cores)
        runs.append(workdir)
    return runs[0], runs[1]
