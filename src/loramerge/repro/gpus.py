"""One GPU per job when several GPU jobs share a machine: an exclusive lock file per visible device.

Snakemake's `gpu` resource only counts: `--resources gpu=4` lets four GPU jobs run at once but never tells a job which
device is its own, so every job would otherwise take `cuda:0`. A job here takes a non-blocking `flock` on the lock file
of the first free device among those it can see, and keeps the file open for the rest of its life; the kernel
releases the lock when the process ends, however it ends (exception, kill, crash), so no lock outlives its job.

Torch is imported only to count devices, so that the lock logic can be tested with fake devices and no CUDA.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

LOCK_DIR_VARIABLE = "LORAMERGE_GPU_LOCK_DIR"
# Descriptors of the locks this process holds. Never closed: closing one would release its lock while the job runs.
_HELD: list[int] = []


def device_ids(mask: str | None, count: int) -> list[str]:
    """The identifiers of the `count` devices torch numbers 0..count-1, under CUDA_VISIBLE_DEVICES = `mask`.

    Torch's cuda:i is the i-th entry of the mask (an index, a GPU-/MIG- UUID), so the lock names the device itself:
    two runs that see the same GPU through different masks still exclude each other."""
    if mask is None:
        return [str(index) for index in range(count)]
    return [entry.strip() for entry in mask.split(",")][:count]


def visible_gpus() -> list[str]:
    """The devices this process may use, in torch's order; [] when torch has no usable CUDA device."""
    import torch

    if not torch.cuda.is_available():
        return []
    return device_ids(os.environ.get("CUDA_VISIBLE_DEVICES"), torch.cuda.device_count())


def lock_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """Where the lock files live: $LORAMERGE_GPU_LOCK_DIR, else a folder of this user's under the temp directory.

    Inside a SLURM allocation the scheduler has already given this job its own GPUs, and with device cgroups every
    job sees its GPU as device 0; the locks are then kept per allocation, so that they only separate jobs that
    share one (Snakemake group jobs) and never make two allocations wait for each other's "device 0"."""
    base = Path(environ.get(LOCK_DIR_VARIABLE) or Path(tempfile.gettempdir()) / f"loramerge-gpu-locks-{os.getuid()}")
    job = environ.get("SLURM_JOB_ID")
    return base / f"slurm-{job}" if job else base


def _lock_path(directory: Path, device: str) -> Path:
    return directory / f"gpu-{re.sub(r'[^A-Za-z0-9_.-]', '_', device)}.lock"


def acquire_gpu(
    devices: Sequence[str],
    directory: Path,
    logger: logging.Logger,
    poll_seconds: float = 0.5,
    report_seconds: float = 60.0,
) -> int:
    """The index (into `devices`) of a device this process now holds for the rest of its life.

    Tries the devices in order and takes the first free one; while all are held, polls every `poll_seconds` and says
    so in the log every `report_seconds`."""
    if not devices:
        raise ValueError("acquire_gpu needs at least one device")
    directory.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    reported = None
    while True:
        for index, device in enumerate(devices):
            # Read-only is enough for flock, and lets users share a lock folder whose files another user created.
            descriptor = os.open(_lock_path(directory, device), os.O_RDONLY | os.O_CREAT, 0o666)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(descriptor)
                continue
            _HELD.append(descriptor)
            if reported is not None:
                logger.info("device: GPU %s became free after %.0f s", device, time.monotonic() - started)
            return index
        waited = time.monotonic() - started
        if reported is None or waited - reported >= report_seconds:
            logger.info(
                "device: all %d visible GPUs (%s) are held by other jobs (locks in %s); waiting for one to free up "
                "(a --resources gpu=N larger than the number of GPUs leaves jobs waiting here)",
                len(devices),
                ",".join(devices),
                directory,
            )
            reported = waited
        time.sleep(poll_seconds)
