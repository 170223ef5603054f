# Config validation, the experiment plan and path helpers. No rules here.

import os

from snakemake.utils import validate

from loramerge.errors import LoramergeError
from loramerge.repro.plan import build_plan, check_suite, code_hash, derive_seed, finetune_settings

validate(config, schema="schemas/config.schema.yaml")
try:
    check_suite(config)
    PLANS = build_plan(config)
except LoramergeError as error:
    raise WorkflowError(f"invalid configuration: {error}") from None

SUITE = config["suite"]
DEMO = SUITE == "demo"
VISION = None if DEMO else config["vision"]
TASKS = list(config["demo"]["tasks"] if DEMO else VISION["tasks"])
SPLITS = ["train", "val", "test"]
EVAL_SPLITS = ["val", "test"]
LIBRARY = f"{workflow.basedir}/src/loramerge"
CODE = {
    "vision": code_hash(
        [
            f"{LIBRARY}/repro/suites",
            f"{LIBRARY}/repro/splits.py",
            f"{LIBRARY}/repro/heads.py",
            f"{LIBRARY}/repro/jobs.py",
        ]
    ),
    "merge": code_hash(
        [
            f"{LIBRARY}/{name}"
            for name in (
                "adapters.py",
                "api.py",
                "atomic.py",
                "cli.py",
                "io.py",
                "params.py",
                "updates.py",
                "bases",
                "ties",
                "methods",
                "repro/jobs.py",
            )
        ]
    ),
    "hub": code_hash(
        [
            f"{LIBRARY}/repro/hub.py",
            f"{LIBRARY}/adapters.py",
            f"{LIBRARY}/repro/suites/clip/hubdata.py",
            f"{LIBRARY}/repro/splits.py",
        ]
    ),
    "search": code_hash([f"{LIBRARY}/repro/search"]),
    "report": code_hash([f"{LIBRARY}/repro/report"]),
}
DEVICE_GPUS = 1 if config["device"] == "cuda" else 0


wildcard_constraints:
    suite=SUITE,
    task="|".join(TASKS),
    split="|".join(SPLITS),
    method="|".join(PLANS),
    point=r"[A-Za-z0-9_.~\-]+",


def adapter_dirs(wildcards):
    return expand(
        "resources/{suite}/adapters/{task}", suite=wildcards.suite, task=TASKS
    )


def head_files(wildcards):
    return expand(
        "resources/{suite}/heads/{task}.safetensors", suite=wildcards.suite, task=TASKS
    )


def eval_data(wildcards):
    return expand(
        "resources/{suite}/data/{task}/{split}.safetensors",
        suite=wildcards.suite,
        task=TASKS,
        split=EVAL_SPLITS,
    )


def merge_inputs(wildcards):
    inputs = {"adapters": adapter_dirs(wildcards)}
    if PLANS[wildcards.method].uses_decomposition:
        inputs["decomposition"] = f"results/{wildcards.suite}/decomposition"
    inputs["branches"] = [
        f"results/{wildcards.suite}/search/{branch}.json"
        for branch in PLANS[wildcards.method].branches.values()
    ]
    return inputs


def method_merges(wildcards):
    return expand(
        "results/{suite}/merged/{method}/{point}",
        suite=wildcards.suite,
        method=wildcards.method,
        point=PLANS[wildcards.method].points,
    )


def finetuned_results(wildcards):
    return expand(
        "results/{suite}/finetuned/{task}.json", suite=wildcards.suite, task=TASKS
    )


def searches(wildcards):
    return expand(
        "results/{suite}/search/{method}.json", suite=wildcards.suite, method=PLANS
    )


def published_finetuned():
    """Task -> the fine-tuned test accuracy (%) the KnOTS authors published; empty for the demo."""
    if DEMO:
        return {}
    return {task: spec["finetuned_published"] for task, spec in VISION["tasks"].items()}


def permutation_url(task):
    permutations = VISION["permutations"]
    return permutations["url"].format(
        revision=permutations["revision"], file=VISION["tasks"][task]["permutation"]
    )


def lock_file(wildcards):
    """The lock as an input once it exists, so that relocking reruns the downloads; before that, the download jobs
    stop with a message saying how to create it (and a dry run still shows the whole DAG).
    """
    return [VISION["lock"]] if os.path.exists(VISION["lock"]) else []


def dataset_inputs(wildcards):
    spec = VISION["tasks"][wildcards.task]
    inputs = {
        "lock": lock_file(wildcards),
        "backbone": f"resources/{wildcards.suite}/backbone",
        "classnames": spec["classnames"],
    }
    if spec["split"] == "permutation":
        inputs["permutation"] = (
            f"resources/{wildcards.suite}/data/{wildcards.task}/permutation.safetensors"
        )
    return inputs
