"""Cluster execution: the SLURM profile covers every rule of the workflow, and a real single-node SLURM cluster runs
the reduced demo through it, GPU rules with a GPU, giving the same tables as a local run.

The cluster test (`slurm` marker) needs root and Debian's slurmctld, slurmd, slurm-client and munge packages, which
.ci/run installs; elsewhere install them (`apt-get install slurmctld slurmd slurm-client munge`) or deselect it with
`python -m pytest -m "not slurm"`. It starts its own munged, slurmctld and slurmd on localhost (own ports, own munge
socket), symlinks its config into /etc/slurm (jobs' inner srun ignores SLURM_CONF), and stops and removes all of it
afterwards, also when the test fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from snakemake.cli import parse_set_resources
from snakemake.profiles import ProfileConfigFileParser
from snakemake.resources import Resources
from snakemake_executor_plugin_slurm.partitions import read_partition_file
from workflow_runner import ROOT, SMOKE_CONFIG, TABLES, expected_counts, snakemake, workdir_with

PROFILE = ROOT / "profiles" / "slurm"
DEFAULT_PROFILE = ROOT / "profiles" / "default"
SUPPORT = ROOT / "tests" / "cluster" / "slurm"
ENV_FILES = {str(ROOT / "envs" / f"{name}.yaml") for name in ("download", "merge", "gpu", "report")}
# What the profile must leave to the workflow: `gpu` comes from the rules, the partition from partitions.yaml.
PROFILE_MUST_NOT_SET = {"gpu", "gres", "gpu_model", "slurm_partition", "cpus_per_task", "cpus_per_gpu", "tasks_per_gpu"}
SLURM_RUN_TIMEOUT = 1500  # s; the run takes ~7 min on 2 cores
PACKAGES = "slurmctld slurmd slurm-client munge"


# --- the rules and the profile, statically ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rules(tmp_path_factory) -> dict[str, dict]:
    """Every rule of the workflow under every shipped config (suites include different rules), device = cuda."""
    union: dict[str, dict] = {}
    for config in sorted((ROOT / "config").glob("*.yaml")):
        workdir = tmp_path_factory.mktemp(config.stem)
        describe = [sys.executable, SUPPORT / "describe_rules.py", ROOT / "Snakefile", workdir, config]
        result = subprocess.run(describe, capture_output=True, text=True)
        assert result.returncode == 0, f"{config}: {result.stderr[-4000:]}"
        for rule in json.loads(result.stdout):
            union.setdefault(rule["name"], rule)
    assert union
    return union


def job_rules(rules: dict[str, dict]) -> dict[str, dict]:
    """The rules whose jobs go to the cluster."""
    return {name: rule for name, rule in rules.items() if rule["runs_a_job"] and not rule["local"]}


def profile_resources() -> tuple[Resources, dict[str, Resources]]:
    """default-resources and set-resources of the profile, parsed as Snakemake parses them."""
    with open(PROFILE / "config.yaml") as stream:
        arguments = ProfileConfigFileParser().parse(stream)
    return Resources.parse(arguments["default-resources"], allow_expressions=True), parse_set_resources(
        arguments["set-resources"]
    )


def requested(rule: str, name: str, attempt: int) -> int | None:
    """The value of resource `name` that a job of `rule` asks for at its `attempt`-th try, under the profile."""
    defaults, per_rule = profile_resources()
    resource = per_rule.get(rule, {}).get(name) or defaults.get(name)
    if resource is None:
        return None
    if resource.is_evaluable():
        resource = resource.evaluate(wildcards={}, input=[], attempt=attempt, threads=1, rulename=rule, async_run=None)
    return resource.value


def gpu_rules(rules: dict[str, dict]) -> set[str]:
    return {name for name, rule in job_rules(rules).items() if rule["gpu"]}


def test_every_rule_runs_in_one_of_the_pinned_envs_and_writes_a_log(rules):
    for name, rule in job_rules(rules).items():
        assert rule["conda"] in ENV_FILES, f"rule {name}: conda env {rule['conda']} is none of {sorted(ENV_FILES)}"
        assert rule["log"], f"rule {name} has no log:"


def test_the_gpu_rules_are_the_training_and_evaluation_rules(rules):
    gpus = gpu_rules(rules)
    assert {"pretrain_backbone", "finetune_adapter", "evaluate_finetuned", "evaluate_merged"} <= gpus
    assert all(rules[name]["conda"].endswith("/gpu.yaml") for name in gpus)
    assert all(rules[name]["gpu"] == 1 for name in gpus)


def test_profile_gives_every_rule_a_runtime_and_memory_that_grow_on_retry(rules):
    for name in job_rules(rules):
        for resource in ("runtime", "mem_mb"):
            values = [requested(name, resource, attempt) for attempt in (1, 2, 3)]
            assert all(isinstance(value, int) and value > 0 for value in values), (name, resource, values)
            assert values[0] < values[1] < values[2], f"rule {name}: {resource} does not grow on retry: {values}"


def test_profile_names_only_rules_of_the_workflow_and_sizes_every_gpu_rule_itself(rules):
    defaults, per_rule = profile_resources()
    unknown = set(per_rule) - set(rules)
    assert not unknown, f"{PROFILE / 'config.yaml'}: set-resources for rules the workflow does not have: {unknown}"
    missing = gpu_rules(rules) - set(per_rule)
    assert not missing, f"{PROFILE / 'config.yaml'}: GPU rules left at the default (CPU-sized) resources: {missing}"
    for name, resources in [("default-resources", defaults), *per_rule.items()]:
        assert not PROFILE_MUST_NOT_SET & set(resources), f"{name} sets {PROFILE_MUST_NOT_SET & set(resources)}"
    assert requested("evaluate_merged", "mem_mb", 1) > requested("search", "mem_mb", 1)


def test_profile_runs_slurm_with_conda_envs_and_a_status_command_that_needs_no_accounting():
    profile = yaml.safe_load((PROFILE / "config.yaml").read_text())
    assert profile["executor"] == "slurm"
    assert profile["software-deployment-method"] == "conda"
    assert profile["slurm-status-command"] == "squeue"
    assert profile["retries"] >= 1
    partitions = read_partition_file(PROFILE / profile["slurm-partition-config"])
    assert any(partition.limits.max_gpu > 0 for partition in partitions)
    assert any(partition.limits.max_gpu == 0 for partition in partitions)


def test_default_profile_runs_one_gpu_job_at_a_time_unless_told_otherwise():
    profile = yaml.safe_load((DEFAULT_PROFILE / "config.yaml").read_text())
    assert profile["resources"]["gpu"] == 1 and profile["cores"] == "all"
    assert "executor" not in profile and "software-deployment-method" not in profile


# --- a real cluster ------------------------------------------------------------------------------------------------


def _binary(name: str) -> str | None:
    return shutil.which(name, path=f"{os.environ.get('PATH', '')}{os.pathsep}/usr/sbin{os.pathsep}/sbin")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _stop(pid_file: Path, timeout: float = 15) -> None:
    """Stop the daemon whose PID file this is (SIGTERM, then SIGKILL)."""
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text().split()[0])
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            os.kill(pid, 0)  # raises ProcessLookupError once it is gone
            time.sleep(0.2)
        os.kill(pid, signal.SIGKILL)


def _link(target: Path, link: Path, cleanup: contextlib.ExitStack) -> None:
    """/etc/slurm/<name> -> our file; refuses to replace a file that is not a link left by an earlier run of ours."""
    if link.is_symlink() and "loramerge-slurm-" in os.readlink(link):
        link.unlink()  # left by an earlier run that could not clean up
    if link.exists() or link.is_symlink():
        pytest.fail(f"{link} exists and is not this test's: refusing to replace a real SLURM configuration")
    link.symlink_to(target)
    cleanup.callback(lambda: link.unlink() if link.is_symlink() and os.readlink(link) == str(target) else None)


def _cancel_jobs(timeout: float = 30) -> None:
    subprocess.run(["scancel", "--full", "--user", "root"], capture_output=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        active = subprocess.run(["squeue", "-h", "-t", "PD,R,CG"], capture_output=True, text=True).stdout.strip()
        if not active:
            return
        time.sleep(0.5)


def _log_tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else f"({path}: none)"


@pytest.fixture(scope="module")
def slurm_cluster() -> Iterator[Path]:
    """munged, slurmctld and slurmd on localhost; yields the folder holding their config, state and logs."""
    missing = [name for name in ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol") if not _binary(name)]
    if missing:
        pytest.fail(
            f"the SLURM test needs {', '.join(missing)}: install them with `apt-get install {PACKAGES}` (Debian, "
            f"Ubuntu; .ci/run does), or deselect the test with `python -m pytest -m 'not slurm'`"
        )
    if os.geteuid() != 0:
        pytest.fail("the SLURM test starts slurmd and writes /etc/slurm, so it runs as root (as in CI), or deselect "
                    "it with `python -m pytest -m 'not slurm'`")  # fmt: skip
    with contextlib.ExitStack() as cleanup:
        # Not under pytest's temp folder: munged must traverse the path, and root's pytest folders are private.
        folder = Path(tempfile.mkdtemp(prefix="loramerge-slurm-"))
        cleanup.callback(shutil.rmtree, folder, ignore_errors=True)
        folder.chmod(0o755)
        for name in ("state", "spool", "log"):
            (folder / name).mkdir()
        munge = folder / "munge"
        munge.mkdir(mode=0o755)
        key = munge / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        shutil.chown(munge, "munge", "munge")
        shutil.chown(key, "munge", "munge")
        cleanup.callback(_stop, munge / "munged.pid")
        subprocess.run(
            ["runuser", "-u", "munge", "--", _binary("munged"), f"--socket={munge}/munge.socket",
             f"--key-file={key}", f"--log-file={munge}/munged.log", f"--pid-file={munge}/munged.pid",
             f"--seed-file={munge}/munged.seed"],
            check=True,
        )  # fmt: skip

        node = socket.gethostname().split(".")[0]
        values = {"node": node, "dir": folder, "ctld_port": _free_port(), "slurmd_port": _free_port()}
        etc = Path("/etc/slurm")
        if not etc.exists():
            etc.mkdir()
            cleanup.callback(lambda: etc.rmdir() if not any(etc.iterdir()) else None)
        for name in ("slurm.conf", "gres.conf"):
            template = string.Template((SUPPORT / f"{name}.in").read_text())
            (folder / name).write_text(template.substitute(values))
            # Jobs run their step through srun with every SLURM_* variable removed, SLURM_CONF included: the
            # configuration has to be where SLURM looks by default.
            _link(folder / name, etc / name, cleanup)

        cleanup.callback(_stop, folder / "slurmctld.pid")
        cleanup.callback(_stop, folder / "slurmd.pid")
        # Jobs still running when the test stops (a failure, a timeout) are cancelled before the daemons go.
        cleanup.callback(_cancel_jobs)
        subprocess.run([_binary("slurmctld")], check=True)
        subprocess.run([_binary("slurmd")], check=True)
        deadline = time.monotonic() + 60
        while True:
            states = subprocess.run(["sinfo", "-h", "-o", "%P %T"], capture_output=True, text=True).stdout.split()
            if states == ["cpu*", "idle", "gpu", "idle"]:
                break
            if time.monotonic() > deadline:
                pytest.fail(
                    f"SLURM did not come up (sinfo: {states}):\n{_log_tail(folder / 'log' / 'slurmctld.log')}\n"
                    f"{_log_tail(folder / 'log' / 'slurmd.log')}"
                )
            time.sleep(0.3)
        yield folder


def slurm_profile(tmp_path: Path) -> Path:
    """profiles/slurm without its conda deployment (no conda channel is reachable here); every other key as is."""
    profile = yaml.safe_load((PROFILE / "config.yaml").read_text())
    del profile["software-deployment-method"]
    folder = tmp_path / "profile"
    shutil.copytree(PROFILE, folder)
    (folder / "config.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    return folder


def jobs_of_run() -> list[dict[str, str]]:
    """Every job the cluster ran for the workflow, from `scontrol show job` (kept for MinJobAge after the end: two
    hours in the test cluster, longer than any run)."""
    output = subprocess.run(["scontrol", "--oneliner", "show", "job"], capture_output=True, text=True, check=True)
    jobs = []
    for line in output.stdout.splitlines():
        fields = dict(re.findall(r"(\S+?)=(\S*)", line))
        match = re.fullmatch(r"rule_(?P<rule>.+?)(_wildcards_.*)?", fields.get("Comment", ""))
        if fields.get("JobName", "").startswith("loramerge_") and match:
            jobs.append({**fields, "rule": match["rule"]})
    return jobs


def minutes(time_limit: str) -> int:
    days, _, clock = time_limit.rpartition("-")
    hours, mins, _ = (int(part) for part in clock.split(":"))
    return int(days or 0) * 1440 + hours * 60 + mins


def megabytes(memory: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([MG])", memory).groups()
    return int(number) * (1024 if unit == "G" else 1)


@pytest.mark.slurm
def cluster_config() -> dict:
    """The smoke config cut to the paper's hybrid and the methods it needs: every stage and both partitions in half
    the jobs, since each job on the cluster also pays for a scheduler round trip and a Snakemake start-up."""
    config = yaml.safe_load(SMOKE_CONFIG.read_text())
    methods = config["merge"]["methods"]
    config["merge"]["methods"] = {name: methods[name] for name in ("ta", "knots_ties", "cur_ties", "hybrid")}
    return config


def test_slurm_runs_the_smoke_demo_gpu_rules_on_gpus_with_the_tables_of_a_local_run(slurm_cluster, rules, tmp_path):
    config = cluster_config()
    cluster = workdir_with(tmp_path / "slurm", config)
    command = [
        sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(cluster),
        "--workflow-profile", str(slurm_profile(tmp_path)), "--config", "device=cuda",
        # The plugin's first status check comes 40 s after a submission; a test cluster answers at once.
        "--slurm-init-seconds-before-status-checks", "2",
    ]  # fmt: skip
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    # The local run of the same config goes on meanwhile: the SLURM run mostly waits on the scheduler.
    local = workdir_with(tmp_path / "local", config)
    with ThreadPoolExecutor(max_workers=1) as pool:
        local_run = pool.submit(snakemake, local)
        started = time.monotonic()
        try:
            result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=SLURM_RUN_TIMEOUT)
        except subprocess.TimeoutExpired as timeout:
            stderr = timeout.stderr.decode(errors="replace") if isinstance(timeout.stderr, bytes) else timeout.stderr
            pytest.fail(f"the SLURM run took over {SLURM_RUN_TIMEOUT} s:\n{(stderr or '')[-6000:]}")
        slurm_seconds = time.monotonic() - started
        local_run.result()
    output = result.stdout + result.stderr
    assert result.returncode == 0, (
        f"{output[-8000:]}\n--- slurmctld ---\n{_log_tail(slurm_cluster / 'log' / 'slurmctld.log')}"
    )
    print(f"SLURM run of the smoke demo: {slurm_seconds:.0f} s")

    jobs = jobs_of_run()
    assert {job["JobState"] for job in jobs} == {"COMPLETED"}
    expected = {rule: count for rule, count in expected_counts(config).items() if rule != "all"}
    assert Counter(job["rule"] for job in jobs) == expected
    gpus = gpu_rules(rules)
    assert "evaluate_merged" in gpus
    for job in jobs:
        rule = job["rule"]
        if rule in gpus:
            assert job.get("TresPerJob") == "gres:gpu:1" and job["Partition"] == "gpu", job
        else:
            assert "TresPerJob" not in job and job["Partition"] == "cpu", job
        assert minutes(job["TimeLimit"]) == requested(rule, "runtime", 1), job
        assert megabytes(job["MinMemoryNode"]) == requested(rule, "mem_mb", 1), job
    # Each GPU job saw the GPU that SLURM granted it, and ran on the CPU because this torch has no CUDA.
    logs = sorted((cluster / "logs" / "demo" / "evaluate_merged").glob("*.log"))
    assert len(logs) == expected["evaluate_merged"]
    for log in logs:
        text = log.read_text()
        assert re.search(r"cuda was requested but .* \(CUDA_VISIBLE_DEVICES=[01]\); running on the CPU", text), log

    first, second = (run / "results" / "demo" for run in (local, cluster))
    compared = sorted(path.relative_to(first) for path in [*first.rglob("*.csv"), *first.glob("search/*.json")])
    assert len(compared) >= len(TABLES) + 2
    for path in compared:
        assert (first / path).read_bytes() == (second / path).read_bytes(), path
