"""Shared helpers of the benchmark scripts: synthetic in-memory adapters, machine description, memory meters."""

from __future__ import annotations

import os
import platform
import resource
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from loramerge.adapters import AdapterSet, LoraAdapter, LoraModule, stack_adapters

GB = 10**9  # sizes are reported in decimal gigabytes

VIT_LAYERS = 12  # ViT-B/32: 12 blocks × {q, k, v, out}_proj, each 768 × 768 -> 48 matrices
VIT_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "out_proj")
VIT_WIDTH = 768

LLAMA_LAYERS = 32  # Llama-3-8B: 32 blocks; q/o 4096 × 4096, k/v (GQA, 8 KV heads) 1024 × 4096 (out × in)
LLAMA_SHAPES = {"q_proj": (4096, 4096), "k_proj": (1024, 4096), "v_proj": (1024, 4096), "o_proj": (4096, 4096)}


def vit_shapes(matrices: int = VIT_LAYERS * len(VIT_PROJECTIONS)) -> dict[str, tuple[int, int]]:
    """The first `matrices` attention projections of ViT-B/32 (layer-major), name -> (out, in)."""
    names = [
        f"vision_model.encoder.layers.{layer}.self_attn.{proj}"
        for layer in range(VIT_LAYERS)
        for proj in VIT_PROJECTIONS
    ]
    return {name: (VIT_WIDTH, VIT_WIDTH) for name in names[:matrices]}


def llama_name(layer: int, proj: str) -> str:
    return f"model.layers.{layer}.self_attn.{proj}"


def llama_shapes(layers: int = LLAMA_LAYERS) -> dict[str, tuple[int, int]]:
    """Attention projections of the first `layers` Llama-3-8B blocks, name -> (out, in)."""
    return {llama_name(layer, proj): shape for layer in range(layers) for proj, shape in LLAMA_SHAPES.items()}


def projection_of(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def make_adapters(shapes: dict[str, tuple[int, int]], tasks: int, rank: int, seed: int) -> AdapterSet:
    """`tasks` random rank-`rank` LoRA adapters over `shapes`, built in memory (no disk I/O), float32.

    A_t ~ N(0, 1/I) (r × I) and B_t ~ N(0, 1/O) (O × r), so ΔW_t = B_t·A_t has singular values of order 1, far
    above KnOTS's 1e-5 cut-off. Each (task, module) pair has its own seed, so a module's factors do not depend on
    how many other modules are built (the --quick subsets hold the same matrices as the full runs).
    """
    adapters = []
    for task in range(tasks):
        modules = {}
        for index, (name, (out_features, in_features)) in enumerate(shapes.items()):
            generator = torch.Generator().manual_seed(seed * 1_000_003 + task * 10_007 + index)
            A = torch.randn(rank, in_features, generator=generator) / in_features**0.5
            B = torch.randn(out_features, rank, generator=generator) / out_features**0.5
            modules[name] = LoraModule(A=A, B=B, scale=1.0)
        adapters.append(
            LoraAdapter(
                path=Path(f"/bench/task{task}"),
                config={"r": rank, "lora_alpha": rank},
                modules=modules,
                other_tensors={},
                weights_file=Path(f"/bench/task{task}/adapter_model.safetensors"),
                sha256={},
            )
        )
    return stack_adapters(adapters)


def subset(adapters: AdapterSet, names: Sequence[str]) -> AdapterSet:
    """The same adapters restricted to the modules `names` (shares the factor tensors)."""
    return AdapterSet(adapters.adapters, {name: adapters.stacks[name] for name in names})


def cpu_model() -> str:
    name = platform.processor()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return name or platform.machine()


def library_version() -> str:
    """Where loramerge was imported from, and the git commit of its checkout (+ 'modified' with local changes)."""
    import subprocess

    import loramerge

    source = Path(loramerge.__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(source), "status", "--porcelain", "--", "."], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "", ""
    where = f"git {commit}{' + uncommitted changes' if dirty else ''}" if commit else "not a git checkout"
    return f"loramerge from {source} ({where})"


def print_header(title: str, threads: int | None) -> None:
    if threads:
        torch.set_num_threads(threads)
    print(f"== {title}")
    print(f"python {platform.python_version()}  torch {torch.__version__}  torch threads {torch.get_num_threads()}")
    print(
        f"machine: {cpu_model()} ({platform.machine()}), os.cpu_count()={os.cpu_count()}, "
        f"{platform.system()} {platform.release()}"
    )
    print(library_version())
    print(f"command: {' '.join([Path(sys.argv[0]).name, *sys.argv[1:]])}")
    print(f"at start: {load_line()}")
    try:
        busy = os.getloadavg()[0] > 0.5 * (os.cpu_count() or 1)
    except OSError:
        busy = False
    if busy:
        print(
            "WARNING: other work is running on this machine. With several torch threads each parallel op waits for "
            "descheduled threads, and timings can come out 5-20× slower. Prefer an idle machine, or compare with "
            "--threads 1."
        )
    print()


def fmt_s(seconds: float) -> str:
    return f"{seconds:.3f}" if seconds < 10 else f"{seconds:.1f}"


def table(rows: list[list[str]], header: list[str]) -> str:
    """A plain aligned text table; numeric-looking cells are right-aligned."""
    cells = [header, *rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]

    def numeric(text: str) -> bool:
        return text[:1].isdigit() or (text[:1] in "-+<≥≤~" and text[1:2].isdigit())

    def line(row: list[str]) -> str:
        return "  ".join(c.rjust(w) if numeric(c) else c.ljust(w) for c, w in zip(row, widths, strict=True))

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(row) for row in rows)])


class Timer:
    """Wall time (`seconds`) and this process's CPU time (`cpu_seconds`, all threads) of the block."""

    def __enter__(self) -> Timer:
        self.start, self.cpu_start = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start
        self.cpu_seconds = time.process_time() - self.cpu_start


def load_line() -> str:
    """The 1/5/15-minute load averages: other work on the machine slows every timing (see README)."""
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "load average: unavailable"
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def current_rss() -> int:
    """Resident set size of this process in bytes."""
    kib = _status_kib("VmRSS")
    if kib is not None:
        return kib * 1024
    import psutil

    return psutil.Process().memory_info().rss


def lifetime_peak_rss() -> int:
    """getrusage ru_maxrss of this process in bytes (the peak over its whole life)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


class PeakRss:
    """Peak RSS while the block runs: Linux VmHWM after resetting it (write 5 to /proc/self/clear_refs), which
    catches every transient peak at no cost; where that reset is not allowed, a psutil sampler thread every 5 ms
    (which can miss peaks shorter than that and costs a few percent of run time)."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval

    def _sample(self) -> None:
        import psutil

        process = psutil.Process()
        while not self._stop.wait(self.interval):
            self.sampled = max(self.sampled, process.memory_info().rss)

    def __enter__(self) -> PeakRss:
        try:
            with open("/proc/self/clear_refs", "w") as handle:
                handle.write("5")
            self.hwm_reset = True
        except OSError:
            self.hwm_reset = False
        self.start_rss = current_rss()
        self.sampled = self.start_rss
        self._stop = threading.Event()
        self._thread = None
        if not self.hwm_reset:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sampled = max(self.sampled, current_rss())
        hwm = _status_kib("VmHWM") if self.hwm_reset else None
        self.peak = max(self.sampled, hwm * 1024 if hwm is not None else 0)
