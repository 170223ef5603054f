# Adaptation: merges whose coefficients are learned on unlabelled validation inputs (TARA-Merging). One job per method
# learns the coefficients of every point (variant, seed) of its plan, one folder per point, loading the model and
# measuring the fine-tuned models' entropies once; the shared merge rule then builds the merged adapters from them,
# so evaluation, search and tables treat them like any other merge. Labels are never read.


rule adapt:
    input:
        backbone="resources/{suite}/backbone",
        adapters=adapter_dirs,
        decomposition="results/{suite}/decomposition",
        heads=head_files,
        val=lambda wildcards: expand(
            "resources/{suite}/data/{task}/val.safetensors",
            suite=wildcards.suite,
            task=TASKS,
        ),
    output:
        directory("resources/{suite}/adapt/{method}"),
    log:
        "logs/{suite}/adapt/{method}.log",
    benchmark:
        "results/{suite}/benchmarks/adapt/{method}.tsv"
    conda:
        "../envs/gpu.yaml"
    threads: config["evaluate"]["threads"]
    resources:
        gpu=DEVICE_GPUS,
    params:
        kind=SUITE_SPEC.kind,
        points=lambda wildcards: PLANS[wildcards.method].points,
        settings=lambda wildcards: config["merge"]["methods"][wildcards.method].get(
            "adapt", {}
        ),
        tasks=TASKS,
        masked=SUITE_SPEC.masked_by_task(),
        dtype=config["evaluate"]["dtype"],
        batch_size=config["evaluate"]["batch_size"],
        threads=config["evaluate"]["threads"],
        device=config["device"],
        code=script_code("adapt.py"),
    script:
        "../scripts/adapt.py"
