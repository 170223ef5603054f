"""GPU readiness of the Llama-3-8B × 6 NLI suite, on random weights (no download): what one merged-model evaluation
costs and whether it fits.

On a random-weight `LlamaForSequenceClassification` of Llama-3-8B's shapes, built on the device itself (no host copy
of its 8 B parameters):
  - apply and undo of a rank-96 merged update on the 128 attention matrices (q, k, v, o_proj × 32 layers) with
    `loramerge.apply.updated`, the update held in host memory as the evaluation holds it (and, on a GPU, on the
    device), and whether the weights come back bit for bit;
  - forward throughput (real tokens/s) of the suite's own encoder (`loramerge.repro.suites.text.model.encode`:
    length-sorted batches, right padding, attention masks, last-token pooling) on NLI-length inputs, in float32 and
    bfloat16, inside the applied update as the evaluation runs it, and the peak GPU memory of each dtype;
then CLIP ViT-B/32 images/s under fp16 autocast (the vision suites' per-task protocol), and the seconds one
merged-model evaluation (one setting at one λ: validation + test of the 6 NLI tasks) takes in each dtype, from the
fastest batch size's tokens/s and `--tokens-per-example` (default 80). Tokens/s changes little with the length while
the matrix products dominate, but small batches of short inputs can leave the GPU idle: `--lengths LOW HIGH` measures
at other lengths.

    python benchmarks/gpu_check.py                       # one GPU, full sizes (a few minutes on an H200)
    python benchmarks/gpu_check.py --quick --device cpu  # smoke run with tiny shapes (seconds)
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from _common import GB, fmt_s, print_header

from loramerge.apply import updated
from loramerge.repro.splits import pad_sequences, sequence_lengths
from loramerge.repro.suites.clip.model import encode as encode_images
from loramerge.repro.suites.text.model import encode as encode_tokens

LLAMA3_8B: dict[str, Any] = {
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "vocab_size": 128256,
    "rope_theta": 500000.0,
    "max_position_embeddings": 8192,
    "rms_norm_eps": 1e-5,
    "num_labels": 3,
    "bos_token_id": 128000,
    "eos_token_id": 128001,
    "pad_token_id": 128001,
}
# Grouped-query attention (2 KV heads) kept, so k/v_proj stay narrower than q/o_proj as in the real model.
TINY_LLAMA = {
    **LLAMA3_8B,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 512,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "pad_token_id": 2,
}
VIT_B32 = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "image_size": 224,
    "patch_size": 32,
    "projection_dim": 512,
}
TINY_VIT = {**VIT_B32, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4}
ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
# (test, validation) examples of each task, both of which every merged-model evaluation scores.
NLI_EXAMPLES = {
    "snli": (9824, 9842),
    "mnli": (7852, 1963),
    "sick": (4906, 495),
    "qnli": (4370, 1093),
    "rte": (138, 139),
    "scitail": (2126, 1304),
}
UPDATE_SCALE = 0.5  # any λ: the cost of an apply does not depend on it


@dataclass(frozen=True)
class Sizes:
    llama: Mapping[str, Any]
    rank: int  # of the merged update
    examples: int  # per forward measurement
    batch_sizes: tuple[int, ...]
    lengths: tuple[int, int]  # tokens per example, drawn uniformly in [low, high]
    vit: Mapping[str, Any]
    images: int
    image_batch: int


FULL = Sizes(LLAMA3_8B, 96, 768, (16, 64), (60, 120), VIT_B32, 8192, 512)
QUICK = Sizes(TINY_LLAMA, 8, 24, (4, 8), (12, 24), TINY_VIT, 16, 8)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build_llama(config: Mapping[str, Any], device: torch.device) -> torch.nn.Module:
    """The random-weight classifier, its parameters created and initialised on `device` (float32)."""
    from transformers import LlamaConfig, LlamaForSequenceClassification

    torch.manual_seed(0)
    with device:  # the default device: no host copy of the weights, initialised by kernels on the device
        model = LlamaForSequenceClassification(LlamaConfig(**config))
    return model.eval()


def attention_update(model: torch.nn.Module, rank: int, device: torch.device) -> dict[str, torch.Tensor]:
    """A dense float32 rank-`rank` ΔW = B·A (O × I) for every attention projection, by module path, as a merge's."""
    generator = torch.Generator(device).manual_seed(1)
    update = {}
    for path, module in model.named_modules():
        if path.rsplit(".", 1)[-1] in ATTENTION:
            out_features, in_features = module.weight.shape
            B = torch.randn(out_features, rank, generator=generator, device=device) / rank**0.5
            A = torch.randn(rank, in_features, generator=generator, device=device) * 1e-3  # entries ~1e-3
            update[path] = B @ A
    return update


def attention_weights(model: torch.nn.Module, update: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {path: model.get_submodule(path).weight for path in update}


def host_copy(weights: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # kept in host memory so that the check adds nothing to the GPU memory peak it sits beside
    return {path: weight.detach().to("cpu", copy=True) for path, weight in weights.items()}


def restored(weights: Mapping[str, torch.Tensor], reference: Mapping[str, torch.Tensor]) -> bool:
    return all(torch.equal(weight.detach().cpu(), reference[path]) for path, weight in weights.items())


@dataclass
class ApplyTiming:
    apply_s: float
    undo_s: float
    changed: bool  # the update was on inside the block
    restored: bool  # bit for bit after it
    forward: dict[int, float]  # batch size -> seconds of the timed encode inside the block


def apply_and_measure(
    model: torch.nn.Module,
    update: Mapping[str, torch.Tensor],
    reference: Mapping[str, torch.Tensor],
    device: torch.device,
    tokens: torch.Tensor | None = None,
    batch_sizes: tuple[int, ...] = (),
) -> ApplyTiming:
    """Apply the update, encode `tokens` at each batch size inside the block as the evaluation does, undo it."""
    weights = attention_weights(model, update)
    probe = next(iter(update))
    forward = {}
    sync(device)
    start = time.perf_counter()
    with updated(model, update, UPDATE_SCALE):
        sync(device)
        applied_at = time.perf_counter()
        changed = not torch.equal(weights[probe].detach().cpu(), reference[probe])
        for batch_size in batch_sizes:
            forward[batch_size] = time_encode(model, tokens, batch_size, device)
        sync(device)
        undo_from = time.perf_counter()
    sync(device)
    undone_at = time.perf_counter()
    return ApplyTiming(applied_at - start, undone_at - undo_from, changed, restored(weights, reference), forward)


def nli_tokens(sizes: Sizes, vocab_size: int) -> torch.Tensor:
    """`examples` random token sequences of NLI-like lengths, PAD_ID-padded on the right as the suite stores them."""
    generator = torch.Generator().manual_seed(2)
    low, high = sizes.lengths
    lengths = torch.randint(low, high + 1, (sizes.examples,), generator=generator)
    return pad_sequences([torch.randint(0, vocab_size, (int(n),), generator=generator).tolist() for n in lengths])


def time_encode(model: torch.nn.Module, tokens: torch.Tensor, batch_size: int, device: torch.device) -> float:
    encode_tokens(model, tokens[:batch_size], batch_size, device)  # warm-up: kernels, allocator
    sync(device)
    start = time.perf_counter()
    encode_tokens(model, tokens, batch_size, device)
    sync(device)
    return time.perf_counter() - start


def gpu_peak(device: torch.device) -> str:
    if device.type != "cuda":
        return f"n/a on {device.type}"
    return f"{torch.cuda.max_memory_allocated(device) / GB:.1f} GB"


def reset_peak(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def parameter_bytes(model: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def apply_line(label: str, timing: ApplyTiming) -> str:
    return (
        f"apply/undo {label}: apply {fmt_s(timing.apply_s)} s, undo {fmt_s(timing.undo_s)} s, "
        f"changed inside: {'yes' if timing.changed else 'NO'}, restored bit-exactly: "
        f"{'yes' if timing.restored else 'NO'}"
    )


@dataclass(frozen=True)
class EvaluationRate:
    tokens_per_s: float  # at the fastest batch size measured
    batch_size: int
    apply_s: float  # apply + undo of the host-held update, once per λ


def measure_dtype(
    model: torch.nn.Module,
    dtype: str,
    update: Mapping[str, torch.Tensor],
    tokens: torch.Tensor,
    sizes: Sizes,
    device: torch.device,
) -> EvaluationRate:
    """Print the dtype's figures and return what one merged-model evaluation in it costs."""
    reference = host_copy(attention_weights(model, update))
    if device.type == "cuda":  # what moving the update to the GPU once per job would save
        on_device = {path: delta.to(device) for path, delta in update.items()}
        print(apply_line(f"{dtype}, update on the device", apply_and_measure(model, on_device, reference, device)))
        del on_device
    reset_peak(device)  # the peak of the evaluation's own path: host-held update, forwards inside the block
    timing = apply_and_measure(model, update, reference, device, tokens, sizes.batch_sizes)
    print(apply_line(f"{dtype}, update in host memory (as the evaluation holds it)", timing))
    real_tokens = int(sequence_lengths(tokens).sum())
    rates = {batch_size: real_tokens / seconds for batch_size, seconds in timing.forward.items()}
    for batch_size, rate in rates.items():
        print(
            f"forward {dtype} batch {batch_size}: {rate:,.0f} tokens/s ({len(tokens) * rate / real_tokens:,.1f} "
            f"examples/s; {len(tokens)} examples, {real_tokens / len(tokens):.1f} tokens each on average)"
        )
    weights_gb = parameter_bytes(model) / GB
    print(f"peak GPU memory {dtype}: {gpu_peak(device)} (weights {weights_gb:.2f} GB)")
    fastest = max(rates, key=rates.__getitem__)
    return EvaluationRate(rates[fastest], fastest, timing.apply_s + timing.undo_s)


def clip_images_per_second(sizes: Sizes, device: torch.device) -> float:
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    with device:
        model = CLIPVisionModelWithProjection(CLIPVisionConfig(**sizes.vit)).eval()
    side = sizes.vit["image_size"]
    # uint8 crops in host memory, as the vision suites prepare them; made on the device, where it is quick
    crops = torch.randint(0, 256, (sizes.images, 3, side, side), dtype=torch.uint8, device=device).cpu()
    encode_images(model, crops[: sizes.image_batch], sizes.image_batch, device)  # warm-up
    sync(device)
    start = time.perf_counter()
    encode_images(model, crops, sizes.image_batch, device)
    sync(device)
    return sizes.images / (time.perf_counter() - start)


def print_costs(rates: Mapping[str, EvaluationRate], tokens_per_example: float) -> None:
    """The formula's inputs, then seconds per merged-model evaluation (one setting at one λ) per dtype."""
    examples = sum(test + val for test, val in NLI_EXAMPLES.values())
    tokens = examples * tokens_per_example
    split_sizes = ", ".join(f"{task} {test}+{val}" for task, (test, val) in NLI_EXAMPLES.items())
    throughputs = ", ".join(
        f"{dtype} {rate.tokens_per_s:,.0f} tokens/s (batch {rate.batch_size})" for dtype, rate in rates.items()
    )
    print(
        f"cost inputs: {examples:,} examples per evaluation (test+val: {split_sizes}) × {tokens_per_example:g} "
        f"tokens = {tokens / 1e6:.2f} M tokens; {throughputs}"
    )
    for dtype, rate in rates.items():
        print(
            f"seconds per merged-model evaluation {dtype}: {tokens / rate.tokens_per_s + rate.apply_s:,.1f} "
            f"(= {tokens / 1e6:.2f} M tokens / {rate.tokens_per_s:,.0f} tokens/s + apply/undo {fmt_s(rate.apply_s)} s)"
        )


def llama_figures(sizes: Sizes, device: torch.device, label: str) -> dict[str, EvaluationRate]:
    """Print the Llama figures; return what one merged-model evaluation costs in each dtype."""
    build_start = time.perf_counter()
    model = build_llama(sizes.llama, device)
    sync(device)
    parameters = sum(p.numel() for p in model.parameters())
    print(
        f"model: {label} classifier, {parameters:,} parameters, "
        f"built on {device} in {fmt_s(time.perf_counter() - build_start)} s"
    )
    # the merged update as `load_update` hands it to the evaluation: dense float32 in host memory
    update = {path: delta.cpu() for path, delta in attention_update(model, sizes.rank, device).items()}
    update_gb = sum(delta.numel() * delta.element_size() for delta in update.values()) / GB
    print(f"update: rank {sizes.rank} on {len(update)} attention matrices, {update_gb:.2f} GB float32 in host memory")
    tokens = nli_tokens(sizes, sizes.llama["vocab_size"])
    rates = {}
    for dtype, torch_dtype in DTYPES.items():
        model.to(torch_dtype)
        rates[dtype] = measure_dtype(model, dtype, update, tokens, sizes, device)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="torch device (default cuda)")
    parser.add_argument("--quick", action="store_true", help="tiny shapes and few inputs: a smoke run, CPU included")
    parser.add_argument(
        "--tokens-per-example", type=float, default=80.0, help="average tokens per NLI example for the cost estimate"
    )
    parser.add_argument(
        "--lengths",
        type=int,
        nargs=2,
        metavar=("LOW", "HIGH"),
        default=None,
        help="tokens per forward example, drawn uniformly in [LOW, HIGH] (default 60 120; --quick 12 24)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA device here; for a smoke run use --quick --device cpu")
    if device.type == "cuda" and device.index is None:
        # the parameters report cuda:<n>; an index-less device would not compare equal and the encoder moves the model
        device = torch.device("cuda", torch.cuda.current_device())
    sizes, tiny = (QUICK, " (tiny)") if args.quick else (FULL, "")
    if args.lengths is not None:
        if not 1 <= args.lengths[0] <= args.lengths[1]:
            parser.error("--lengths needs 1 <= LOW <= HIGH")
        sizes = dataclasses.replace(sizes, lengths=tuple(args.lengths))
    started = time.perf_counter()
    print_header(
        "GPU readiness: Llama-3-8B × 6 NLI tasks, CLIP ViT-B/32" + (" (--quick)" if args.quick else ""), args.threads
    )
    if device.type == "cuda":
        print(f"device: {torch.cuda.get_device_name(device)}, float32 matmul {torch.get_float32_matmul_precision()}")
    rates = llama_figures(sizes, device, f"Llama-3-8B-shaped{tiny}")
    reset_peak(device)  # the Llama model is gone
    precision = "fp16 autocast" if device.type == "cuda" else f"float32 (no autocast on {device.type})"
    images_per_s = clip_images_per_second(sizes, device)
    print(f"CLIP ViT-B/32{tiny} {precision} batch {sizes.image_batch}: {images_per_s:,.0f} images/s")
    print_costs(rates, args.tokens_per_example)
    print(f"total: {fmt_s(time.perf_counter() - started)} s")


if __name__ == "__main__":
    main()
