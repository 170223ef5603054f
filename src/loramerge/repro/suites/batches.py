"""Running a model over examples in batches that shrink when the device runs out of memory.

An evaluation's batch size (`evaluate.batch_size`) is set for a typical GPU; a smaller GPU, or one shared with
another process, can run out of memory on a large batch. Instead of failing the job, the batch that ran out is
retried at half the size, down to one example. Each example's features depend on its own inputs alone, so they,
and the predictions made from them, are those of an uninterrupted run (up to the last bits of rounding, where a
kernel sums in another order for another batch shape). Once a size ran out of memory on a
device, this process never tries a larger one on that device again: memory that a failed batch could not get rarely
comes back during a job, and growing back would pay a failed batch, and a log line, again and again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from tqdm import tqdm

from loramerge.errors import SubjectError

_log = logging.getLogger(__name__)
# device -> the largest batch size that has not run out of memory on it since one did (see the module docstring)
_FITTING_BATCH_SIZE: dict[str, int] = {}


class DeviceMemoryError(SubjectError):
    """A device without memory for even one example at a time; the message starts with the device."""


def is_out_of_memory(error: BaseException) -> bool:
    """Whether `error` says the device ran out of memory: torch's OutOfMemoryError (CUDA's caching allocator), or
    the RuntimeError other backends and libraries (MPS, cuBLAS, cuDNN) raise with "out of memory" in the message."""
    if isinstance(error, torch.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


def run_in_batches(
    count: int,
    batch_size: int,
    run_batch: Callable[[int, int], None],
    device: str | torch.device,
    progress: bool = False,
) -> None:
    """Call `run_batch(start, stop)` over consecutive batches of range(count), in order, each once it succeeds.

    A batch that runs out of memory (`is_out_of_memory`) is retried at half the size after emptying the CUDA cache,
    and later batches keep the reduced size; at batch size 1 the error is a DeviceMemoryError. `run_batch` must
    leave no trace of a batch that raised (write its results only after computing them)."""
    if batch_size < 1:
        raise SubjectError("batch size", f"must be at least 1, got {batch_size}")
    device = torch.device(device)
    size = min(batch_size, _FITTING_BATCH_SIZE.get(str(device), batch_size))
    start = 0
    with tqdm(total=count, desc="encode", unit="example", disable=not progress, leave=False) as bar:
        while start < count:
            stop = min(start + size, count)
            try:
                run_batch(start, stop)
            except Exception as error:
                if not is_out_of_memory(error):
                    raise
                if size == 1:
                    raise DeviceMemoryError(
                        device, "out of memory at batch size 1: the model does not fit beside one example"
                    ) from error
            else:
                bar.update(stop - start)
                start = stop
                continue
            # Outside the handler, so that the traceback no longer holds the failed batch's tensors when the cache
            # is emptied.
            _log.warning("out of memory at batch size %d on %s; retrying with %d", size, device, size // 2)
            size //= 2
            _FITTING_BATCH_SIZE[str(device)] = size
            if device.type == "cuda":
                torch.cuda.empty_cache()
