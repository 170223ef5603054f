"""Time and peak memory of loramerge at Llama-3-8B scale (32 layers × q,k,v,o; n=6 adapters, r=16), in memory.

Stages, each timed (wall clock) and metered (peak RSS while it runs):
  (i)   decompose      decompose(adapters): SVD + CUR bases of all 128 modules.
  (ii)  knots_ties     iter_merge(adapters, "knots_ties", {"top_k": 20, "lam": 1.0}, decomposition=<(i)>), consumed
                       module by module (‖update‖²_F accumulated, nothing kept).
  (iii) ties           iter_merge(adapters, "ties", {"top_k": 20}): plain TIES on the dense ΔW_t with KnOTS's global
                       top-20% trim over the whole model (D ≈ 1.34e9 entries per task), consumed likewise; each dense
                       O×I float32 update is dropped before the next one is made.
  (iv)  core_tsv, core_iso, lora_lego
                       iter_merge(adapters, <method>, {}) with each method's defaults (LoRA-LEGO: K = r = 16, ℓ∞,
                       10 iterations, seed 0), consumed likewise; all three work on the factors only.
Targets: every stage < 60 s and < 8 GB peak RSS.  "peak RSS" is the process's resident-set peak during the stage
(Linux VmHWM reset before the stage; a 5 ms psutil sampler where that reset is not allowed); "Δ baseline" is that
peak minus the RSS after the factors were built (the factors themselves are ~0.5 GB).  ru_maxrss (getrusage) is the
lifetime peak of the process.

Slow-route ratio for the trim threshold of plain TIES: on the first --threshold-layers layers (default 2) the KnOTS way
(per task, torch.cat of every |ΔW_t| flattened, then torch.kthvalue with k = D − int(D·0.2)) against the streaming
loramerge.ties.trim.trim_thresholds(full_space(subset), names, 20.0); both must give the same threshold per task.
The naive route needs D·4 bytes per task vector (≈5.4 GB per task for the whole model), so it runs on a subset only.

Slow route for Core-TSV and Core-Iso: on the first k_proj (1024×4096) the dense definitions, TSV and Iso-C on the
full ΔW_t (per-task SVDs of the O×I updates, polar factors of the stacked singular vectors, the SVD of Σ ΔW_t), against
the library's merge of that module; both must give the same ΔW (Σ r ≤ min(O, I), so the full and core results agree).

--quick shrinks the model to 4 layers (16 modules) and the threshold subset to 2 layers.
--profile STAGE runs that stage under cProfile and prints the top entries by cumulative time.

    python benchmarks/llama_scale.py            # full sizes
    python benchmarks/llama_scale.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import pstats

import torch
from _common import (
    GB,
    LLAMA_LAYERS,
    PeakRss,
    Timer,
    current_rss,
    fmt_s,
    lifetime_peak_rss,
    llama_shapes,
    load_line,
    make_adapters,
    print_header,
    subset,
    table,
)

from loramerge.adapters import AdapterSet
from loramerge.api import iter_merge
from loramerge.bases.decompose import decompose
from loramerge.bases.spaces import full_space
from loramerge.spectra import numerical_rank, polar_factor
from loramerge.ties.trim import trim_thresholds

TIME_TARGET_S = 60.0
MEMORY_TARGET = 8 * GB  # 8e9 bytes
TOP_K = 20.0


def consume(updates) -> tuple[int, float, int | None]:
    """(modules, Σ‖ΔW‖²_F, largest rank) of a merge, each update dropped as soon as it is measured."""
    modules, total, max_rank = 0, 0.0, None
    for _name, update in updates:
        modules += 1
        total += update.squared_norm()
        if update.rank is not None:
            max_rank = max(max_rank or 0, update.rank)
        del update
    return modules, total, max_rank


def naive_thresholds(adapters: AdapterSet, names: list[str], top_k: float) -> tuple[dict[int, float], float]:
    """KnOTS: per task, kthvalue over the concatenated |ΔW_t| of `names`; also the time spent in kthvalue alone."""
    thresholds, kth_seconds = {}, 0.0
    tasks = sorted({t for n in names for t in adapters.stacks[n].tasks})
    for task in tasks:
        blocks = []
        for name in names:
            stack = adapters.stacks[name]
            if task in stack.tasks:
                position = stack.tasks.index(task)
                blocks.append((stack.B[position] @ stack.A[position]).abs_().flatten())
        flat = torch.cat(blocks)
        del blocks
        D = flat.numel()
        k = D - int(D * (top_k / 100))
        with Timer() as t_kth:
            thresholds[task] = float(torch.kthvalue(flat, k).values)
        kth_seconds += t_kth.seconds
        del flat
    return thresholds, kth_seconds


def dense_tsv(deltas: list[torch.Tensor]) -> torch.Tensor:
    """TSV on the full O×I updates (the dense route): per task its top min(⌊min(O, I)/T⌋, rank) triplets."""
    per_task = min(deltas[0].shape) // len(deltas)
    us, sigmas, vs = [], [], []
    for delta in deltas:
        U, S, Vh = torch.linalg.svd(delta, full_matrices=False)
        kept = min(per_task, numerical_rank(S, delta.shape))
        us.append(U[:, :kept])
        sigmas.append(S[:kept])
        vs.append(Vh[:kept].T)
    return polar_factor(torch.cat(us, dim=1)) @ torch.diag(torch.cat(sigmas)) @ polar_factor(torch.cat(vs, dim=1)).T


def dense_iso(deltas: list[torch.Tensor]) -> torch.Tensor:
    """Iso-C on the full O×I sum (the dense route): its non-zero singular values replaced by their mean."""
    total = sum(deltas)
    U, S, Vh = torch.linalg.svd(total, full_matrices=False)
    rank = numerical_rank(S, total.shape)
    return S[:rank].mean() * U[:, :rank] @ Vh[:rank]


def spectral_ratio(adapters: AdapterSet, name: str) -> list[list[str]]:
    """Dense full-space TSV and Iso-C of one module against the library's core-space merge of it: times, ratio and
    the largest difference."""
    part = subset(adapters, [name])
    stack = part.stacks[name]
    rows = []
    for method, dense_route in (("core_tsv", dense_tsv), ("core_iso", dense_iso)):
        with Timer() as dense_timer:
            deltas = [b.double() @ a.double() for a, b in zip(stack.A, stack.B, strict=True)]
            expected = dense_route(deltas)
        with Timer() as ours_timer:
            ((_, update),) = iter_merge(part, method, {})
        difference = float((update.dense().double() - expected).abs().max() / expected.abs().max())
        rows.append(
            [
                method,
                fmt_s(dense_timer.seconds),
                fmt_s(ours_timer.seconds),
                f"{dense_timer.seconds / ours_timer.seconds:.0f}×",
                f"{difference:.1e}",
            ]
        )
    return rows


def profiled(enabled: bool, top: int, function, *args, **kwargs):
    if not enabled:
        return function(*args, **kwargs)
    profiler = cProfile.Profile()
    result = profiler.runcall(function, *args, **kwargs)
    stream = io.StringIO()
    pstats.Stats(profiler, stream=stream).sort_stats("cumulative").print_stats(top)
    print(stream.getvalue())
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="4 layers instead of 32")
    parser.add_argument(
        "--layers", type=int, default=None, help=f"Llama layers to build (default {LLAMA_LAYERS}, --quick 4)"
    )
    parser.add_argument(
        "--threshold-layers",
        type=int,
        default=2,
        help="layers of the naive-vs-streaming threshold comparison (default 2; 0 skips it)",
    )
    parser.add_argument("--tasks", type=int, default=6)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument(
        "--stages",
        default="decompose,knots_ties,ties,core_tsv,core_iso,lora_lego,threshold,spectral",
        help="comma-separated stages to run (knots_ties needs decompose)",
    )
    parser.add_argument(
        "--profile",
        choices=["decompose", "knots_ties", "ties", "core_tsv", "core_iso", "lora_lego", "threshold"],
        default=None,
        help="run this stage under cProfile (its time then includes the profiler's overhead)",
    )
    parser.add_argument("--profile-top", type=int, default=10)
    args = parser.parse_args()
    layers = args.layers if args.layers is not None else (4 if args.quick else LLAMA_LAYERS)
    threshold_layers = min(args.threshold_layers, layers)
    stages = {s.strip() for s in args.stages.split(",") if s.strip()}
    if "knots_ties" in stages:
        stages.add("decompose")

    print_header("loramerge at Llama-3-8B scale" + (" (--quick)" if args.quick else ""), args.threads)
    shapes = llama_shapes(layers)
    start_rss = current_rss()
    with Timer() as t_build:
        adapters = make_adapters(shapes, args.tasks, args.rank, args.seed)
    gc.collect()
    baseline = current_rss()
    per_task = sum(o * i for o, i in shapes.values())
    print(
        f"model: {layers} layers × {{q_proj, o_proj 4096×4096; k_proj, v_proj 1024×4096}} = {len(shapes)} modules, "
        f"n={args.tasks}, r={args.rank}; D = {per_task:,} entries per task"
        + ("" if layers == LLAMA_LAYERS else f" (full model: {per_task * LLAMA_LAYERS // layers:,})")
    )
    print(
        f"factors built in {t_build.seconds:.1f} s; RSS {start_rss / GB:.2f} GB before, {baseline / GB:.2f} GB after "
        f"(baseline for Δ)"
    )
    print()

    rows = []

    scale = LLAMA_LAYERS / layers

    def record(stage: str, detail: str, timer: Timer, meter: PeakRss) -> None:
        ok = timer.seconds < TIME_TARGET_S and meter.peak < MEMORY_TARGET
        extrapolated = [] if layers == LLAMA_LAYERS else [f"~{fmt_s(timer.seconds * scale)}"]
        rows.append(
            [
                stage,
                fmt_s(timer.seconds),
                fmt_s(timer.cpu_seconds),
                *extrapolated,
                f"{meter.peak / GB:.2f}",
                f"{(meter.peak - baseline) / GB:+.2f}",
                "yes" if ok else "NO",
                detail,
            ]
        )
        print(f"   {stage}: {timer.seconds:.2f} s, peak RSS {meter.peak / GB:.2f} GB — {detail}", flush=True)

    decomposition = None
    if "decompose" in stages:
        with PeakRss() as meter, Timer() as timer:
            decomposition = profiled(args.profile == "decompose", args.profile_top, decompose, adapters)
        ranks = sorted({b.rank for b in decomposition.svd.values()})
        record("(i) decompose (SVD+CUR)", f"{len(decomposition.svd)} modules, SVD ranks {ranks}", timer, meter)

    if "knots_ties" in stages:
        params = {"top_k": TOP_K, "lam": 1.0}
        with PeakRss() as meter, Timer() as timer:
            modules, energy, max_rank = profiled(
                args.profile == "knots_ties",
                args.profile_top,
                consume,
                iter_merge(adapters, "knots_ties", params, decomposition=decomposition),
            )
        record(
            "(ii) knots_ties top_k 20",
            f"{modules} low-rank updates (rank ≤ {max_rank}), Σ‖ΔW‖² = {energy:.6g}",
            timer,
            meter,
        )
        gc.collect()

    if "ties" in stages:
        with PeakRss() as meter, Timer() as timer:
            modules, energy, _ = profiled(
                args.profile == "ties", args.profile_top, consume, iter_merge(adapters, "ties", {"top_k": TOP_K})
            )
        record("(iii) ties top_k 20", f"{modules} dense updates, Σ‖ΔW‖² = {energy:.6g}", timer, meter)
        gc.collect()

    for method in ("core_tsv", "core_iso", "lora_lego"):
        if method not in stages:
            continue
        with PeakRss() as meter, Timer() as timer:
            modules, energy, max_rank = profiled(
                args.profile == method, args.profile_top, consume, iter_merge(adapters, method, {})
            )
        record(
            f"(iv) {method}",
            f"{modules} low-rank updates (rank ≤ {max_rank}), Σ‖ΔW‖² = {energy:.6g}",
            timer,
            meter,
        )
        gc.collect()

    print()
    extrapolated = [] if layers == LLAMA_LAYERS else [f"×{scale:g} → {LLAMA_LAYERS} layers s"]
    print(
        table(
            rows,
            [
                "stage",
                "wall s",
                "cpu s",
                *extrapolated,
                "peak RSS GB",
                "Δ baseline GB",
                f"< {TIME_TARGET_S:.0f} s & < 8 GB",
                "detail",
            ],
        )
    )
    if extrapolated:
        print(
            f"(reduced model: {layers} of {LLAMA_LAYERS} layers; the '×{scale:g}' column is the measured time scaled "
            "linearly to the full model, an estimate only; the target check uses the measured values)"
        )
    print(
        "(cpu s: this process's CPU time over all threads; cpu/wall well below the torch thread count means the "
        "process was waiting for CPUs that other work held)"
    )
    print(f"ru_maxrss (lifetime peak of the process so far): {lifetime_peak_rss() / GB:.2f} GB")
    print()

    if "threshold" in stages and threshold_layers > 0:
        names = [name for name in shapes if int(name.split(".")[2]) < threshold_layers]
        part = subset(adapters, names)
        D = sum(part.stacks[n].shape[0] * part.stacks[n].shape[1] for n in names)
        print(
            f"-- trim threshold of plain TIES (top_k {TOP_K:g}) on {threshold_layers} layer(s) = {len(names)} modules, "
            f"D = {D:,} per task ({D * 4 / GB:.2f} GB as float32), {args.tasks} tasks"
        )
        with PeakRss() as naive_meter, Timer() as naive_timer:
            naive, kth_seconds = profiled(
                args.profile == "threshold", args.profile_top, naive_thresholds, part, names, TOP_K
            )
        gc.collect()
        with PeakRss() as stream_meter, Timer() as stream_timer:
            streamed = profiled(
                args.profile == "threshold", args.profile_top, trim_thresholds, full_space(part), sorted(names), TOP_K
            )
        equal = naive == streamed
        worst = max(abs(naive[t] - streamed[t]) for t in naive) if naive.keys() == streamed.keys() else float("inf")
        print(
            table(
                [
                    [
                        "naive: cat |ΔW_t| + kthvalue (KnOTS)",
                        fmt_s(naive_timer.seconds),
                        fmt_s(naive_timer.cpu_seconds),
                        fmt_s(kth_seconds),
                        f"{(naive_meter.peak - naive_meter.start_rss) / 1e6:+.0f}",
                    ],
                    [
                        "streaming: trim_thresholds(full_space)",
                        fmt_s(stream_timer.seconds),
                        fmt_s(stream_timer.cpu_seconds),
                        "-",
                        f"{(stream_meter.peak - stream_meter.start_rss) / 1e6:+.0f}",
                    ],
                ],
                ["route", "wall s", "cpu s", "of which kthvalue s", "peak RSS over its start MB"],
            )
        )
        print(f"ratio naive/streaming: {naive_timer.seconds / stream_timer.seconds:.2f}×")
        print(f"thresholds equal for all {len(naive)} tasks: {'yes' if equal else 'NO'} (max |difference| {worst:.3g})")
        for task in sorted(naive):
            print(f"   task {task}: naive {naive[task]!r}  streaming {streamed.get(task)!r}")
        print(
            f"(the naive route over the whole model would hold D = {per_task * LLAMA_LAYERS // layers:,} float32 = "
            f"{per_task * LLAMA_LAYERS // layers * 4 / GB:.1f} GB per task vector, twice that during torch.cat)"
        )
    if "spectral" in stages:
        name = next(name for name in shapes if name.endswith("k_proj"))
        print(f"-- Core-TSV and Core-Iso against the dense full-space definitions on {name} {shapes[name]}")
        print(
            table(
                spectral_ratio(adapters, name),
                ["method", "dense route s", "ours s", "ratio", "max |Δ| / max |ΔW|"],
            )
        )
    print(f"at end: {load_line()}")


if __name__ == "__main__":
    main()
