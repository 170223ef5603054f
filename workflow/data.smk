# Data of the demo suite: generated offline from seeds (scikit-learn's bundled digits and procedural images).


rule pretrain_data:
    output:
        "resources/{suite}/data/pretrain.safetensors",
    log:
        "logs/{suite}/pretrain_data.log",
    conda:
        "../envs/download.yaml"
    params:
        sources=sorted({task["source"] for task in config["demo"]["tasks"].values()}),
        images_per_source=config["demo"]["pretrain"]["images_per_source"],
        image_size=config["demo"]["image_size"],
        seed=derive_seed(config["seed"], "pretrain-data"),
        code=CODE["vision"],
    script:
        "../scripts/pretrain_data.py"


rule task_data:
    output:
        train="resources/{suite}/data/{task}/train.safetensors",
        val="resources/{suite}/data/{task}/val.safetensors",
        test="resources/{suite}/data/{task}/test.safetensors",
    log:
        "logs/{suite}/task_data/{task}.log",
    conda:
        "../envs/download.yaml"
    params:
        spec=lambda wildcards: config["demo"]["tasks"][wildcards.task],
        image_size=config["demo"]["image_size"],
        seed=lambda wildcards: derive_seed(config["seed"], "task-data", wildcards.task),
        code=CODE["vision"],
    script:
        "../scripts/task_data.py"
