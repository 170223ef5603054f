"""LoRA-LEGO (Zhao et al., ICLR 2025): rank-wise clustering of the tasks' rank-1 units into a rank-K LoRA.

Per module, every task t contributes r_t units v = [a; b] (a = A_t[j], b = s_t·B_t[:, j]; ΔW_t = Σ_j b·aᵀ). The units
are clustered by k-means on their direction f = [a/‖a‖₂; b/‖b‖₂] (K distinct units drawn by a generator seeded with
(seed, module) as the initial centroids, squared Euclidean distance, nearest centroid by lowest index on ties,
`iterations` Lloyd steps, an empty cluster dropped). Each cluster's centroid is the mean of its raw units, rescaled
to their mean norm ("norm decay" reweighting; ℓ∞ or ℓ2), and ΔW = λ·√(r/K)·Σ_k b̄_k·āₖᵀ ("variance expansion").

No official code exists; where the paper is silent this follows the one public implementation (ℓ∞ norm, K = r,
10 iterations). Ours: r is the module's largest adapter rank (heterogeneous ranks), the generator is seeded even
for seed 0, a zero a- or b-part has a zero direction, and λ scales the result as for every other method.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator

import torch

from loramerge.adapters import ModuleStack
from loramerge.methods.base import MergeContext, MergeMethod, register
from loramerge.params import LoraLegoParams
from loramerge.updates import LowRankUpdate, Update


def cluster_seed(seed: int, module: str) -> int:
    """One generator per (seed, module), so a merge does not depend on the order in which modules are visited."""
    digest = hashlib.sha256(f"lora_lego:{seed}:{module}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def rank_one_units(stack: ModuleStack) -> tuple[torch.Tensor, torch.Tensor]:
    """(a-parts N × I, b-parts N × O) of every task's rank-1 units, in task then rank order, float64."""
    A, B = stack.float64()
    return torch.cat(A, dim=0), torch.cat([b.T for b in B], dim=0)


def unit_directions(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[a/‖a‖₂; b/‖b‖₂] per unit (a zero part stays zero)."""

    def normalised(x: torch.Tensor) -> torch.Tensor:
        norms = torch.linalg.vector_norm(x, dim=1, keepdim=True)
        return torch.where(norms > 0, x / norms.clamp(min=torch.finfo(x.dtype).tiny), torch.zeros_like(x))

    return torch.cat([normalised(a), normalised(b)], dim=1)


def nearest(features: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """The index of each feature's nearest centroid (squared Euclidean; the lowest index on ties)."""
    distances = features.square().sum(dim=1, keepdim=True) - 2 * features @ centroids.T + centroids.square().sum(dim=1)
    return distances.argmin(dim=1)


def kmeans(features: torch.Tensor, clusters: int, iterations: int, generator: torch.Generator) -> torch.Tensor:
    """Each feature's cluster: Lloyd's algorithm from `clusters` distinct features drawn by `generator`.

    An empty cluster keeps its centroid (and so stays empty); with clusters ≥ N every feature is its own cluster.
    """
    count = features.shape[0]
    if clusters >= count:
        return torch.arange(count)
    centroids = features[torch.randperm(count, generator=generator)[:clusters]].clone()
    assignment = nearest(features, centroids)
    for _ in range(iterations):
        for cluster in range(clusters):
            members = assignment == cluster
            if members.any():
                centroids[cluster] = features[members].mean(dim=0)
        updated = nearest(features, centroids)
        if torch.equal(updated, assignment):
            break
        assignment = updated
    return assignment


def unit_norms(units: torch.Tensor, norm: str) -> torch.Tensor:
    return torch.linalg.vector_norm(units, ord=math.inf if norm == "linf" else 2, dim=1)


def reweighted_centroids(units: torch.Tensor, assignment: torch.Tensor, norm: str) -> torch.Tensor:
    """Per non-empty cluster (ascending id), the mean unit scaled to the mean norm of its members."""
    centroids = []
    for cluster in torch.unique(assignment):
        members = units[assignment == cluster]
        centroid = members.mean(dim=0)
        length = unit_norms(centroid[None], norm)[0]
        if length > 0:
            centroid = centroid * (unit_norms(members, norm).mean() / length)
        centroids.append(centroid)
    return torch.stack(centroids)


def lego_merge(stack: ModuleStack, params: LoraLegoParams) -> LowRankUpdate:
    a, b = rank_one_units(stack)
    rank = max(stack.ranks)
    clusters = params.clusters if params.clusters is not None else rank
    generator = torch.Generator().manual_seed(cluster_seed(params.seed, stack.name))
    assignment = kmeans(unit_directions(a, b), clusters, params.iterations, generator)
    centroids = reweighted_centroids(torch.cat([a, b], dim=1), assignment, params.norm)
    scale = params.lam * math.sqrt(rank / clusters)
    in_features = a.shape[1]
    return LowRankUpdate(B=(scale * centroids[:, in_features:].T).float(), A=centroids[:, :in_features].float())


@register
class LoraLego(MergeMethod):
    name = "lora_lego"
    params_type = LoraLegoParams

    def merge(self, context: MergeContext, params: LoraLegoParams) -> Iterator[tuple[str, Update]]:
        for name, stack in sorted(context.adapters.stacks.items()):
            yield name, lego_merge(stack, params)
