# Per-task statistics for the data-using merges (regmean reads Gram matrices, fisher the diagonal Fisher): each task's
# fine-tuned model (the backbone with its ΔW applied) runs over a seeded subset of the task's training inputs, with
# hooks on the LoRA-targeted layers. One job per statistics kind loads the backbone once and writes every task's
# statistics into resources/<suite>/stats/<kind>, the statistics folder a merge reads. Jobs exist only for the kinds
# that planned merges read (merge.smk asks for them).

from loramerge.repro.stats.needs import needed_kinds

try:
    # refuses a suite that cannot collect what the planned merges read (no training inputs, no train files named)
    needed_kinds(SUITE_SPEC, PLANS)
except LoramergeError as error:
    raise WorkflowError(f"invalid configuration: {error}") from None

STATISTICS = config["statistics"]


rule statistics:
    input:
        backbone="resources/{suite}/backbone",
        adapters=adapter_dirs,
        data=expand(
            "resources/{{suite}}/data/{task}/{split}.safetensors",
            task=TASKS,
            split=SUITE_SPEC.statistics_split,
        ),
        # the Fisher scores each task's head; a Gram does not read them
        heads=lambda wildcards: (
            head_files(wildcards) if wildcards.kind == "fisher" else []
        ),
    output:
        directory("resources/{suite}/stats/{kind}"),
    log:
        "logs/{suite}/statistics/{kind}.log",
    benchmark:
        "results/{suite}/benchmarks/statistics/{kind}.tsv"
    wildcard_constraints:
        kind="gram|fisher",
    conda:
        "../envs/gpu.yaml"
    threads: STATISTICS["threads"]
    resources:
        gpu=DEVICE_GPUS,
    params:
        suite_kind=SUITE_SPEC.kind,
        tasks=TASKS,
        split=SUITE_SPEC.statistics_split,
        masked=SUITE_SPEC.masked_by_task(),
        examples=STATISTICS["examples"],
        # the same rows for both kinds of a task
        seeds={task: derive_seed(config["seed"], "statistics", task) for task in TASKS},
        batch_size=STATISTICS["batch_size"],
        estimator=lambda wildcards: (
            STATISTICS["fisher_estimator"] if wildcards.kind == "fisher" else None
        ),
        dtype=STATISTICS["dtype"],
        threads=STATISTICS["threads"],
        device=config["device"],
        made_by=made_by,
        code=script_code("statistics.py"),
    script:
        "../scripts/statistics.py"
