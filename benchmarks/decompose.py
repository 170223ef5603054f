"""KnOTS SVD basis of M = [ΔW_1 | … | ΔW_n]: the dense route (as KnOTS computes it) against loramerge's factor route.

dense  Form M = cat_t(B_t·A_t) (O × nI) in float64, torch.linalg.svd(M, full_matrices=False), keep σ > 1e-5
       (KNOTS_SVD_TOL), Z = diag(S)·Vᵀ, Z_t = its t-th column block.  Cost O(O²·nI) per matrix.
ours   loramerge.bases.decompose.svd_basis(stack): QR of [B_1 … B_n] and of each A_tᵀ, SVD of the (Σr)×(Σr) core;
       Z_t stays factored as P_t @ A_t.  M is never formed.
cur    loramerge.bases.decompose.cur_basis(stack, k), k = the module's SVD rank (what decompose() does), for reference.

Timed: only the basis computation (dense: forming M + SVD + truncation + Z, one run per matrix; ours: svd_basis and
cur_basis, the median of --repeat runs per matrix, default 3, summed over the matrices).  Not timed: the check,
which reconstructs every ΔW_t = U·Z_t from both routes in float64 and reports the max abs difference between them
(target ≤ 1e-8) and the max abs difference of the kept singular values ("inf" when the two routes keep different
ranks).  Ratio = dense time / ours time
(target ≥ 100× on the ViT-B/32 shapes).

Llama-3-8B shapes: the dense SVD of one 4096 × 24576 matrix takes minutes on a small machine, so the dense route runs
on a subset (--dense-llama-layers, default the q,k,v,o of 1 layer) and its time is extrapolated per matrix type to
the 32 matrices of that type; such rows say "measured on N, extrapolated to 32", while ours and CUR always run on
all 128 matrices.  Use --quick for a small smoke run (4 ViT matrices; dense Llama only on one k_proj).

    python benchmarks/decompose.py            # full sizes
    python benchmarks/decompose.py --quick    # smoke run, about a minute
"""

from __future__ import annotations

import argparse
import gc
import statistics

import torch
from _common import (
    LLAMA_LAYERS,
    LLAMA_SHAPES,
    Timer,
    fmt_s,
    llama_name,
    llama_shapes,
    load_line,
    make_adapters,
    print_header,
    projection_of,
    table,
    vit_shapes,
)

from loramerge.adapters import AdapterSet, ModuleStack
from loramerge.bases.decompose import KNOTS_SVD_TOL, cur_basis, svd_basis

AGREEMENT_TARGET = 1e-8
RATIO_TARGET = 100.0


def dense_route(stack: ModuleStack) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """KnOTS: the SVD of the dense M in float64; U (O × k), S (k), Z = diag(S)·Vᵀ (k × nI)."""
    M = torch.cat([b.double() @ a.double() for a, b in zip(stack.A, stack.B, strict=True)], dim=1)
    U, S, Vh = torch.linalg.svd(M, full_matrices=False)
    del M
    kept = S > KNOTS_SVD_TOL
    U, S = U[:, kept], S[kept]
    Z = S[:, None] * Vh[kept]
    return U, S, Z


def compare(stack: ModuleStack, dense: tuple, ours) -> tuple[float, float, float]:
    """Max |ΔW_t(dense) − ΔW_t(ours)| over tasks, max |ΔW_t(ours) − B_t·A_t| and max |σ_dense − σ_ours|."""
    U, S, Z = dense
    in_features = stack.shape[1]
    routes = exact = 0.0
    if U.shape[1] != ours.rank:
        return float("inf"), float("inf"), float("inf")
    for position, (a, b) in enumerate(zip(stack.A, stack.B, strict=True)):
        a64 = a.double()
        from_dense = U @ Z[:, position * in_features : (position + 1) * in_features]
        from_ours = ours.U @ (ours.P[position] @ a64)
        routes = max(routes, float((from_dense - from_ours).abs().max()))
        exact = max(exact, float((from_ours - b.double() @ a64).abs().max()))
        del from_dense, from_ours
    sigma = float((S - ours.singular_values).abs().max())
    return routes, exact, sigma


def median_time(repeat: int, function, *args):
    """(result, median wall time over `repeat` calls): the fast routes take milliseconds, where one run is noisy."""
    times = []
    for _ in range(max(1, repeat)):
        with Timer() as timer:
            result = function(*args)
        times.append(timer.seconds)
    return result, statistics.median(times)


def warm_up() -> None:
    """First LAPACK/BLAS calls pay one-off initialisation; keep it out of the first timed matrix."""
    small = make_adapters({"warmup": (64, 64)}, 2, 4, seed=99).stacks["warmup"]
    dense_route(small)
    svd_basis(small)
    cur_basis(small, 8)


def run_vit(args: argparse.Namespace) -> None:
    shapes = vit_shapes(args.vit_matrices)
    adapters = make_adapters(shapes, args.vit_tasks, args.rank, args.seed)
    print(
        f"-- (a) ViT-B/32 shapes: {len(shapes)} matrices 768×768, n={args.vit_tasks} tasks, r={args.rank} "
        f"(M is 768×{768 * args.vit_tasks} per matrix)"
    )
    dense_total = ours_total = cur_total = 0.0
    worst_routes = worst_exact = worst_sigma = 0.0
    ranks = set()
    for name in adapters.modules:
        stack = adapters.stacks[name]
        with Timer() as t_dense:
            dense = dense_route(stack)
        ours, ours_seconds = median_time(args.repeat, svd_basis, stack)
        _, cur_seconds = median_time(args.repeat, cur_basis, stack, ours.rank)
        routes, exact, sigma = compare(stack, dense, ours)
        dense_total += t_dense.seconds
        ours_total += ours_seconds
        cur_total += cur_seconds
        worst_routes, worst_exact, worst_sigma = (
            max(worst_routes, routes),
            max(worst_exact, exact),
            max(worst_sigma, sigma),
        )
        ranks.add(ours.rank)
    ratio = dense_total / ours_total
    rows = [
        [
            "ViT-B/32 768×768",
            str(len(shapes)),
            fmt_s(dense_total),
            fmt_s(ours_total),
            f"{ratio:.0f}×",
            fmt_s(cur_total),
            ",".join(map(str, sorted(ranks))),
            f"{worst_routes:.2e}",
            f"{worst_exact:.2e}",
            f"{worst_sigma:.2e}",
        ]
    ]
    print(
        table(
            rows,
            [
                "shapes",
                "matrices",
                "dense s",
                "ours s",
                "dense/ours",
                "cur s",
                "rank k",
                "max|ΔW_dense−ΔW_ours|",
                "max|ΔW_ours−BA|",
                "max|Δσ|",
            ],
        )
    )
    print(
        f"ratio {ratio:.0f}× (target ≥ {RATIO_TARGET:.0f}×: {'met' if ratio >= RATIO_TARGET else 'NOT met'}); "
        f"agreement {worst_routes:.2e} (target ≤ {AGREEMENT_TARGET:g}: "
        f"{'met' if worst_routes <= AGREEMENT_TARGET else 'NOT met'})"
    )
    print(f"per matrix: dense {dense_total / len(shapes) * 1e3:.1f} ms, ours {ours_total / len(shapes) * 1e3:.2f} ms")
    print()


def run_llama(args: argparse.Namespace) -> None:
    shapes = llama_shapes(LLAMA_LAYERS)
    adapters: AdapterSet = make_adapters(shapes, args.llama_tasks, args.rank, args.seed)
    n = args.llama_tasks
    print(
        f"-- (b) Llama-3-8B shapes: {LLAMA_LAYERS} layers × {{q_proj, o_proj: 4096×4096; k_proj, v_proj: 1024×4096}} "
        f"= {len(shapes)} matrices, n={n} tasks, r={args.rank} (M is O×{4096 * n} per matrix)"
    )
    types = list(LLAMA_SHAPES)
    ours_time = dict.fromkeys(types, 0.0)
    cur_time = dict.fromkeys(types, 0.0)
    count = dict.fromkeys(types, 0)
    bases = {}
    for name in adapters.modules:
        stack = adapters.stacks[name]
        basis, ours_seconds = median_time(args.repeat, svd_basis, stack)
        _, cur_seconds = median_time(args.repeat, cur_basis, stack, basis.rank)
        proj = projection_of(name)
        ours_time[proj] += ours_seconds
        cur_time[proj] += cur_seconds
        count[proj] += 1
        bases[name] = basis

    dense_types = [t for t in types if t in args.dense_llama_types]
    dense_names = [llama_name(layer, proj) for layer in range(args.dense_llama_layers) for proj in dense_types]
    dense_time = dict.fromkeys(types, 0.0)
    dense_count = dict.fromkeys(types, 0)
    worst = dict.fromkeys(types, 0.0)
    worst_exact = dict.fromkeys(types, 0.0)
    for name in dense_names:
        stack = adapters.stacks[name]
        print(f"   dense SVD of {name} ({stack.shape[0]}×{stack.shape[1] * n}) ...", end="", flush=True)
        with Timer() as t_dense:
            dense = dense_route(stack)
        routes, exact, _ = compare(stack, dense, bases[name])
        del dense
        gc.collect()
        print(f" {t_dense.seconds:.1f} s, max|ΔW_dense−ΔW_ours| = {routes:.2e}")
        proj = projection_of(name)
        dense_time[proj] += t_dense.seconds
        dense_count[proj] += 1
        worst[proj] = max(worst[proj], routes)
        worst_exact[proj] = max(worst_exact[proj], exact)

    rows = []
    dense_extrapolated = 0.0
    measured_types = 0
    for proj in types:
        out_features, in_features = LLAMA_SHAPES[proj]
        if dense_count[proj]:
            per_matrix = dense_time[proj] / dense_count[proj]
            extrapolated = per_matrix * count[proj]
            dense_extrapolated += extrapolated
            measured_types += 1
            dense_cells = [
                f"measured on {dense_count[proj]}, extrapolated to {count[proj]}",
                fmt_s(per_matrix),
                fmt_s(extrapolated),
                f"{extrapolated / ours_time[proj]:.0f}×",
                f"{worst[proj]:.2e}",
            ]
        else:
            dense_cells = ["not measured", "-", "-", "-", "-"]
        rows.append(
            [
                f"{proj} {out_features}×{in_features}",
                *dense_cells,
                fmt_s(ours_time[proj]),
                f"{ours_time[proj] / count[proj] * 1e3:.1f}",
                fmt_s(cur_time[proj]),
            ]
        )
    total_ours, total_cur = sum(ours_time.values()), sum(cur_time.values())
    if measured_types == len(types):
        total_cells = [
            f"measured on {sum(dense_count.values())}, extrapolated to {len(shapes)}",
            "-",
            fmt_s(dense_extrapolated),
            f"{dense_extrapolated / total_ours:.0f}×",
            f"{max(worst.values()):.2e}",
        ]
    else:
        total_cells = [f"only {', '.join(dense_types) or 'none'} measured", "-", "-", "-", "-"]
    rows.append(["all 128", *total_cells, fmt_s(total_ours), f"{total_ours / len(shapes) * 1e3:.1f}", fmt_s(total_cur)])
    print(
        table(
            rows,
            [
                "matrix type",
                "dense route",
                "dense s/matrix",
                "dense s (×32)",
                "dense/ours",
                "max|ΔW_dense−ΔW_ours|",
                "ours s (all)",
                "ours ms/matrix",
                "cur s (all)",
            ],
        )
    )
    print("ours and cur: measured on all 128 matrices (32 per type); dense: see the 'dense route' column.")
    if dense_names:
        agreement = max(worst.values())
        print(
            f"agreement on the {len(dense_names)} dense-checked matrices: {agreement:.2e} "
            f"(target ≤ {AGREEMENT_TARGET:g}: {'met' if agreement <= AGREEMENT_TARGET else 'NOT met'}); "
            f"max|ΔW_ours−BA| {max(worst_exact.values()):.2e}"
        )
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--quick", action="store_true", help="small smoke run: 4 ViT matrices, dense Llama on k_proj only"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument(
        "--dense-llama-layers",
        type=int,
        default=None,
        help="layers whose matrices get the dense Llama SVD (default 1; 0 skips the dense route)",
    )
    parser.add_argument(
        "--dense-llama-types",
        default=None,
        help="comma-separated projections for the dense Llama route (default q_proj,k_proj,v_proj,"
        "o_proj; --quick: k_proj)",
    )
    parser.add_argument("--vit-matrices", type=int, default=None, help="ViT matrices (default 48, --quick 4)")
    parser.add_argument("--vit-tasks", type=int, default=8)
    parser.add_argument("--llama-tasks", type=int, default=6)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--repeat", type=int, default=3, help="ours and CUR: median of this many runs per matrix (default 3)"
    )
    parser.add_argument("--skip-vit", action="store_true")
    parser.add_argument("--skip-llama", action="store_true")
    args = parser.parse_args()
    if args.vit_matrices is None:
        args.vit_matrices = 4 if args.quick else 48
    if args.dense_llama_layers is None:
        args.dense_llama_layers = 1
    if args.dense_llama_types is None:
        args.dense_llama_types = "k_proj" if args.quick else ",".join(LLAMA_SHAPES)
    args.dense_llama_types = [t.strip() for t in args.dense_llama_types.split(",") if t.strip()]
    unknown = set(args.dense_llama_types) - set(LLAMA_SHAPES)
    if unknown:
        parser.error(f"unknown --dense-llama-types {sorted(unknown)}; choose from {list(LLAMA_SHAPES)}")

    print_header(
        "loramerge SVD basis: dense KnOTS route vs factor route" + (" (--quick)" if args.quick else ""), args.threads
    )
    warm_up()
    if not args.skip_vit:
        run_vit(args)
    if not args.skip_llama:
        run_llama(args)
    print(f"at end: {load_line()}")


if __name__ == "__main__":
    main()
