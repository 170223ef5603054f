# Inputs of the CLIP suites (kind clip), downloaded at the commits and checksums of the suite's lock file: the CLIP
# backbone, the KnOTS adapters, the KnOTS split permutations and the evaluation images (prepared once as uint8 crops),
# then the zero-shot text heads.
# The lock is an input once it exists, so that relocking reruns the downloads; before that, the download jobs stop
# with a message saying how to create it (and a dry run still shows the whole DAG).


rule download_backbone:
    input:
        lock=lambda wildcards: SUITE_SPEC.lock_inputs(),
    output:
        clip=directory("resources/{suite}/clip"),
        backbone=directory("resources/{suite}/backbone"),
    log:
        "logs/{suite}/download_backbone.log",
    conda:
        "../../envs/download.yaml"
    params:
        repo=SUITE_SPEC.settings["backbone"]["repo"],
        lock=SUITE_SPEC.lock,
        code=script_code("download_backbone.py"),
    script:
        "../../scripts/download_backbone.py"


rule download_adapter:
    input:
        lock=lambda wildcards: SUITE_SPEC.lock_inputs(),
    output:
        directory("resources/{suite}/adapters/{task}"),
    log:
        "logs/{suite}/download_adapter/{task}.log",
    conda:
        "../../envs/download.yaml"
    params:
        repo=lambda wildcards: SUITE_SPEC.settings["tasks"][wildcards.task]["adapter"],
        lock=SUITE_SPEC.lock,
        code=script_code("download_adapter.py"),
    script:
        "../../scripts/download_adapter.py"


rule fetch_permutation:
    input:
        lock=lambda wildcards: SUITE_SPEC.lock_inputs(),
    output:
        "resources/{suite}/data/{task}/permutation.safetensors",
    log:
        "logs/{suite}/fetch_permutation/{task}.log",
    conda:
        "../../envs/download.yaml"
    params:
        url=lambda wildcards: SUITE_SPEC.permutation_url(wildcards.task),
        lock=SUITE_SPEC.lock,
        code=script_code("fetch_permutation.py"),
    script:
        "../../scripts/fetch_permutation.py"


rule prepare_dataset:
    input:
        lock=lambda wildcards: SUITE_SPEC.lock_inputs(),
        backbone="resources/{suite}/backbone",
        classnames=lambda wildcards: SUITE_SPEC.settings["tasks"][wildcards.task][
            "classnames"
        ],
        # only the permutation splits read one
        permutation=lambda wildcards: (
            f"resources/{wildcards.suite}/data/{wildcards.task}/permutation.safetensors"
            if SUITE_SPEC.settings["tasks"][wildcards.task]["split"] == "permutation"
            else []
        ),
    output:
        val="resources/{suite}/data/{task}/val.safetensors",
        test="resources/{suite}/data/{task}/test.safetensors",
    log:
        "logs/{suite}/prepare_dataset/{task}.log",
    benchmark:
        "results/{suite}/benchmarks/prepare_dataset/{task}.tsv"
    conda:
        "../../envs/download.yaml"
    params:
        spec=lambda wildcards: SUITE_SPEC.settings["tasks"][wildcards.task],
        image_size=SUITE_SPEC.settings["image_size"],
        val_fraction=SUITE_SPEC.settings["val_fraction"],
        lock=SUITE_SPEC.lock,
        code=script_code("prepare_dataset.py"),
    script:
        "../../scripts/prepare_dataset.py"


rule text_heads:
    input:
        clip="resources/{suite}/clip",
        classnames=lambda wildcards: SUITE_SPEC.settings["tasks"][wildcards.task][
            "classnames"
        ],
    output:
        "resources/{suite}/heads/{task}.safetensors",
    log:
        "logs/{suite}/text_heads/{task}.log",
    conda:
        "../../envs/gpu.yaml"
    resources:
        gpu=DEVICE_GPUS,
    params:
        templates=lambda wildcards: SUITE_SPEC.settings["tasks"][wildcards.task][
            "templates"
        ],
        device=config["device"],
        code=script_code("text_heads.py"),
    script:
        "../../scripts/text_heads.py"


# The statistics of the data-using merges (RegMean, Fisher) read a seeded subset of each task's training images,
# prepared once like the evaluation splits; only scheduled when a planned merge reads statistics.
rule statistics_data:
    input:
        lock=lambda wildcards: SUITE_SPEC.lock_inputs(),
        backbone="resources/{suite}/backbone",
        classnames=lambda wildcards: SUITE_SPEC.settings["tasks"][wildcards.task][
            "classnames"
        ],
    output:
        f"resources/{{suite}}/data/{{task}}/{SUITE_SPEC.statistics_split}.safetensors",
    log:
        "logs/{suite}/statistics_data/{task}.log",
    benchmark:
        "results/{suite}/benchmarks/statistics_data/{task}.tsv"
    conda:
        "../../envs/download.yaml"
    params:
        dataset=lambda wildcards: SUITE_SPEC.settings["tasks"][wildcards.task][
            "dataset"
        ],
        image_size=SUITE_SPEC.settings["image_size"],
        examples=config["statistics"]["examples"],
        seed=lambda wildcards: derive_seed(
            config["seed"], "statistics-data", wildcards.task
        ),
        lock=SUITE_SPEC.lock,
        code=script_code("statistics_data.py"),
    script:
        "../../scripts/statistics_data.py"
