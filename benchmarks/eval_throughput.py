"""Images per second of the merged-model evaluation: cached uint8 crops normalized on the device (ours) against the
KnOTS route (PIL image -> CLIPImageProcessor one image at a time, batch 32), on the same ViT-B/32-shaped model.

The model is built from a config with random weights (no hub access needed): throughput does not depend on the
weights. On a GPU both routes run under fp16 autocast, as the per-task protocol does; `--fp32` measures the joint
protocol's precision. Run on a GPU node:

    python benchmarks/eval_throughput.py --device cuda --images 8192 --batch-size 512
    python benchmarks/eval_throughput.py --quick        # CPU smoke run, tiny sizes
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import CLIPImageProcessorPil

sys.path.insert(0, str(Path(__file__).parent))
from _common import fmt_s, print_header, table

from loramerge.repro.suites.clip.model import encode

VIT_B32 = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "image_size": 224,
    "patch_size": 32,
    "projection_dim": 512,
}
KNOTS_BATCH = 32


def _model(config: dict, device: str) -> torch.nn.Module:
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    return CLIPVisionModelWithProjection(CLIPVisionConfig(**config)).to(device).eval()


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def cached_route(model: torch.nn.Module, crops: torch.Tensor, batch_size: int, device: str, fp16: bool) -> float:
    """Seconds to encode uint8 crops already in host memory: transfer, normalize and encode on the device."""
    encode(model, crops[:batch_size], batch_size, device, fp16=fp16)  # warm-up (kernels, allocator)
    _sync(device)
    start = time.perf_counter()
    encode(model, crops, batch_size, device, fp16=fp16)
    _sync(device)
    return time.perf_counter() - start


def knots_route(
    model: torch.nn.Module, images: list[Image.Image], processor: CLIPImageProcessorPil, device: str, fp16: bool
) -> float:
    """Seconds for the KnOTS loader: every PIL image through CLIPImageProcessor alone, batches of 32 on the device."""
    autocast = torch.autocast("cuda", dtype=torch.float16, enabled=fp16 and device.startswith("cuda"))
    _sync(device)
    start = time.perf_counter()
    with torch.inference_mode(), autocast:
        for first in range(0, len(images), KNOTS_BATCH):
            pixels = [
                processor(images=image, return_tensors="pt")["pixel_values"]
                for image in images[first : first + KNOTS_BATCH]
            ]
            model(pixel_values=torch.cat(pixels).to(device)).image_embeds.float().cpu()
    _sync(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--images", type=int, default=4096, help="images per route")
    parser.add_argument("--batch-size", type=int, default=512, help="batch size of the cached route")
    parser.add_argument("--fp32", action="store_true", help="no fp16 autocast (the joint protocol)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="CPU smoke run: 64 images, batch 32")
    args = parser.parse_args()
    if args.quick:
        args.images, args.batch_size = 64, 32
    if args.threads:
        torch.set_num_threads(args.threads)
    print_header("merged-model evaluation throughput (ViT-B/32 shape, random weights)", args.threads)
    print(f"device {args.device}, {args.images} images, cached-route batch {args.batch_size}, fp16 {not args.fp32}")
    rng = np.random.default_rng(0)
    # source images of typical dataset sizes (short side above 224), so the KnOTS route resizes and crops
    images = [Image.fromarray(rng.integers(0, 256, (256, 320, 3), dtype=np.uint8)) for _ in range(args.images)]
    processor = CLIPImageProcessorPil(size={"shortest_edge": 224}, crop_size=224)
    cropper = CLIPImageProcessorPil(size={"shortest_edge": 224}, crop_size=224, do_rescale=False, do_normalize=False)
    crops = torch.cat([cropper(images=image, return_tensors="pt")["pixel_values"] for image in images]).to(torch.uint8)
    model = _model(VIT_B32, args.device)
    fp16 = not args.fp32
    ours = cached_route(model, crops, args.batch_size, args.device, fp16)
    theirs = knots_route(model, images, processor, args.device, fp16)
    rows = [
        ["KnOTS route (PIL + processor per image, batch 32)", fmt_s(theirs), f"{args.images / theirs:,.0f}"],
        [f"cached uint8 crops (batch {args.batch_size})", fmt_s(ours), f"{args.images / ours:,.0f}"],
    ]
    print(table(rows, ["route", "time", "images/s"]))
    print(f"speed-up of the cached route: {theirs / ours:.1f}x")


if __name__ == "__main__":
    main()
