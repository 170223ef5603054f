"""How much a run's numbers move when only the machine's arithmetic changes: the workflow run twice from empty
working directories, the second with one setting changed that alters float rounding but not the experiment (by
default the demo's pre-training thread count), and the two runs' per-task tables compared cell by cell.

    python benchmarks/run_variation.py --quick                                # the reduced demo (tests/smoke)
    python benchmarks/run_variation.py                                        # the default demo
    python benchmarks/run_variation.py --config my.yaml --set evaluate.threads=2

It prints each run's wall time and, from the jobs' benchmark files, the jobs, wall seconds and CPU seconds per rule
(the first run is a cold run from an empty tree); then which result CSVs are byte-identical, each method's Table 3
average (grid selection) in both runs and the largest absolute difference over every number of the per-task table."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]


def run(workdir: Path, config: dict) -> float:
    (workdir / "config").mkdir(parents=True)
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    command = [
        sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir),
        "--workflow-profile", "none", "--cores", "all", "--quiet",
    ]  # fmt: skip
    started = time.monotonic()
    subprocess.run(command, check=True, env=env, capture_output=True)
    return time.monotonic() - started


def rule_totals(benchmarks: Path) -> pd.DataFrame:
    """Jobs, wall seconds and CPU seconds per rule, summed over the rule's benchmark files (`<rule>.tsv` or
    `<rule>/*.tsv`)."""
    rows = []
    for path in sorted(benchmarks.rglob("*.tsv")):
        rule = path.relative_to(benchmarks).parts[0].removesuffix(".tsv")
        record = pd.read_csv(path, sep="\t").iloc[-1]
        rows.append({"rule": rule, "jobs": 1, "wall s": record["s"], "cpu s": record["cpu_time"]})
    totals = pd.DataFrame(rows).groupby("rule").sum().sort_values("wall s", ascending=False)
    totals.loc["total"] = totals.sum()
    return totals.round(1)


def with_setting(config: dict, assignment: str) -> dict:
    """`config` with `a.b.c=value` set (the value parsed as YAML)."""
    key, _, value = assignment.partition("=")
    changed = yaml.safe_load(yaml.safe_dump(config))
    *path, last = key.split(".")
    node = changed
    for part in path:
        node = node[part]
    if last not in node:
        raise SystemExit(f"--set {assignment}: {key} is not a key of the config")
    node[last] = yaml.safe_load(value)
    return changed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the reduced demo (tests/smoke/config.yaml)")
    parser.add_argument("--config", type=Path, help="a config file (default: config/config.yaml)")
    parser.add_argument(
        "--set", default=None, help="KEY=VALUE changed in the second run (default: pre-training threads)"
    )
    arguments = parser.parse_args()
    path = arguments.config or ROOT / ("tests/smoke/config.yaml" if arguments.quick else "config/config.yaml")
    config = yaml.safe_load(path.read_text())
    if arguments.set is None:
        threads = config["demo"]["pretrain"]["threads"]
        arguments.set = f"demo.pretrain.threads={1 if threads != 1 else 2}"
    second = with_setting(config, arguments.set)

    with tempfile.TemporaryDirectory() as scratch:
        runs = [Path(scratch) / "first", Path(scratch) / "second"]
        for workdir, settings, label in zip(runs, (config, second), ("as configured", arguments.set), strict=True):
            print(f"{label}: {run(workdir, settings):.0f} s", flush=True)
        results = [workdir / "results" / config["suite"] for workdir in runs]
        print("\nper rule, cold run as configured (benchmark files):")
        print(rule_totals(results[0] / "benchmarks").to_string())
        csvs = sorted(path.relative_to(results[0]) for path in results[0].rglob("*.csv"))
        identical = [path for path in csvs if (results[0] / path).read_bytes() == (results[1] / path).read_bytes()]
        print(f"\n{len(identical)} of {len(csvs)} result CSVs byte-identical; differing:")
        for path in csvs:
            if path not in identical:
                print(f"  {path}")
        tables = [pd.read_csv(next((result / "tables").glob("table*_pertask.csv"))) for result in results]

    # rows matched by method, selection and source: a run's table has a `± std` row only where its chosen setting
    # has replicates, so the same row number can hold another method in the other run
    keys = ["Method", "Selection", "Source"] if "Source" in tables[0] else ["Method", "Selection"]
    first, other = (table.fillna({"Selection": ""}).set_index(keys) for table in tables)
    shared = first.index.intersection(other.index)
    numbers = first.select_dtypes("number").columns
    difference = (first.loc[shared, numbers] - other.loc[shared, numbers]).abs().max().max()
    print(f"\nTable 3, grid selection, Average (normalized %): as configured | {arguments.set} | Δ")
    for key in shared:
        labels = dict(zip(keys, key, strict=True))
        if labels["Selection"] == "grid" and labels.get("Source", "ours") == "ours":
            a, b = first.at[key, "Average"], other.at[key, "Average"]
            print(f"  {labels['Method']:<32} {a:8.2f} {b:8.2f} {b - a:+7.2f}")
    print(f"largest |Δ| over every number of rows in both per-task tables: {difference:.4f}")


if __name__ == "__main__":
    main()
