"""GPU out of memory during evaluation: a batch that runs out is retried at half the size (down to one example),
later batches keep the reduced size, the log says so, the CUDA cache is emptied on CUDA, and the predictions are
those of a run without the fault.

The tests run on the CPU, so the fault is injected: the model's forward raises torch's OutOfMemoryError, as the CUDA
allocator does, while its batch is larger than a "GPU memory" limit."""

from __future__ import annotations

import logging

import pytest
import torch

from loramerge.repro.jobs import job_log
from loramerge.repro.suites import batches
from loramerge.repro.suites.batches import DeviceMemoryError, is_out_of_memory, run_in_batches
from loramerge.repro.suites.clip.model import build_backbone
from loramerge.repro.suites.clip.suite import ClipVisionModel
from loramerge.repro.suites.evaluation import EvalTask, evaluate
from loramerge.repro.suites.text.runtime import LlamaClassifierModel

TINY_CLIP = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}
TINY_CLIP |= {"image_size": 16, "patch_size": 8, "projection_dim": 16}


@pytest.fixture(autouse=True)
def fresh_batch_memory(monkeypatch):
    """Each test starts with no device known to have run out of memory (the sizes are remembered per process)."""
    monkeypatch.setattr(batches, "_FITTING_BATCH_SIZE", {})


def out_of_memory() -> torch.OutOfMemoryError:
    return torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 0 bytes free)")


class MemoryLimit:
    """Wraps a model's forward: a batch larger than `rows` raises torch's OutOfMemoryError (for the first
    `failures` such batches; every one when None); records every batch size that ran."""

    def __init__(self, model: torch.nn.Module, batch_argument: str, rows: int, failures: int | None = None) -> None:
        self.sizes: list[int] = []
        self.failed = 0
        original = model.forward

        def forward(*args, **kwargs):
            size = len(kwargs[batch_argument])
            if size > rows and (failures is None or self.failed < failures):
                self.failed += 1
                raise out_of_memory()
            self.sizes.append(size)
            return original(*args, **kwargs)

        model.forward = forward


def clip_tasks(seed: int = 0) -> list[EvalTask]:
    generator = torch.Generator().manual_seed(seed)
    tasks = []
    for name, count in (("shapes", 37), ("digits", 23)):
        images = torch.randint(0, 256, (count, 3, 16, 16), dtype=torch.uint8, generator=generator)
        labels = torch.randint(0, 4, (count,), generator=generator)
        head = torch.nn.functional.normalize(torch.randn(4, 16, generator=generator), dim=-1)
        tasks.append(EvalTask(name, "test", images, labels, head))
    return tasks


def a_clip_update(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    module = "vision_model.encoder.layers.0.self_attn.q_proj"
    return {module: 0.1 * torch.randn(model.get_submodule(module).weight.shape, generator=generator)}


def test_an_out_of_memory_batch_is_retried_smaller_with_the_same_predictions(caplog):
    model, tasks = build_backbone(TINY_CLIP, seed=0), clip_tasks()
    update = a_clip_update(model)
    expected = evaluate(ClipVisionModel, model, tasks, [0.5, 1.0], update, batch_size=16)
    limit = MemoryLimit(model, "pixel_values", rows=4, failures=2)  # 16 and 8 run out once each
    with caplog.at_level(logging.WARNING, logger="loramerge"):
        records = evaluate(ClipVisionModel, model, tasks, [0.5, 1.0], update, batch_size=16)
    assert records == expected
    assert [record.getMessage() for record in caplog.records] == [
        "out of memory at batch size 16 on cpu; retrying with 8",
        "out of memory at batch size 8 on cpu; retrying with 4",
    ]
    # once 4 fitted, every later batch (the rest of this task, the next task, the next λ) stays at 4
    assert limit.failed == 2 and max(limit.sizes) == 4 and sum(limit.sizes) == 2 * (37 + 23)


def test_text_batches_are_retried_smaller_with_the_same_features():
    from transformers import LlamaConfig, LlamaForSequenceClassification

    config = LlamaConfig(
        vocab_size=40,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        num_labels=3,
        pad_token_id=1,
    )
    torch.manual_seed(0)
    model = LlamaForSequenceClassification(config).eval()
    generator = torch.Generator().manual_seed(1)
    tokens = torch.full((19, 12), -1, dtype=torch.int32)
    for row, length in enumerate(torch.randint(1, 13, (19,), generator=generator).tolist()):
        tokens[row, :length] = torch.randint(2, 40, (length,), generator=generator, dtype=torch.int32)
    expected = LlamaClassifierModel.encode(model, tokens, batch_size=8, device="cpu")
    limit = MemoryLimit(model.model, "input_ids", rows=2, failures=None)
    features = LlamaClassifierModel.encode(model, tokens, batch_size=8, device="cpu")
    assert limit.failed == 2 and max(limit.sizes) == 2
    assert torch.allclose(features, expected, atol=1e-6)  # same rows, other batch shapes: rounding may differ
    assert torch.equal(features.argmax(dim=1), expected.argmax(dim=1))


def test_the_retry_is_in_the_job_log(tmp_path):
    def run_batch(start: int, stop: int) -> None:
        if stop - start > 2:
            raise out_of_memory()

    log_path = tmp_path / "evaluate_merged.log"
    with job_log(log_path):
        run_in_batches(6, 4, run_batch, "cpu")
    logging.getLogger("loramerge.repro").warning("after the job")  # the job's handler is gone with its file
    lines = log_path.read_text().splitlines()
    assert [line.split(" ", 1)[1] for line in lines[:-1]] == ["out of memory at batch size 4 on cpu; retrying with 2"]
    assert lines[-1].split(" ", 1)[1].startswith("done in")


def test_the_cuda_cache_is_emptied_before_the_retry(monkeypatch):
    emptied = []
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(True))
    done: list[tuple[int, int]] = []

    def run_batch(start: int, stop: int) -> None:
        if stop - start > 3:
            raise out_of_memory()
        done.append((start, stop))

    run_in_batches(10, 8, run_batch, "cuda:0")
    assert emptied == [True, True]  # 8 and 4 ran out
    assert done == [(0, 2), (2, 4), (4, 6), (6, 8), (8, 10)]
    assert batches._FITTING_BATCH_SIZE == {"cuda:0": 2}


def test_out_of_memory_at_batch_size_one_is_an_error_naming_the_device(caplog):
    def run_batch(start: int, stop: int) -> None:
        raise out_of_memory()

    with caplog.at_level(logging.WARNING, logger="loramerge"), pytest.raises(DeviceMemoryError) as caught:
        run_in_batches(5, 4, run_batch, "cpu")
    assert str(caught.value).startswith("cpu: out of memory at batch size 1")
    assert isinstance(caught.value.__cause__, torch.OutOfMemoryError)
    assert [record.getMessage().rsplit("; ", 1)[1] for record in caplog.records] == [
        "retrying with 2",
        "retrying with 1",
    ]


def test_other_errors_are_not_retried():
    calls = []

    def run_batch(start: int, stop: int) -> None:
        calls.append(stop - start)
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        run_in_batches(5, 4, run_batch, "cpu")
    assert calls == [4]


def test_out_of_memory_detection():
    assert is_out_of_memory(out_of_memory())
    assert is_out_of_memory(RuntimeError("MPS backend out of memory (MPS allocated: 1 GB)"))
    assert is_out_of_memory(RuntimeError("CUDA error: out of memory"))
    assert not is_out_of_memory(RuntimeError("expected scalar type Half but found Float"))
    assert not is_out_of_memory(ValueError("out of memory"))  # not what a device raises
