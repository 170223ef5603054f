"""One task's statistics: its fine-tuned model (the backbone with the task's ΔW applied in place) run over a seeded
subset of the task's unlabelled training inputs, with hooks on the LoRA-targeted linear layers.

- Gram (RegMean): Σ xᵀx in float64 over every input row of each layer (batch and sequence dimensions flattened;
  padding rows of text batches excluded), not divided by the row count; layers that read one input share one product.
- Fisher (Fisher merging), the diagonal Fisher of each layer's dense weight W (not of the LoRA factors), from the
  probabilities p = softmax(head temperature · features @ headᵀ) over the task's classes (masked classes excluded, as
  evaluation sets their logits to −inf). Two estimators:
  - `exact` (the default): (1/N) Σ_x Σ_c p_c(x) (∂ log p_c(x)/∂W)², the expectation under the model's own
    predictive distribution, from per-example gradients: one backward pass per class and batch, the per-example
    gradient of a linear layer being gᵀx over the example's rows. C backward passes per batch are cheap for the
    demos and the NLI tasks; SUN397 on ViT-B/32 (256 images × 397 classes × ~12 GFLOP for a backward pass and the
    per-example products) is ~1.2 PFLOP, minutes on one GPU, so the exact estimator is preferred to sampling labels
    y ~ p, which would add Monte-Carlo noise to save little;
  - `batch`: FusionBench's and MergeLM's estimator, (1/N) Σ_batches (∂/∂W Σ_x Σ_c sqrt(p_c).detach() log p_c)²,
    whose square includes cross-example and cross-class terms (it depends on the batch size), for closeness to the
    baselines those tools report.
Every forward and backward pass runs in the backbone's dtype with no autocast; products accumulate in float64.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from tqdm import tqdm

from loramerge.apply import updated
from loramerge.repro.stats.hooks import GramHooks, HookError, OutputGradHooks, targeted_linears
from loramerge.stats import FISHER, GRAM

if TYPE_CHECKING:
    from loramerge.repro.suites.base import Suite

ESTIMATORS = ("exact", "batch")


@dataclass(frozen=True)
class Collected:
    """One task's statistics of one kind: module path -> tensor, and what they were computed over."""

    tensors: dict[str, torch.Tensor]
    examples: int
    counted: int  # input rows summed per module (tokens: images × sequence length, or a text batch's real tokens)


def _batches(inputs: torch.Tensor, batch_size: int, description: str, progress: bool) -> Iterator[torch.Tensor]:
    starts = range(0, len(inputs), batch_size)
    for start in tqdm(starts, desc=description, disable=not progress, leave=False):
        yield inputs[start : start + batch_size]


def _counted(rows: Mapping[str, int]) -> int:
    counts = set(rows.values())
    if len(counts) != 1:
        raise HookError("statistics", f"the targeted modules counted different numbers of input rows: {dict(rows)}")
    return counts.pop()


def collect_gram(
    suite: type[Suite] | Suite,
    model: torch.nn.Module,
    modules: Mapping[str, torch.nn.Module],
    inputs: torch.Tensor,
    batch_size: int,
    device: str | torch.device,
    progress: bool = False,
) -> Collected:
    """Σ xᵀx (float64, I × I) over the counted input rows of every module."""
    hooks = GramHooks(modules)
    with torch.inference_mode(), hooks.attached():
        for batch in _batches(inputs, batch_size, "gram", progress):
            with hooks.batch(suite.statistics_row_mask(batch)):
                suite.statistics_features(model, batch, device)
    return Collected(hooks.grams, len(inputs), _counted(hooks.rows))


def _log_probabilities(
    features: torch.Tensor, head: torch.Tensor, masked: Sequence[int], temperature: float
) -> torch.Tensor:
    kept = [c for c in range(head.shape[0]) if c not in masked]
    logits = temperature * features.float() @ head[kept].T
    return torch.log_softmax(logits, dim=-1)


def collect_fisher(
    suite: type[Suite] | Suite,
    model: torch.nn.Module,
    modules: Mapping[str, torch.nn.Module],
    inputs: torch.Tensor,
    head: torch.Tensor,
    masked: Sequence[int],
    batch_size: int,
    device: str | torch.device,
    estimator: str = "exact",
    progress: bool = False,
) -> Collected:
    """The diagonal Fisher (O × I, float64) of every module's dense weight by `estimator` (module docstring)."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown Fisher estimator {estimator!r}; known: {', '.join(ESTIMATORS)}")
    head = head.to(device)
    sums = {
        path: torch.zeros(module.weight.shape, dtype=torch.float64, device=device) for path, module in modules.items()
    }
    hooks = OutputGradHooks(modules)
    with _gradients_to(model, modules), hooks.attached():
        for batch in _batches(inputs, batch_size, "fisher", progress):
            with hooks.batch(suite.statistics_row_mask(batch)):
                log_p = _log_probabilities(
                    suite.statistics_features(model, batch, device), head, masked, suite.head_temperature
                )
                if estimator == "batch":
                    scalar = (log_p.exp().sqrt().detach() * log_p).sum()
                    for path, gradient in hooks.weight_gradients(scalar, per_example=False):
                        sums[path] += gradient.double().square()
                    continue
                p = log_p.exp().detach()
                for c in range(log_p.shape[1]):
                    for path, gradients in hooks.weight_gradients(log_p[:, c].sum(), per_example=True):
                        sums[path] += torch.einsum("b,boi->oi", p[:, c], gradients.square()).double()
    return Collected({path: total / len(inputs) for path, total in sums.items()}, len(inputs), _counted(hooks.rows))


@contextlib.contextmanager
def _gradients_to(model: torch.nn.Module, modules: Mapping[str, torch.nn.Module]) -> Iterator[None]:
    """Gradients enabled with only the targeted weights requiring them (the graph starts at the first of them and
    nothing else is differentiated); every parameter's flag is restored afterwards."""
    flags = [(parameter, parameter.requires_grad) for parameter in model.parameters()]
    model.requires_grad_(False)
    for module in modules.values():
        module.weight.requires_grad_(True)
    try:
        with torch.enable_grad():
            yield
    finally:
        for parameter, flag in flags:
            parameter.requires_grad_(flag)


def task_statistics(
    suite: type[Suite] | Suite,
    model: torch.nn.Module,
    update: Mapping[str, torch.Tensor],
    inputs: torch.Tensor,
    kind: str,
    batch_size: int,
    device: str | torch.device,
    head: torch.Tensor | None = None,
    masked: Sequence[int] = (),
    estimator: str = "exact",
    progress: bool = False,
) -> Collected:
    """`kind` statistics of the fine-tuned model `model` + `update` (a task's ΔW per module path, applied in place
    and taken off afterwards) over `inputs`, for every module of the update; Fisher needs the task's `head`."""
    if kind not in (GRAM, FISHER):
        raise ValueError(f"unknown statistics kind {kind!r}; known: {GRAM}, {FISHER}")
    if kind == FISHER and head is None:
        raise ValueError("Fisher statistics need the task's head")
    model.to(device).eval()
    modules = targeted_linears(model, sorted(update), suite.module_prefixes)
    with updated(model, update, 1.0, suite.module_prefixes):
        if kind == GRAM:
            return collect_gram(suite, model, modules, inputs, batch_size, device, progress)
        return collect_fisher(suite, model, modules, inputs, head, masked, batch_size, device, estimator, progress)
