"""loramerge.apply on a small torch module: W0 + λ·ΔW in place, restored bit for bit, refused before any change."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from loramerge.apply import UpdateError, apply_update, load_update, resolve_weights, updated


class Tower(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3))
        self.norm = torch.nn.LayerNorm(3)


class Wrapper(torch.nn.Module):
    """A model whose tower sits under `tower.`, as a CLIP vision tower sits under `vision_model.`."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.tower = Tower()


def _update() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return {"encoder.0": torch.randn(4, 5, generator=generator), "encoder.2": torch.randn(3, 4, generator=generator)}


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.clone() for name, tensor in model.state_dict().items()}


def _same(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(state[name], tensor) for name, tensor in model.state_dict().items())


def test_updated_sets_w0_plus_scaled_delta_and_restores_exactly_after_several_scales():
    model, update = Wrapper(), _update()
    original = _state(model)
    for scale in (0.1, 0.37, 1.9, -0.3, 1e-7):
        with updated(model, update, scale, prefixes=("tower.",)):
            for module, delta in update.items():
                expected = original[f"tower.{module}.weight"] + scale * delta
                torch.testing.assert_close(model.get_submodule(f"tower.{module}").weight, expected)
        assert _same(model, original)


def test_weights_are_restored_when_the_block_raises():
    model, update = Wrapper(), _update()
    original = _state(model)
    with pytest.raises(RuntimeError, match="inside"), updated(model, update, 0.7, prefixes=("tower.",)):
        raise RuntimeError("inside the block")
    assert _same(model, original)


def test_a_bad_module_is_refused_before_any_weight_changes():
    model = Wrapper()
    original = _state(model)
    update = {**_update(), "encoder.2": torch.ones(4, 4)}  # the first module is fine, the second has the wrong shape
    with pytest.raises(UpdateError, match=r"^encoder\.2: update has shape \(4, 4\) but the weight is \(3, 4\)"):
        apply_update(model, update, 1.0, prefixes=("tower.",))
    with pytest.raises(UpdateError, match=r"encoder\.2"), updated(model, update, 1.0, prefixes=("tower.",)):
        pass
    assert _same(model, original)
    with pytest.raises(UpdateError, match=r"^encoder\.9: no such module in the Wrapper"):
        apply_update(model, {"encoder.9": torch.ones(3, 4)}, prefixes=("tower.",))
    with pytest.raises(UpdateError, match="without a 2-D weight"):
        apply_update(model, {"norm": torch.ones(3, 3)}, prefixes=("tower.",))
    assert _same(model, original)


def test_prefixes_are_tried_in_order():
    model = Wrapper()
    tower_weight = model.get_submodule("tower.encoder.0").weight
    assert resolve_weights(model, {"encoder.0": torch.zeros(4, 5)}, ("", "tower."))["encoder.0"] is tower_weight
    assert resolve_weights(model, {"tower.encoder.0": torch.zeros(4, 5)})["tower.encoder.0"] is tower_weight
    with pytest.raises(UpdateError, match="no such module"):
        resolve_weights(model, {"encoder.0": torch.zeros(4, 5)})  # only the bare path by default


def test_load_update_reads_a_dense_folder_and_names_bad_folders(tmp_path):
    delta = torch.arange(6.0).reshape(2, 3)
    folder = tmp_path / "merged"
    folder.mkdir()
    save_file({"encoder.0.weight": delta}, folder / "delta.safetensors")
    update = load_update(folder)
    assert list(update) == ["encoder.0"] and torch.equal(update["encoder.0"], delta)
    with pytest.raises(UpdateError, match=f"^{tmp_path / 'absent'}: update folder does not exist"):
        load_update(tmp_path / "absent")
    (folder / "adapter_config.json").write_text("{}")
    with pytest.raises(UpdateError, match="holds both"):
        load_update(folder)
