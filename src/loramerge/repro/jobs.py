"""What every workflow job does around its work: log to its log file, use its thread budget, pick its device, and
report errors (naming the rule that made an input file the job cannot read)."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path

from loramerge.errors import LoramergeError, SubjectError
from loramerge.repro import gpus


@contextlib.contextmanager
def job_log(log_path: str | Path, threads: int = 1) -> Iterator[logging.Logger]:
    """Send stdout, stderr (progress bars included) and a logger to `log_path`, and cap torch and numba at `threads`.

    The error is written to the log before it propagates, so `snakemake --show-failed-logs` shows the cause."""
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", buffering=1) as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        # The handler sits on the package's logger, so what any loramerge module logs (e.g. a batch retried after
        # running out of GPU memory) reaches the job's log too; it is removed when the job ends and the file closes.
        package_logger = logging.getLogger("loramerge")
        handler = logging.StreamHandler(log)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        package_logger.addHandler(handler)
        package_logger.setLevel(logging.INFO)
        logger = logging.getLogger("loramerge.job")
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
            logger.info("done in %.1f s", time.perf_counter() - start)
        except Exception:
            logger.exception("job failed")
            raise
        finally:
            package_logger.removeHandler(handler)


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


class IntermediateFileError(SubjectError):
    """An input file that another rule of the workflow made but that cannot be used (truncated, corrupt, half
    written): "<file> (made by rule <rule>): <problem>; delete <it or its output folder> and rerun"."""

    def __init__(self, path: str, rule: str, problem: str) -> None:
        self.subject, self.rule, self.problem = path, rule, problem
        LoramergeError.__init__(self, f"{path} (made by rule {rule}): {problem}")


# What a reader raises about a file it cannot use: the project's errors, and the ones Python's own readers raise.
_READ_ERRORS = (LoramergeError, ValueError, OSError)


@contextlib.contextmanager
def reading_inputs(made_by: Mapping[str, str]) -> Iterator[None]:
    """Around the reads of a job's inputs: an error about a file that is, or lies inside, one of the inputs
    `made_by` maps (input path -> the rule whose output it is; the workflow passes it as `params.made_by`) becomes
    an IntermediateFileError "<file> (made by rule <rule>): <problem>; delete <input> and rerun". Deleting the
    input makes Snakemake run that rule again; errors about anything else pass unchanged."""
    try:
        yield
    except _READ_ERRORS as error:
        found = _input_named_by(error, made_by)
        if found is None:
            raise
        path, made, problem = found
        remedy = "delete it and rerun" if path == made else f"delete {made} and rerun"
        raise IntermediateFileError(path, made_by[made], f"{problem}; {remedy}") from error


def _input_holding(path: str, inputs: Iterable[str]) -> str | None:
    """The input that is `path` or a folder holding it; the nearest one when inputs nest."""
    target = os.path.abspath(path)
    holding = [
        name for name in inputs if target == os.path.abspath(name) or target.startswith(os.path.abspath(name) + os.sep)
    ]
    return max(holding, key=len, default=None)


def _input_named_by(error: BaseException, made_by: Mapping[str, str]) -> tuple[str, str, str] | None:
    """(the file the error is about, the input holding it, the problem) when the error names a file of an input."""
    subject = getattr(error, "subject", None) or getattr(error, "path", None) or getattr(error, "filename", None)
    if isinstance(subject, str | os.PathLike):
        made = _input_holding(os.fspath(subject), made_by)
        if made is not None:
            problem = getattr(error, "problem", None) or str(error).removeprefix(f"{os.fspath(subject)}: ")
            return os.fspath(subject), made, problem
    # Errors that carry only a message ("<file>: <problem>", as the search's readers raise them).
    message = str(error)
    head, separator, problem = message.partition(": ")
    if separator and (made := _input_holding(head, made_by)) is not None:
        return head, made, problem
    return None
