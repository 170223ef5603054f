"""The decomposition cache: `svd.safetensors`, `cur.safetensors` and `decomposition.json` in one folder.

The JSON records the settings and the sha256 of every adapter file it was computed from; loading it against other
adapters or other settings is an error, so a stale cache can never be merged silently.
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file, save_file

from loramerge.adapters import AdapterSet
from loramerge.atomic import write_json
from loramerge.bases.decompose import CurBasis, Decomposition, SvdBasis
from loramerge.errors import CacheError
from loramerge.io import atomic_directory

FORMAT = "loramerge-decomposition"
VERSION = 1
MANIFEST = "decomposition.json"


def save_decomposition(
    decomposition: Decomposition, adapters: AdapterSet, folder: str | Path, overwrite: bool = False
) -> None:
    svd, cur = {}, {}
    for name, basis in decomposition.svd.items():
        svd[f"{name}/U"], svd[f"{name}/S"] = basis.U, basis.singular_values
        svd.update({f"{name}/P.{i}": p for i, p in enumerate(basis.P)})
    for name, basis in decomposition.cur.items():
        cur[f"{name}/columns"], cur[f"{name}/rows"] = basis.columns, basis.rows
        cur[f"{name}/C"], cur[f"{name}/U"] = basis.C, basis.U
        cur.update({f"{name}/G.{i}": g for i, g in enumerate(basis.G)})
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "svd_tol": decomposition.svd_tol,
        "cur_rank": decomposition.cur_rank,
        "adapters": adapters.provenance(),
        "modules": {name: list(adapters.stacks[name].tasks) for name in sorted(decomposition.svd)},
    }
    with atomic_directory(folder, overwrite=overwrite) as staging:
        save_file({k: v.contiguous() for k, v in svd.items()}, staging / "svd.safetensors")
        save_file({k: v.contiguous() for k, v in cur.items()}, staging / "cur.safetensors")
        write_json(staging / MANIFEST, manifest)


def load_decomposition(folder: str | Path, adapters: AdapterSet) -> Decomposition:
    """Load a cache and check it was computed from exactly these adapters (by sha256, in this order)."""
    folder = Path(folder)
    manifest_path = folder / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text())
    except FileNotFoundError:
        raise CacheError(manifest_path, "missing: not a decomposition cache") from None
    except (OSError, json.JSONDecodeError) as error:
        raise CacheError(manifest_path, f"unreadable: {error}") from error
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise CacheError(manifest_path, f"not a {FORMAT} v{VERSION} manifest")
    cached = [entry["sha256"] for entry in manifest["adapters"]]
    given = [entry["sha256"] for entry in adapters.provenance()]
    if cached != given:
        raise CacheError(
            manifest_path,
            f"computed from other adapters ({len(cached)} cached, {len(given)} given, or different file hashes); "
            "recompute it with `loramerge decompose`",
        )
    try:
        svd_tensors = load_file(folder / "svd.safetensors")
        cur_tensors = load_file(folder / "cur.safetensors")
    except Exception as error:
        raise CacheError(folder, f"unreadable basis file: {error}") from error
    svd, cur = {}, {}
    for name, tasks in manifest["modules"].items():
        positions = range(len(tasks))
        svd[name] = SvdBasis(
            U=svd_tensors[f"{name}/U"],
            singular_values=svd_tensors[f"{name}/S"],
            P=tuple(svd_tensors[f"{name}/P.{i}"] for i in positions),
        )
        cur[name] = CurBasis(
            columns=cur_tensors[f"{name}/columns"],
            rows=cur_tensors[f"{name}/rows"],
            C=cur_tensors[f"{name}/C"],
            U=cur_tensors[f"{name}/U"],
            G=tuple(cur_tensors[f"{name}/G.{i}"] for i in positions),
        )
    if sorted(svd) != adapters.modules:
        raise CacheError(manifest_path, "the cached modules differ from the adapters' modules")
    return Decomposition(
        svd=svd, cur=cur, svd_tol=manifest["svd_tol"], cur_rank=manifest["cur_rank"], adapters=manifest["adapters"]
    )
