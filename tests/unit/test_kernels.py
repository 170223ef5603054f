"""The compiled kernels against the same code run as plain Python (NUMBA_DISABLE_JIT=1).

Compiled numba does not check bounds: an out-of-range index silently reads or writes other memory. Interpreted, the
same code raises IndexError, so running every merge path once uncompiled catches such bugs, and the results of the
two runs must agree.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from loramerge import load_adapters, merge

METHODS = {
    "ties": {"top_k": 30},
    "dare_ties": {"top_k": 50, "drop_p": 0.3},
    "knots_ties": {"top_k": 20},
    "core_ties": {"top_k": 40},
    "cur_ties": {"top_k": 25, "trim_scope": "per_layer"},
}

SCRIPT = """
import sys
from safetensors.torch import save_file
from loramerge import load_adapters, merge
methods = {methods!r}
adapters = load_adapters(sys.argv[2:])
out = {{}}
for method, params in methods.items():
    for name, update in merge(adapters, method, **params).items():
        out[f"{{method}}/{{name}}"] = update.dense().contiguous()
save_file(out, sys.argv[1])
"""


def test_compiled_kernels_match_the_interpreted_code(adapter_dirs, tmp_path: Path):
    result = tmp_path / "interpreted.safetensors"
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1"}
    subprocess.run(
        [sys.executable, "-c", SCRIPT.format(methods=METHODS), str(result), *map(str, adapter_dirs)],
        check=True,
        env=env,
        timeout=600,
    )
    interpreted = load_file(result)
    adapters = load_adapters(adapter_dirs)
    compiled = {}
    for method, params in METHODS.items():
        for name, update in merge(adapters, method, **params).items():
            compiled[f"{method}/{name}"] = update.dense()
    assert sorted(compiled) == sorted(interpreted)
    for key, value in compiled.items():
        torch.testing.assert_close(value, interpreted[key], atol=1e-6, rtol=1e-6, msg=key)
