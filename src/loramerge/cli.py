"""`loramerge methods | merge | decompose | analyze`: the library's command line; `lock` runs loramerge.repro's."""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Sequence
from pathlib import Path

from loramerge.adapters import load_adapters
from loramerge.api import FORMATS, merge_to_folder
from loramerge.bases.analysis import energies, overlaps
from loramerge.bases.cache import load_decomposition, save_decomposition
from loramerge.bases.decompose import KNOTS_SVD_TOL, decompose
from loramerge.errors import LoramergeError, ParameterError
from loramerge.io import atomic_directory
from loramerge.methods.catalog import CATALOG

# flag -> parameter name; only the flags given on the command line reach the method, the rest keep its defaults.
PARAMETER_FLAGS = {
    "--lam": "lam",
    "--top-k": "top_k",
    "--drop-p": "drop_p",
    "--seed": "seed",
    "--alpha": "alpha",
    "--trim-scope": "trim_scope",
    "--mode": "mode",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="loramerge", description="Exact, fast merging of LoRA adapters.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("methods", help="list the merge methods")

    merge = commands.add_parser("merge", help="merge adapters into a peft adapter or a dense delta")
    merge.add_argument("--method", required=True, help="a name from `loramerge methods`")
    merge.add_argument("--adapters", nargs="+", required=True, type=Path, help="peft adapter folders (≥ 2)")
    merge.add_argument("--out", required=True, type=Path, help="output folder (created atomically)")
    for flag, name in PARAMETER_FLAGS.items():
        merge.add_argument(flag, dest=name, default=None, help=f"method parameter {name}")
    merge.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any method parameter, e.g. svd.lam=0.6 cur.top_k=30 first=knots_ties",
    )
    merge.add_argument(
        "--format",
        choices=FORMATS,
        default="auto",
        help="peft adapter (low-rank results), dense delta.safetensors, or auto (peft when possible)",
    )
    merge.add_argument("--decomposition", type=Path, help="a `loramerge decompose` cache of these adapters")
    merge.add_argument(
        "--statistics", type=Path, help="per-task Gram/Fisher statistics: DIR/<adapter folder name>/<kind>.safetensors"
    )
    merge.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    merge.add_argument("--quiet", action="store_true", help="no progress bar on stderr")

    decomp = commands.add_parser("decompose", help="cache the per-module SVD and CUR bases")
    decomp.add_argument("--adapters", nargs="+", required=True, type=Path)
    decomp.add_argument("--out", required=True, type=Path)
    decomp.add_argument("--svd-tol", type=float, default=KNOTS_SVD_TOL, help="keep singular values above this")
    decomp.add_argument("--cur-rank", type=int, default=None, help="CUR columns/rows (default: the SVD rank k)")
    decomp.add_argument("--overwrite", action="store_true")
    decomp.add_argument("--quiet", action="store_true")

    analyze = commands.add_parser("analyze", help="SVD/CUR subspace overlap and projected energy at rank k_a")
    analyze.add_argument("--adapters", nargs="+", required=True, type=Path)
    analyze.add_argument("--out", required=True, type=Path, help="folder for overlap.csv and energy.csv")
    analyze.add_argument("--rank", type=int, default=None, help="k_a (default: the LoRA rank r of the first adapter)")
    analyze.add_argument("--overwrite", action="store_true")

    lock = commands.add_parser(
        "lock", help="record hub commits and sha256 of a paper suite's downloads (needs hub access)"
    )
    lock.add_argument("--config", required=True, type=Path, help="a suite config, e.g. config/paper-vit-b32.yaml")
    return parser


def _parameters(args: argparse.Namespace) -> dict[str, str]:
    values = {name: getattr(args, name) for name in PARAMETER_FLAGS.values() if getattr(args, name) is not None}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ParameterError(item, "expected KEY=VALUE")
        values[key.strip()] = value.strip()
    return values


def _merge(args: argparse.Namespace) -> None:
    adapters = load_adapters(args.adapters)
    decomposition = load_decomposition(args.decomposition, adapters) if args.decomposition else None
    merge_to_folder(
        adapters,
        args.method,
        args.out,
        _parameters(args),
        args.format,
        decomposition,
        args.overwrite,
        progress=not args.quiet,
        statistics=args.statistics,
    )


def _decompose(args: argparse.Namespace) -> None:
    if not args.svd_tol >= 0:
        raise ParameterError("svd_tol", f"must be ≥ 0, got {args.svd_tol}")
    if args.cur_rank is not None and args.cur_rank < 1:
        raise ParameterError("cur_rank", f"must be ≥ 1, got {args.cur_rank}")
    adapters = load_adapters(args.adapters)
    decomposition = decompose(adapters, args.svd_tol, args.cur_rank, progress=not args.quiet)
    save_decomposition(decomposition, adapters, args.out, overwrite=args.overwrite)


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def _analyze(args: argparse.Namespace) -> None:
    adapters = load_adapters(args.adapters)
    rank = args.rank if args.rank is not None else int(adapters.adapters[0].config["r"])
    if rank < 1:
        raise ParameterError("rank", f"must be ≥ 1, got {rank}")
    with atomic_directory(args.out, overwrite=args.overwrite) as staging:
        _write_csv(
            staging / "overlap.csv",
            ["module", "rank", "overlap"],
            [(o.module, o.rank, f"{o.overlap:.6f}") for o in overlaps(adapters, rank)],
        )
        _write_csv(
            staging / "energy.csv",
            ["task", "original", "svd", "svd_ratio", "cur", "cur_ratio"],
            [
                (
                    e.task,
                    f"{e.original:.6f}",
                    f"{e.svd:.6f}",
                    f"{e.svd_ratio:.6f}",
                    f"{e.cur:.6f}",
                    f"{e.cur_ratio:.6f}",
                )
                for e in energies(adapters, rank)
            ],
        )


def _lock(args: argparse.Namespace) -> None:
    # The reproduction package and its dependencies (the [repro] extra) are imported only here.
    try:
        from loramerge.repro.cli import lock
    except ModuleNotFoundError as error:
        if (error.name or "").startswith("loramerge"):
            raise
        raise LoramergeError(
            f"`loramerge lock` is part of the reproduction package, which needs {error.name!r}: "
            "pip install 'loramerge[repro]'"
        ) from error
    lock(args.config)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "methods":
            width = max(map(len, CATALOG))
            for name, facts in sorted(CATALOG.items()):
                print(f"{name:<{width}}  {facts.summary}")
        elif args.command == "merge":
            _merge(args)
        elif args.command == "decompose":
            _decompose(args)
        elif args.command == "lock":
            _lock(args)
        else:
            _analyze(args)
    except LoramergeError as error:
        print(f"loramerge: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
