"""The conda envs of the rule families (envs/*.yaml): every version is an exact pin, on conda-forge only, and the same
as in requirements.txt, the pip environment the tests and local runs use. No conda channel is reachable here, so the
envs are checked as files; their post-deploy script (which installs loramerge into each env) is run with a fake pip."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ENVS = {name: ROOT / "envs" / f"{name}.yaml" for name in ("download", "merge", "gpu", "report")}
CPU_TORCH = {"download", "merge"}
# conda-forge name -> pip name where they differ beyond case and -/_ (PEP 503 normalization handles those)
PIP_NAMES = {"pytorch": "torch", "matplotlib-base": "matplotlib"}
# conda-side tools that requirements.txt does not list (the venv's own pip and setuptools are not in a pip freeze)
CONDA_ONLY = {"python", "pip", "setuptools"}
# name==version, or name=version=build (the exact version and a build pattern, e.g. pytorch's CPU or CUDA build)
VERSION = r"[0-9][0-9A-Za-z.]*"
EXACT = re.compile(rf"^(?P<name>[A-Za-z0-9_.\-]+)(==(?P<version>{VERSION})|=(?P<bversion>{VERSION})=(?P<build>\S+))$")


def normalize(name: str) -> str:
    name = re.sub(r"[-_.]+", "-", name).lower()
    return PIP_NAMES.get(name, name)


def requirements() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[normalize(name)] = version
    return pins


def pins(env: str) -> dict[str, tuple[str, str | None]]:
    """package -> (version, build pattern or None) of an env file, failing on anything that is not an exact pin."""
    spec = yaml.safe_load(ENVS[env].read_text())
    result = {}
    for dependency in spec["dependencies"]:
        assert isinstance(dependency, str), f"{ENVS[env]}: {dependency} (a pip section escapes the conda pins)"
        match = EXACT.match(dependency)
        assert match, f"{ENVS[env]}: {dependency!r} is not an exact pin (name==version or name=version=build)"
        version = match["version"] or match["bversion"]
        assert version.count(".") >= 1, f"{ENVS[env]}: {dependency!r} has no full version"
        result[match["name"]] = (version, match["build"])
    return result


@pytest.mark.parametrize("env", list(ENVS))
def test_env_pins_every_package_exactly_from_conda_forge_only(env):
    spec = yaml.safe_load(ENVS[env].read_text())
    assert spec["channels"] == ["conda-forge", "nodefaults"]
    packages = pins(env)
    assert "python" in packages and "pip" in packages


@pytest.mark.parametrize("env", list(ENVS))
def test_env_versions_are_those_of_requirements_txt(env):
    pip = requirements()
    shared = {name: version for name, (version, _) in pins(env).items() if normalize(name) in pip}
    assert len(shared) >= 4, f"{ENVS[env]}: hardly any package maps to requirements.txt: {shared}"
    different = {name: (version, pip[normalize(name)]) for name, version in shared.items()}
    different = {name: versions for name, versions in different.items() if versions[0] != versions[1]}
    assert not different, f"{ENVS[env]}: (env, requirements.txt) versions differ: {different}"
    unknown = {name for name in pins(env) if normalize(name) not in pip} - CONDA_ONLY
    assert not unknown, f"{ENVS[env]}: {sorted(unknown)} missing from requirements.txt, so their versions go unchecked"


def test_only_the_gpu_env_takes_a_cuda_build_of_pytorch():
    torch_builds = {env: pins(env).get("pytorch") for env in ENVS}
    assert torch_builds["gpu"] == (requirements()["torch"], "cuda*")
    for env in CPU_TORCH:
        assert torch_builds[env] == (requirements()["torch"], "cpu*")
    assert torch_builds["report"] is None  # tables and figures never import torch


def test_all_envs_share_one_python():
    assert len({pins(env)["python"] for env in ENVS}) == 1


def test_the_requirements_pin_what_the_slurm_profile_needs():
    assert {"snakemake", "snakemake-executor-plugin-slurm", "snakemake-executor-plugin-slurm-jobstep"} <= set(
        requirements()
    )


# --- the post-deploy script -------------------------------------------------------------------------------------


@pytest.fixture
def fake_python(tmp_path) -> tuple[dict[str, str], Path]:
    """A `python` first on PATH that records its arguments, standing in for the env's interpreter."""
    calls = tmp_path / "calls.txt"
    fake = tmp_path / "bin" / "python"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    fake.chmod(0o755)
    env = {key: value for key, value in os.environ.items() if key != "LORAMERGE_ROOT"}
    env["PATH"] = f"{fake.parent}{os.pathsep}{env['PATH']}"
    return env, calls


@pytest.mark.parametrize("env", list(ENVS))
def test_every_env_has_the_post_deploy_script(env):
    script = ROOT / "envs" / f"{env}.post-deploy.sh"
    assert script.resolve() == (ROOT / "envs" / "post-deploy.sh").resolve()


def test_post_deploy_installs_the_repository_without_dependencies(fake_python):
    env, calls = fake_python
    script = ROOT / "envs" / "post-deploy.sh"
    result = subprocess.run(["bash", script], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    arguments = calls.read_text().split()
    assert arguments[:3] == ["-m", "pip", "install"]
    assert "--no-deps" in arguments and arguments[-2:] == ["--editable", str(ROOT)]


def test_post_deploy_outside_the_repository_stops_and_says_how_to_fix_it(fake_python, tmp_path):
    env, calls = fake_python
    script = ROOT / "envs" / "post-deploy.sh"
    result = subprocess.run(["bash", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode != 0 and "LORAMERGE_ROOT" in result.stderr
    assert not calls.exists()
    env["LORAMERGE_ROOT"] = str(ROOT)
    result = subprocess.run(["bash", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0 and calls.read_text().split()[-1] == str(ROOT)
