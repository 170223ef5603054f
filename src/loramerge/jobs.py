"""What every workflow job does around its work: log to its log file, use its thread budget, and report errors."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path


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


def pick_device(requested: str, logger: logging.Logger) -> str:
    """The device a job runs on: `cuda` when asked for and present, else the CPU, saying so in the log."""
    import torch

    if requested == "cuda" and not torch.cuda.is_available():
        logger.warning("device: cuda was requested but no GPU is visible; running on the CPU")
        return "cpu"
    logger.info("device: %s", requested)
    return requested
