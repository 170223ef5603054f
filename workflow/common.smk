# Config validation, the experiment plan and path helpers. No rules here.

from functools import cache

from snakemake.utils import validate

from loramerge.errors import LoramergeError
from loramerge.methods.catalog import ADAPTATION
from loramerge.repro.codehash import code_hash
from loramerge.repro.plan import build_plan, derive_seed
from loramerge.repro.report.paper import paper_tables
from loramerge.repro.suites.base import load_suite

validate(config, schema="schemas/config.schema.yaml")
try:
    # The one suite dispatch: the config's `kind` picks the suite, which checks its section and names its input rules.
    SUITE_SPEC = load_suite(config)
    PLANS = build_plan(config)
except LoramergeError as error:
    raise WorkflowError(f"invalid configuration: {error}") from None

SUITE = SUITE_SPEC.name
TASKS = SUITE_SPEC.tasks
SPLITS = ["train", "val", "test"]
EVAL_SPLITS = ["val", "test"]


def script_code(script):
    """Rerun trigger of a rule: a hash of its script and of every loramerge module the script imports, over the code
    with comments and docstrings removed (so a comment edit reruns nothing) and the data files shipped beside it.
    """
    return code_hash([f"scripts/{script}"], root=workflow.basedir)


# Rules that run the `loramerge` console script (decompose, analyze).
CLI_CODE = code_hash(["loramerge.cli"], root=workflow.basedir)
DEVICE_GPUS = 1 if config["device"] == "cuda" else 0
# Merged points per evaluation job (null: all points of a method in one job; each job loads the model once).
POINTS_PER_JOB = config["evaluate"]["points_per_job"]


wildcard_constraints:
    suite=SUITE,
    task="|".join(TASKS),
    split="|".join(SPLITS),
    method="|".join(PLANS),
    part=r"part\d+",


@cache  # the same inputs (adapters, data splits) feed many jobs; the rules are fixed once the DAG is built
def producing_rule(path):
    """The name of the rule whose output pattern `path` matches (None for a file no rule makes)."""
    for candidate in workflow.rules:
        if any(pattern.match(path) for pattern in candidate.output):
            return candidate.name
    return None


def made_by(wildcards, input):
    """Input path -> the name of the rule that made it (sorted), so that a job that cannot read an input names
    that rule and says what to delete for it to run again (loramerge.repro.jobs.reading_inputs).
    """
    producers = {path: producing_rule(path) for path in sorted(set(input))}
    return {path: name for path, name in producers.items() if name is not None}


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
    if ADAPTATION in PLANS[wildcards.method].facts.needs:
        # the coefficients the adaptation stage learned, one folder per point
        inputs["adapted"] = f"resources/{wildcards.suite}/adapt/{wildcards.method}"
    return inputs


def eval_parts(method):
    """Part name -> the names of the points one evaluation job of `method` evaluates, in plan order."""
    names = list(PLANS[method].points)
    size = POINTS_PER_JOB or len(names)
    return {f"part{k // size}": names[k : k + size] for k in range(0, len(names), size)}


def part_points(wildcards):
    """The points (name -> parameters) of one evaluation job."""
    points = PLANS[wildcards.method].points
    return {name: points[name] for name in eval_parts(wildcards.method)[wildcards.part]}


def method_merges(wildcards):
    """The folder of a method's merges (one sub-folder per point), which one merge job writes."""
    return f"results/{wildcards.suite}/merged/{wildcards.method}"


def method_evaluations(evaluation, method=None):
    """The evaluation folders (one per job) of a method, or of the rule's {method}: `eval` (per task) or `joint`."""
    return lambda wildcards: expand(
        "results/{suite}/{evaluation}/{method}/{part}",
        suite=wildcards.suite,
        evaluation=evaluation,
        method=method or wildcards.method,
        part=eval_parts(method or wildcards.method),
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
    """Task -> the fine-tuned test accuracy (%) the adapters' authors published; empty for the demo."""
    return SUITE_SPEC.published_finetuned()


# The paper whose published numbers the report tables beside ours (report.paper), and the tables its folder holds.
PAPER = config["report"]["paper"]
PAPER_TABLES = set(paper_tables(PAPER)) if PAPER else set()


def paper_for(*tables):
    """The paper to table beside ours in these tables; None where it does not print them (the Llama suite's paper
    has only Table 4)."""
    return PAPER if set(tables) <= PAPER_TABLES else None
