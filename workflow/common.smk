# Config validation, the experiment plan and path helpers. No rules here.

from snakemake.utils import validate

from loramerge.errors import LoramergeError
from loramerge.repro.jobs import gather_files
from loramerge.repro.plan import build_plan, code_hash, derive_seed
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
# Merged points per evaluation job (null: all points of a method in one job; each job loads the model once).
POINTS_PER_JOB = config["evaluate"]["points_per_job"]


wildcard_constraints:
    suite=SUITE,
    task="|".join(TASKS),
    split="|".join(SPLITS),
    method="|".join(PLANS),
    point=r"[A-Za-z0-9_.~\-]+",
    part=r"part\d+",
    evaluation="eval|joint",


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


def eval_parts(method):
    """Part name -> the names of the points one evaluation job of `method` evaluates, in plan order."""
    names = list(PLANS[method].points)
    size = POINTS_PER_JOB or len(names)
    return {f"part{k // size}": names[k : k + size] for k in range(0, len(names), size)}


def part_points(wildcards):
    """The points (name -> parameters) of one evaluation job."""
    points = PLANS[wildcards.method].points
    return {name: points[name] for name in eval_parts(wildcards.method)[wildcards.part]}


def part_merges(wildcards):
    return expand(
        "results/{suite}/merged/{method}/{point}",
        suite=wildcards.suite,
        method=wildcards.method,
        point=eval_parts(wildcards.method)[wildcards.part],
    )


def evaluation_parts(wildcards):
    return expand(
        "results/{suite}/{evaluation}_parts/{method}/{part}",
        suite=wildcards.suite,
        evaluation=wildcards.evaluation,
        method=wildcards.method,
        part=eval_parts(wildcards.method),
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
