"""What every workflow job does around its work: log to its log file, use its thread budget, pick its device, and
report errors."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from loramerge.repro import gpus


@contextlib.contextmanager
def job_log(log_path: str | Path, threads: int = 1) -> Iterator[logging.Logger]:
    """Send stdout, stderr (progress bars included) and a logger to `log_path`, and cap torch and numba at `threads`.

    The error is written to the log before it propagates, so `snakemake --show-failed-logs` shows the cause."""
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", buffering=1) as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        logger = logging.getLogger("loramerge.job")
        handler = logging.StreamHandler(log)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        logger.handlers[:] = [handler]
        logger.setLevel(logging.INFO)
        # Scripts import their libraries before entering here, so thread-count environment variables would come too
        # late; set the pools of whatever is loaded (jobs that never import torch should not pay for it).
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(threads)
        if "numba" in sys.modules:
            numba = sys.modules["numba"]
            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        start = time.perf_counter()
        try:
            yield logger
        except Exception:
            logger.exception("job failed")
            raise
        logger.info("done in %.1f s", time.perf_counter() - start)


def pick_device(
    requested: str, logger: logging.Logger, visible: Callable[[], Sequence[str]] = gpus.visible_gpus
) -> str:
    """The device a job runs on: for `cuda`, a GPU that no other job on this machine holds, else the CPU.

    `cuda` returns cuda:<i> for the i-th visible GPU (CUDA_VISIBLE_DEVICES, which SLURM sets to the GPUs it granted)
    and keeps that GPU locked until the process exits (loramerge.repro.gpus). It returns an explicit index rather than
    narrowing CUDA_VISIBLE_DEVICES to the chosen GPU because the scripts import torch before they get here, and
    counting the devices initialises CUDA, after which the variable is no longer read. Callers pass the returned
    device to every model and tensor. Without a usable GPU the job runs on the CPU and the log says why; any other
    request (cpu) is returned as it is. `visible` lists the devices; tests pass fakes."""
    if requested != "cuda":
        logger.info("device: %s", requested)
        return requested
    devices = list(visible())
    if not devices:
        import torch

        reason = "this torch is a CPU-only build" if torch.version.cuda is None else "torch sees no GPU"
        mask = os.environ.get("CUDA_VISIBLE_DEVICES", "unset")
        logger.warning("device: cuda was requested but %s (CUDA_VISIBLE_DEVICES=%s); running on the CPU", reason, mask)
        return "cpu"
    directory = gpus.lock_dir()
    index = gpus.acquire_gpu(devices, directory, logger)
    logger.info("device: cuda:%d (GPU %s of %d visible, lock in %s)", index, devices[index], len(devices), directory)
    return f"cuda:{index}"
