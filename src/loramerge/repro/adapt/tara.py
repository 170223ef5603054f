"""TARA-Merging's adaptation: learn the coefficients of `loramerge.methods.tara` on unlabelled validation inputs.

Per module, forward hooks add ΔW(c)·x = L(c)·(A_cat·x) to the targeted linear's output (W0 itself is untouched), and
the coefficients are the only trainable tensors. Each step draws one batch per task from a per-task stream (a seeded
permutation of its validation inputs, cycled as the original's `itertools.cycle` is), computes every task's mean
prediction entropy H_t with its own head, and minimises the smooth Tchebycheff objective
μ·log Σ_t exp(p_t·(H_t − h_t)/μ), p_t = 1/T, against each fine-tuned model's own mean entropy h_t on the same inputs
(or, for the AdaMerging-style ablation, the linear Σ_t p_t·(H_t − h_t)), with AdamW. Labels are never read.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch

from loramerge.adapters import AdapterSet
from loramerge.bases.decompose import Decomposition
from loramerge.methods.tara import initial_coefficients, left_factor, stacked_inputs

LOSSES = ("stch", "linear")
Features = Callable[[torch.nn.Module, torch.Tensor], torch.Tensor]  # (model, a batch of inputs) -> features, with grad


@dataclass(frozen=True)
class AdaptSettings:
    variant: str = "b"
    init: float = 0.4  # every coefficient's start: ΔW = init·Σ ΔW_t (TA-sum)
    epochs: int = 5  # vision 5, NLI 10 in the original
    steps_per_epoch: int = 50  # at most; fewer when the smallest task has fewer batches
    batch_size: int = 16  # per task and step
    lr: float = 1.0e-3
    weight_decay: float = 0.01  # torch's AdamW default, which the original keeps
    mu: float = 1.0  # the smooth Tchebycheff temperature
    loss: str = "stch"
    seed: int = 0

    def steps(self, smallest_task: int) -> int:
        """epochs × min(steps_per_epoch, batches of the smallest task's stream), as the original counts."""
        return self.epochs * min(self.steps_per_epoch, math.ceil(smallest_task / self.batch_size))


@dataclass(frozen=True)
class AdaptTask:
    """One task's unlabelled inputs and head (C × D, scaled by the suite's head temperature), masked classes."""

    name: str
    inputs: torch.Tensor
    head: torch.Tensor
    masked: tuple[int, ...] = ()


def mean_entropy(features: torch.Tensor, head: torch.Tensor, masked: Sequence[int]) -> torch.Tensor:
    """The batch mean of the Shannon entropy of softmax(features·headᵀ) over the unmasked classes.

    Computed as logsumexp(z) − Σ p·z, whose gradient stays finite where a probability underflows to 0 (−p·log p's
    does not)."""
    kept = [c for c in range(head.shape[0]) if c not in set(masked)]
    logits = features.float() @ head[kept].to(features.device).float().T
    probabilities = torch.softmax(logits, dim=-1)
    return (torch.logsumexp(logits, dim=-1) - (probabilities * logits).sum(dim=-1)).mean()


def finetuned_entropy(model: torch.nn.Module, task: AdaptTask, features: Features, batch_size: int) -> float:
    """h_t: the mean prediction entropy over all of the task's inputs of `model` (the fine-tuned model, its adapter
    applied by the caller), the offset of that task's objective term."""
    total = 0.0
    with torch.no_grad():
        for start in range(0, len(task.inputs), batch_size):
            batch = task.inputs[start : start + batch_size]
            total += float(mean_entropy(features(model, batch), task.head, task.masked)) * len(batch)
    return total / len(task.inputs)


def batches(inputs: torch.Tensor, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Batches of one seeded permutation of `inputs`, replayed in the same order forever."""
    order = torch.randperm(len(inputs), generator=generator)
    chunks = [inputs[order[start : start + batch_size]] for start in range(0, len(order), batch_size)]
    return itertools.cycle(chunks)


def objective(entropies: torch.Tensor, offsets: torch.Tensor, loss: str, mu: float) -> torch.Tensor:
    weighted = (entropies - offsets) / len(entropies)
    if loss == "linear":
        return weighted.sum()
    return mu * torch.logsumexp(weighted / mu, dim=0)


class CoefficientBranches:
    """The learned branch of every targeted linear: output += (x·A_catᵀ)·L(c)ᵀ while installed."""

    def __init__(
        self,
        linears: Mapping[str, torch.nn.Linear],
        adapters: AdapterSet,
        settings: AdaptSettings,
        decomposition: Decomposition | None,
    ) -> None:
        self.variant = settings.variant
        self.stacks = {name: adapters.stacks[name] for name in sorted(linears)}
        self.linears = dict(linears)
        self.bases = {name: decomposition.svd[name] if self.variant == "b" else None for name in self.stacks}
        self.coefficients = {
            name: torch.nn.Parameter(initial_coefficients(stack, self.variant, self.bases[name], settings.init))
            for name, stack in self.stacks.items()
        }
        self._inputs = {name: stacked_inputs(stack) for name, stack in self.stacks.items()}
        self._handles: list = []

    def parameters(self) -> list[torch.nn.Parameter]:
        return list(self.coefficients.values())

    def _hook(self, name: str):
        def add_branch(module: torch.nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
            left = left_factor(self.stacks[name], self.variant, self.bases[name], self.coefficients[name])
            inputs = self._inputs[name].to(device=output.device, dtype=output.dtype)
            return output + (args[0] @ inputs.T) @ left.to(output.dtype).T

        return add_branch

    def __enter__(self) -> CoefficientBranches:
        self._handles = [linear.register_forward_hook(self._hook(name)) for name, linear in self.linears.items()]
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def learned(self) -> dict[str, torch.Tensor]:
        return {
            name: coefficient.detach().float().cpu().contiguous() for name, coefficient in self.coefficients.items()
        }


def adapt(
    model: torch.nn.Module,
    branches: CoefficientBranches,
    tasks: Sequence[AdaptTask],
    offsets: torch.Tensor,
    features: Features,
    settings: AdaptSettings,
    steps: int,
    log: Callable[[str], None] = lambda line: None,
) -> list[float]:
    """Run `steps` AdamW steps on the branches' coefficients; the objective after each step's forward, in order."""
    generator = torch.Generator().manual_seed(settings.seed)
    streams = [batches(task.inputs, settings.batch_size, generator) for task in tasks]
    optimiser = torch.optim.AdamW(branches.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    losses = []
    with branches:
        for step in range(steps):
            optimiser.zero_grad(set_to_none=True)
            entropies = torch.stack(
                [
                    mean_entropy(features(model, next(stream)), task.head, task.masked)
                    for task, stream in zip(tasks, streams, strict=True)
                ]
            )
            loss = objective(entropies, offsets.to(entropies.device), settings.loss, settings.mu)
            loss.backward()
            optimiser.step()
            losses.append(float(loss.detach()))
            log(f"step {step + 1}/{steps}: objective {losses[-1]:.6f}")
    return losses
