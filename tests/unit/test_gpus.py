"""The GPU picker: concurrent jobs over fake devices never share one, a crashed or failed job frees its device, and a
job without a GPU runs on the CPU and says why. Jobs are real processes, as Snakemake runs them."""

from __future__ import annotations

import fcntl
import itertools
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
from collections import defaultdict
from pathlib import Path

import pytest

from loramerge.repro import gpus
from loramerge.repro.jobs import pick_device

# One job: pick a device among `devices` fake GPUs, report when it got it, hold it `hold` seconds (or forever), then
# exit (or fail inside job_log, as a failing script does).
JOB = textwrap.dedent(
    """
    import json, sys, time
    from loramerge.repro.jobs import job_log, pick_device

    def report(**values):  # job_log sends stdout to the log; the test reads the process's own stdout
        sys.__stdout__.write(json.dumps(values) + "\\n")
        sys.__stdout__.flush()

    devices, hold, log_path, fail = json.loads(sys.argv[1])
    with job_log(log_path) as log:
        report(device=pick_device("cuda", log, visible=lambda: devices), start=time.monotonic())
        if fail:
            raise RuntimeError("the job failed")
        time.sleep(hold if hold is not None else 3600)
        report(end=time.monotonic())
    """
)


def start_job(tmp_path: Path, name: str, devices: list[str], hold: float | None, fail: bool = False):
    env = {key: value for key, value in os.environ.items() if key != "SLURM_JOB_ID"}
    env[gpus.LOCK_DIR_VARIABLE] = str(tmp_path / "locks")
    log = tmp_path / f"{name}.log"
    command = [sys.executable, "-c", JOB, json.dumps([devices, hold, str(log), fail])]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env), log


def is_locked(path: Path) -> bool:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(descriptor)  # closing also drops the lock this check may have taken
    return False


def test_concurrent_jobs_never_share_a_device(tmp_path):
    devices = ["0", "1", "2"]
    jobs = [start_job(tmp_path, f"job{i}", devices, hold=1.0) for i in range(7)]
    held = defaultdict(list)
    for process, log in jobs:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err + log.read_text()
        first, last = (json.loads(line) for line in out.splitlines())
        held[first["device"]].append((first["start"], last["end"]))
    assert set(held) == {"cuda:0", "cuda:1", "cuda:2"}
    for device, spans in held.items():
        spans.sort()
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert start >= end, f"{device} was held by two jobs at once: {spans}"
    # Seven jobs over three devices: at least four had to wait, and their logs say so.
    waiting = [log for _, log in jobs if "held by other jobs" in log.read_text()]
    assert len(waiting) >= 4


def test_a_killed_job_frees_its_device(tmp_path):
    process, _ = start_job(tmp_path, "crash", ["GPU-3f2a"], hold=None)
    line = process.stdout.readline()
    assert line, process.stderr.read()
    assert json.loads(line)["device"] == "cuda:0"
    lock = tmp_path / "locks" / "gpu-GPU-3f2a.lock"
    assert is_locked(lock)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert not is_locked(lock)


def test_a_failed_job_frees_its_device_for_the_next(tmp_path):
    failed, failed_log = start_job(tmp_path, "failed", ["0"], hold=None, fail=True)
    failed.communicate(timeout=60)
    assert failed.returncode != 0 and "the job failed" in failed_log.read_text()
    following, log = start_job(tmp_path, "next", ["0"], hold=0.0)
    out, err = following.communicate(timeout=60)
    assert following.returncode == 0, err
    assert json.loads(out.splitlines()[0])["device"] == "cuda:0"
    assert "held by other jobs" not in log.read_text()


def test_device_ids_follow_cuda_visible_devices():
    assert gpus.device_ids(None, 2) == ["0", "1"]
    assert gpus.device_ids("3,1", 2) == ["3", "1"]
    # torch stops counting at the first entry it cannot use, so the count can be shorter than the mask
    assert gpus.device_ids("GPU-aa, GPU-bb,GPU-cc", 2) == ["GPU-aa", "GPU-bb"]
    assert gpus.device_ids("", 0) == []


def test_lock_dir_is_per_user_and_per_slurm_allocation():
    default = gpus.lock_dir({})
    assert default == Path(tempfile.gettempdir()) / f"loramerge-gpu-locks-{os.getuid()}"
    assert gpus.lock_dir({gpus.LOCK_DIR_VARIABLE: "/shared/locks"}) == Path("/shared/locks")
    assert gpus.lock_dir({gpus.LOCK_DIR_VARIABLE: "/shared/locks", "SLURM_JOB_ID": "42"}) == Path(
        "/shared/locks/slurm-42"
    )


def test_no_visible_gpu_falls_back_to_the_cpu_and_says_why(caplog, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    logger = logging.getLogger("test_gpus")
    with caplog.at_level(logging.INFO, logger="test_gpus"):
        assert pick_device("cuda", logger, visible=lambda: []) == "cpu"
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert "running on the CPU" in record.getMessage() and "CUDA_VISIBLE_DEVICES=0" in record.getMessage()


@pytest.mark.parametrize("requested", ["cpu", "cuda:1"])
def test_other_requests_are_returned_as_they_are(requested, caplog):
    logger = logging.getLogger("test_gpus")
    with caplog.at_level(logging.INFO, logger="test_gpus"):
        assert pick_device(requested, logger, visible=lambda: ["0"]) == requested
    assert f"device: {requested}" in caplog.text
