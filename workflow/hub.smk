# Inputs of the paper suites, downloaded at the commits and checksums of the suite's lock file: the CLIP backbone, the
# KnOTS adapters, the KnOTS split permutations and the evaluation images (prepared once as uint8 crops), then the
# zero-shot text heads and the joint head.


rule download_backbone:
    input:
        lock=lock_file,
    output:
        clip=directory("resources/{suite}/clip"),
        backbone=directory("resources/{suite}/backbone"),
    log:
        "logs/{suite}/download_backbone.log",
    conda:
        "../envs/download.yaml"
    params:
        repo=VISION["backbone"]["repo"],
        lock=VISION["lock"],
        code=CODE["hub"],
    script:
        "../scripts/download_backbone.py"


rule download_adapter:
    input:
        lock=lock_file,
    output:
        directory("resources/{suite}/adapters/{task}"),
    log:
        "logs/{suite}/download_adapter/{task}.log",
    conda:
        "../envs/download.yaml"
    params:
        repo=lambda wildcards: VISION["tasks"][wildcards.task]["adapter"],
        lock=VISION["lock"],
        code=CODE["hub"],
    script:
        "../scripts/download_adapter.py"


rule fetch_permutation:
    input:
        lock=lock_file,
    output:
        "resources/{suite}/data/{task}/permutation.safetensors",
    log:
        "logs/{suite}/fetch_permutation/{task}.log",
    conda:
        "../envs/download.yaml"
    params:
        url=lambda wildcards: permutation_url(wildcards.task),
        lock=VISION["lock"],
        code=CODE["hub"],
    script:
        "../scripts/fetch_permutation.py"


rule prepare_dataset:
    input:
        unpack(dataset_inputs),
    output:
        val="resources/{suite}/data/{task}/val.safetensors",
        test="resources/{suite}/data/{task}/test.safetensors",
    log:
        "logs/{suite}/prepare_dataset/{task}.log",
    benchmark:
        "results/{suite}/benchmarks/prepare_dataset/{task}.tsv"
    conda:
        "../envs/download.yaml"
    params:
        spec=lambda wildcards: VISION["tasks"][wildcards.task],
        image_size=VISION["image_size"],
        val_fraction=VISION["val_fraction"],
        holdout_seed=lambda wildcards: derive_seed(
            config["seed"], "holdout", wildcards.task
        ),
        lock=VISION["lock"],
        code=CODE["hub"],
    script:
        "../scripts/prepare_dataset.py"


rule text_heads:
    input:
        clip="resources/{suite}/clip",
        classnames=lambda wildcards: VISION["tasks"][wildcards.task]["classnames"],
    output:
        "resources/{suite}/heads/{task}.safetensors",
    log:
        "logs/{suite}/text_heads/{task}.log",
    conda:
        "../envs/gpu.yaml"
    resources:
        gpu=DEVICE_GPUS,
    params:
        templates=lambda wildcards: VISION["tasks"][wildcards.task]["templates"],
        device=config["device"],
        code=CODE["vision"],
    script:
        "../scripts/text_heads.py"
