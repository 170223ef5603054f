# Inputs of the demo suite (kind demo_vision): data generated offline from seeds (scikit-learn's bundled digits and
# procedural images), a tiny CLIP vision tower pre-trained on a shared image mixture, then one LoRA adapter (with its
# classification head) per task, written in the folder format a downloaded adapter has.


rule pretrain_data:
    output:
        "resources/{suite}/data/pretrain.safetensors",
    log:
        "logs/{suite}/pretrain_data.log",
    conda:
        "../../envs/download.yaml"
    params:
        sources=sorted(
            {task["source"] for task in SUITE_SPEC.settings["tasks"].values()}
        ),
        images_per_source=SUITE_SPEC.settings["pretrain"]["images_per_source"],
        image_size=SUITE_SPEC.settings["image_size"],
        seed=derive_seed(config["seed"], "pretrain-data"),
        code=script_code("pretrain_data.py"),
    script:
        "../../scripts/pretrain_data.py"


rule task_data:
    output:
        train="resources/{suite}/data/{task}/train.safetensors",
        val="resources/{suite}/data/{task}/val.safetensors",
        test="resources/{suite}/data/{task}/test.safetensors",
    log:
        "logs/{suite}/task_data/{task}.log",
    conda:
        "../../envs/download.yaml"
    params:
        spec=lambda wildcards: SUITE_SPEC.settings["tasks"][wildcards.task],
        image_size=SUITE_SPEC.settings["image_size"],
        seed=lambda wildcards: derive_seed(config["seed"], "task-data", wildcards.task),
        code=script_code("task_data.py"),
    script:
        "../../scripts/task_data.py"


rule pretrain_backbone:
    input:
        "resources/{suite}/data/pretrain.safetensors",
    output:
        directory("resources/{suite}/backbone"),
    log:
        "logs/{suite}/pretrain_backbone.log",
    benchmark:
        "results/{suite}/benchmarks/pretrain_backbone.tsv"
    conda:
        "../../envs/gpu.yaml"
    threads: SUITE_SPEC.settings["pretrain"]["threads"]
    resources:
        gpu=DEVICE_GPUS,
    params:
        backbone=SUITE_SPEC.settings["backbone"],
        image_size=SUITE_SPEC.settings["image_size"],
        pretrain=SUITE_SPEC.settings["pretrain"],
        seed=derive_seed(config["seed"], "pretrain"),
        device=config["device"],
        code=script_code("pretrain_backbone.py"),
    script:
        "../../scripts/pretrain_backbone.py"


rule finetune_adapter:
    input:
        backbone="resources/{suite}/backbone",
        train="resources/{suite}/data/{task}/train.safetensors",
    output:
        adapter=directory("resources/{suite}/adapters/{task}"),
        head="resources/{suite}/heads/{task}.safetensors",
    log:
        "logs/{suite}/finetune_adapter/{task}.log",
    benchmark:
        "results/{suite}/benchmarks/finetune_adapter/{task}.tsv"
    conda:
        "../../envs/gpu.yaml"
    threads: 1
    resources:
        gpu=DEVICE_GPUS,
    params:
        settings=lambda wildcards: SUITE_SPEC.finetune_settings(wildcards.task),
        seed=lambda wildcards: derive_seed(config["seed"], "finetune", wildcards.task),
        device=config["device"],
        code=script_code("finetune_adapter.py"),
    script:
        "../../scripts/finetune_adapter.py"
