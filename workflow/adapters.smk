# Adapters of the demo suite: a tiny CLIP vision tower pre-trained on a shared image mixture, then one LoRA adapter
# (with its classification head) per task, written in the folder format a downloaded adapter has.


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
        "../envs/gpu.yaml"
    threads: config["demo"]["pretrain"]["threads"]
    resources:
        gpu=DEVICE_GPUS,
    params:
        backbone=config["demo"]["backbone"],
        image_size=config["demo"]["image_size"],
        pretrain=config["demo"]["pretrain"],
        seed=derive_seed(config["seed"], "pretrain"),
        device=config["device"],
        code=CODE["vision"],
    script:
        "../scripts/pretrain_backbone.py"


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
        "../envs/gpu.yaml"
    threads: 1
    resources:
        gpu=DEVICE_GPUS,
    params:
        settings=lambda wildcards: finetune_settings(config, wildcards.task),
        seed=lambda wildcards: derive_seed(config["seed"], "finetune", wildcards.task),
        device=config["device"],
        code=CODE["vision"],
    script:
        "../scripts/finetune_adapter.py"
