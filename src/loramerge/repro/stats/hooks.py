"""Hooks on a model's targeted linear layers: the Gram matrix of each layer's inputs, and each layer's inputs and
output gradients, from which the Fisher estimators form the gradients of the layer's dense weight.

Both take a per-batch row mask (True for the rows to count: every token of a ViT, the real tokens of a padded text
batch) over the leading dimensions of a layer's input, so the same hooks serve any modality.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence

import torch

from loramerge.errors import SubjectError


class HookError(SubjectError):
    """A module that cannot be hooked, or an input that does not fit the batch's row mask."""


def targeted_linears(
    model: torch.nn.Module, module_paths: Sequence[str], prefixes: Sequence[str] = ("",)
) -> dict[str, torch.nn.Linear]:
    """Module path -> the nn.Linear it names in `model`, under the first of `prefixes` where it exists (adapters
    name modules relative to the sub-model they were trained on, as `loramerge.apply` resolves them)."""
    modules = {}
    for path in module_paths:
        for prefix in prefixes:
            try:
                module = model.get_submodule(f"{prefix}{path}")
            except AttributeError:
                continue
            if not isinstance(module, torch.nn.Linear):
                raise HookError(path, f"is a {type(module).__name__}, not an nn.Linear")
            modules[path] = module
            break
        else:
            tried = ", ".join(repr(prefix) for prefix in prefixes)
            raise HookError(path, f"no such module in the {type(model).__name__} (prefixes tried: {tried})")
    return modules


def _rows(inputs: torch.Tensor, mask: torch.Tensor | None, path: str) -> torch.Tensor:
    """The input rows (all leading dimensions flattened) that the mask keeps, as R × I."""
    if mask is not None and tuple(inputs.shape[:-1]) != tuple(mask.shape):
        raise HookError(path, f"input of shape {tuple(inputs.shape)} does not fit the row mask {tuple(mask.shape)}")
    rows = inputs.reshape(-1, inputs.shape[-1])
    return rows if mask is None else rows[mask.reshape(-1).to(rows.device)]


class GramHooks:
    """Σ xᵀx in float64 over every counted input row of each module, with forward pre-hooks.

    Modules that read the same input tensor in a forward pass (q, k and v read one normalised hidden state) share
    one product: it is recognised by tensor identity within the batch, not by name, and computed once
    (`products` counts the products computed)."""

    def __init__(self, modules: Mapping[str, torch.nn.Module]) -> None:
        self.modules = dict(modules)
        self.grams: dict[str, torch.Tensor] = {}
        self.rows = dict.fromkeys(self.modules, 0)  # counted rows per module; all equal for a well-formed model
        self.products = 0
        self._mask: torch.Tensor | None = None
        self._shared: dict[int, tuple[torch.Tensor, torch.Tensor, int]] = {}  # id(input) -> (input, product, rows)

    def _hook(self, path: str):
        def hook(module: torch.nn.Module, args: tuple) -> None:
            inputs = args[0]
            seen = self._shared.get(id(inputs))
            if seen is None or seen[0] is not inputs:
                rows = _rows(inputs.detach(), self._mask, path).double()
                seen = (inputs, rows.T @ rows, len(rows))
                self._shared[id(inputs)] = seen
                self.products += 1
            _, product, count = seen
            if path in self.grams:
                self.grams[path] += product
            else:
                self.grams[path] = product.clone()
            self.rows[path] += count

        return hook

    @contextlib.contextmanager
    def attached(self) -> Iterator[GramHooks]:
        handles = [module.register_forward_pre_hook(self._hook(path)) for path, module in self.modules.items()]
        try:
            yield self
        finally:
            for handle in handles:
                handle.remove()

    @contextlib.contextmanager
    def batch(self, mask: torch.Tensor | None) -> Iterator[None]:
        """One forward pass whose inputs' rows `mask` selects (None: every row); shared inputs are per batch."""
        self._mask = mask
        try:
            yield
        finally:
            self._mask = None
            self._shared.clear()


class OutputGradHooks:
    """Each module's masked input rows and its output of one forward pass, so that the gradient of any scalar with
    respect to a module's dense weight, per example, is `gᵀx` over that example's rows (g the output gradient)."""

    def __init__(self, modules: Mapping[str, torch.nn.Module]) -> None:
        self.modules = dict(modules)
        self.inputs: dict[str, torch.Tensor] = {}  # path -> float32 B × T × I, rows outside the mask set to zero
        self.outputs: dict[str, torch.Tensor] = {}  # path -> B × T × O, part of the autograd graph
        self.rows = dict.fromkeys(self.modules, 0)  # counted rows per module over every batch
        self._mask: torch.Tensor | None = None

    def _hook(self, path: str):
        def hook(module: torch.nn.Module, args: tuple, output: torch.Tensor) -> None:
            if path in self.outputs:
                raise HookError(path, "runs twice in one forward pass; its weight gradient would need both calls")
            inputs = args[0].detach().float()
            self.rows[path] += len(_rows(inputs, self._mask, path))
            if self._mask is not None:
                inputs = inputs * self._mask.to(inputs.device, inputs.dtype).unsqueeze(-1)
            self.inputs[path] = inputs.reshape(inputs.shape[0], -1, inputs.shape[-1])
            self.outputs[path] = output

        return hook

    @contextlib.contextmanager
    def attached(self) -> Iterator[OutputGradHooks]:
        handles = [module.register_forward_hook(self._hook(path)) for path, module in self.modules.items()]
        try:
            yield self
        finally:
            for handle in handles:
                handle.remove()

    @contextlib.contextmanager
    def batch(self, mask: torch.Tensor | None) -> Iterator[None]:
        self._mask = mask
        try:
            yield
        finally:
            self._mask = None
            self.inputs.clear()
            self.outputs.clear()

    def weight_gradients(self, scalar: torch.Tensor, per_example: bool) -> Iterator[tuple[str, torch.Tensor]]:
        """(path, ∂scalar/∂W) for every module: B × O × I per example (`scalar` must be a sum of per-example terms,
        which holds because examples do not interact in eval mode), or O × I for the batch; graph kept."""
        paths = list(self.outputs)
        grads = torch.autograd.grad(scalar, [self.outputs[path] for path in paths], retain_graph=True)
        for path, grad in zip(paths, grads, strict=True):
            grad = grad.reshape(grad.shape[0], -1, grad.shape[-1]).float()
            pattern = "bto,bti->boi" if per_example else "bto,bti->oi"
            yield path, torch.einsum(pattern, grad, self.inputs[path])
