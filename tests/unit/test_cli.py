"""The command-line contract: methods, decompose + cached merge, merge outputs and their provenance."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from loramerge import load_adapters, load_decomposition, merge
from loramerge.cli import main
from loramerge.methods import METHODS
from loramerge.methods.catalog import CATALOG


def test_methods_lists_every_registered_name(capsys):
    assert main(["methods"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == sorted(METHODS) == sorted(CATALOG)


def test_cached_decomposition_gives_the_same_merge(adapter_dirs, tmp_path):
    cache = tmp_path / "decomp"
    assert main(["decompose", "--quiet", "--adapters", *map(str, adapter_dirs), "--out", str(cache)]) == 0
    adapters = load_adapters(adapter_dirs)
    cached = merge(adapters, "hybrid", decomposition=load_decomposition(cache, adapters), alpha=0.4)
    fresh = merge(adapters, "hybrid", alpha=0.4)
    for name in fresh:  # the cache holds the bases exactly, and merging from them is the same computation
        assert torch.equal(cached[name].dense(), fresh[name].dense())


def test_a_cache_of_other_adapters_is_refused(adapter_dirs, tmp_path, capsys):
    cache = tmp_path / "decomp"
    main(["decompose", "--quiet", "--adapters", *map(str, adapter_dirs), "--out", str(cache)])
    other = tmp_path / "other"
    shutil.copytree(adapter_dirs[2], other)
    (other / "adapter_config.json").write_text(
        json.dumps({**json.loads((other / "adapter_config.json").read_text()), "lora_alpha": 3})
    )
    out = tmp_path / "merged"
    args = [
        "merge",
        "--quiet",
        "--method",
        "knots_ties",
        "--decomposition",
        str(cache),
        "--out",
        str(out),
        "--adapters",
        str(adapter_dirs[0]),
        str(adapter_dirs[1]),
        str(other),
    ]
    assert main(args) == 2
    assert "decomposition.json" in capsys.readouterr().err
    assert not out.exists()


def test_delta_merge_writes_dense_updates_and_provenance(adapter_dirs, tmp_path):
    out = tmp_path / "ties"
    args = [
        "merge",
        "--quiet",
        "--method",
        "ties",
        "--adapters",
        *map(str, adapter_dirs),
        "--out",
        str(out),
        "--lam",
        "0.4",
        "--top-k",
        "30",
        "--trim-scope",
        "per_layer",
    ]
    assert main(args) == 0
    deltas = load_file(out / "delta.safetensors")
    expected = merge(load_adapters(adapter_dirs), "ties", lam=0.4, top_k=30, trim_scope="per_layer")
    assert sorted(deltas) == sorted(f"{name}.weight" for name in expected)
    for name, update in expected.items():
        assert torch.equal(deltas[f"{name}.weight"], update.dense())
    manifest = json.loads((out / "merge.json").read_text())
    assert manifest["method"] == {"method": "ties", "lam": 0.4, "top_k": 30.0, "trim_scope": "per_layer"}
    assert [entry["sha256"]["adapter_model.safetensors"] for entry in manifest["adapters"]] == [
        a.sha256["adapter_model.safetensors"] for a in load_adapters(adapter_dirs).adapters
    ]
    assert set(manifest["versions"]) == {"loramerge", "torch", "python"}


def test_hybrid_branch_parameters_and_overwrite(adapter_dirs, tmp_path):
    out = tmp_path / "outputs" / "hybrid"
    base = ["merge", "--quiet", "--method", "hybrid", "--adapters", *map(str, adapter_dirs), "--out", str(out)]
    assert main([*base, "--alpha", "0.7", "--set", "svd.lam=0.6", "--set", "cur.top_k=30"]) == 0
    first = json.loads((out / "merge.json").read_text())["method"]
    assert first["alpha"] == 0.7 and first["svd"]["lam"] == 0.6 and first["cur"]["top_k"] == 30.0
    assert first["svd"]["top_k"] == 20.0 and first["cur"]["lam"] == 1.0
    assert main([*base, "--alpha", "auto-energy", "--overwrite"]) == 0
    assert json.loads((out / "merge.json").read_text())["method"]["alpha"] == "auto-energy"
    assert sorted(p.name for p in out.parent.iterdir()) == ["hybrid"]  # no staging folder left behind


def test_lock_runs_the_reproduction_package_command(tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text("suite: demo\n")
    assert main(["lock", "--config", str(config)]) == 2
    assert f"{config}: not a paper-suite config with a 'vision' section" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "problem"),
    [(b"suite: \xff\xfe\n", "can't decode byte"), (b"[" * 5000 + b"]" * 5000, "nested too deeply to read")],
    ids=["not UTF-8", "nested 5000 deep"],
)
def test_lock_of_an_unreadable_config_names_the_file(tmp_path, capsys, content, problem):
    config = tmp_path / "config.yaml"
    config.write_bytes(content)
    assert main(["lock", "--config", str(config)]) == 2
    error = capsys.readouterr().err
    assert f"{config}: not a paper-suite config" in error and problem in error


def test_lock_of_a_suite_without_downloads_says_so(tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text("suite: demo\nkind: demo_vision\n")
    assert main(["lock", "--config", str(config)]) == 2
    assert "a suite of kind 'demo_vision' downloads nothing to lock" in capsys.readouterr().err


def test_lock_of_the_llama_suite_needs_hf_token_before_any_download(tmp_path, capsys, monkeypatch):
    """Its base model is gated: without HF_TOKEN the lock stops at once, names the variable, and writes nothing."""
    monkeypatch.delenv("HF_TOKEN", raising=False)
    config = yaml.safe_load((Path(__file__).resolve().parents[2] / "config" / "paper-llama3-8b.yaml").read_text())
    config["nli"]["lock"] = str(tmp_path / "paper.lock.json")
    path = tmp_path / "paper.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["lock", "--config", str(path)]) == 2
    assert "meta-llama/Meta-Llama-3-8B: a gated repository: set HF_TOKEN" in capsys.readouterr().err
    assert not (tmp_path / "paper.lock.json").exists()


def test_lock_without_the_repro_dependencies_says_what_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.delitem(sys.modules, "loramerge.repro.cli", raising=False)
    monkeypatch.setitem(sys.modules, "yaml", None)  # `import yaml` now fails as if PyYAML were not installed
    assert main(["lock", "--config", str(tmp_path / "config.yaml")]) == 2
    err = capsys.readouterr().err
    assert "needs 'yaml'" in err and "pip install 'loramerge[repro]'" in err
