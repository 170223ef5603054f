"""benchmarks/gpu_check.py's smoke run on the CPU: every figure of the GPU report is printed, on one line each, and the
update comes off bit for bit."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"
DTYPES = ("float32", "bfloat16")


@pytest.fixture(scope="module")
def report() -> list[str]:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--device", "cpu", "--threads", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def line(report: list[str], prefix: str) -> str:
    found = [text for text in report if text.startswith(prefix)]
    assert len(found) == 1, f"expected one line starting {prefix!r}, got {found}"
    return found[0]


def test_model_and_update_lines(report):
    assert re.search(r"Llama-3-8B-shaped \(tiny\) classifier, [\d,]+ parameters, built on cpu", line(report, "model: "))
    # 2 tiny layers × q, k, v, o
    assert "rank 8 on 8 attention matrices" in line(report, "update: ")


@pytest.mark.parametrize("dtype", DTYPES)
def test_each_dtype_applies_undoes_and_measures(report, dtype):
    applied = line(report, f"apply/undo {dtype}, update in host memory")
    assert "changed inside: yes, restored bit-exactly: yes" in applied
    for batch_size in (4, 8):
        forward = line(report, f"forward {dtype} batch {batch_size}: ")
        assert re.search(r": [\d,]+ tokens/s \([\d,.]+ examples/s; 24 examples", forward)
    assert "n/a on cpu" in line(report, f"peak GPU memory {dtype}: ")
    assert not any("update on the device" in text for text in report)  # a GPU-only row


def test_clip_and_the_cost_estimate(report):
    assert re.search(r"batch 8: [\d,]+ images/s$", line(report, "CLIP ViT-B/32 (tiny) "))
    inputs = line(report, "cost inputs: ")
    assert "44,052 examples per evaluation" in inputs and "× 80 tokens = 3.52 M tokens" in inputs
    for dtype in DTYPES:
        cost = line(report, f"seconds per merged-model evaluation {dtype}: ")
        seconds, rate = re.search(r": ([\d,.]+) \(= 3.52 M tokens / ([\d,]+) tokens/s", cost).groups()
        # the estimate is the formula it prints (apply/undo adds well under a second on the tiny model)
        assert float(seconds.replace(",", "")) == pytest.approx(
            3_524_160 / float(rate.replace(",", "")), rel=1e-3, abs=0.5
        )
