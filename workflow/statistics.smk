# Per-task statistics for the data-using merges (regmean reads Gram matrices, fisher the diagonal Fisher): each task's
# fine-tuned model (the backbone with its ΔW applied) runs over a seeded subset of the task's training inputs, with
# hooks on the LoRA-targeted layers. One job per statistics kind and task; resources/<suite>/stats/<kind> is then the
# statistics folder a merge reads. Jobs exist only for the kinds that planned merges read (merge.smk asks for them).

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
        adapter="resources/{suite}/adapters/{task}",
        data=f"resources/{{suite}}/data/{{task}}/{SUITE_SPEC.statistics_split}.safetensors",
        # the Fisher scores the task's head; a Gram does not read it
        head=lambda wildcards: (
            f"resources/{wildcards.suite}/heads/{wildcards.task}.safetensors"
            if wildcards.kind == "fisher"
            else []
        ),
    output:
        directory("resources/{suite}/stats/{kind}/{task}"),
    log:
        "logs/{suite}/statistics/{kind}/{task}.log",
    benchmark:
        "results/{suite}/benchmarks/statistics/{kind}/{task}.tsv"
    wildcard_constraints:
        kind="gram|fisher",
    conda:
        "../envs/gpu.yaml"
    threads: STATISTICS["threads"]
    resources:
        gpu=DEVICE_GPUS,
    params:
        suite_kind=SUITE_SPEC.kind,
        split=SUITE_SPEC.statistics_split,
        masked=lambda wildcards: SUITE_SPEC.masked_classes(wildcards.task),
        examples=STATISTICS["examples"],
        # the same rows for both kinds of a task
        seed=lambda wildcards: derive_seed(config["seed"], "statistics", wildcards.task),
        batch_size=STATISTICS["batch_size"],
        estimator=lambda wildcards: (
            STATISTICS["fisher_estimator"] if wildcards.kind == "fisher" else None
        ),
        dtype=STATISTICS["dtype"],
        threads=STATISTICS["threads"],
        device=config["device"],
        code=script_code("statistics.py"),
    script:
        "../scripts/statistics.py"
