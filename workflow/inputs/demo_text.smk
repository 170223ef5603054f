# Inputs of the offline text demo (kind demo_text): a word-level tokenizer over the generator's vocabulary, sentence
# pairs generated from seeds and tokenised with it, a tiny Llama sequence classifier pre-trained briefly on a mixture
# of the tasks' rules, then one LoRA adapter (its `score` head inside, as the hub's KnOTS Llama adapters carry theirs)
# and head per task.
DEMO_TEXT = SUITE_SPEC.settings


rule demo_text_tokenizer:
    output:
        "resources/{suite}/tokenizer.json",
    log:
        "logs/{suite}/demo_text_tokenizer.log",
    conda:
        "../../envs/download.yaml"
    params:
        code=script_code("demo_text_tokenizer.py"),
    script:
        "../../scripts/demo_text_tokenizer.py"


rule demo_text_pretrain_data:
    input:
        "resources/{suite}/tokenizer.json",
    output:
        "resources/{suite}/data/pretrain.safetensors",
    log:
        "logs/{suite}/demo_text_pretrain_data.log",
    conda:
        "../../envs/download.yaml"
    params:
        rules=sorted({task["rule"] for task in DEMO_TEXT["tasks"].values()}),
        pairs=DEMO_TEXT["pretrain"]["pairs"],
        max_length=DEMO_TEXT["max_length"],
        seed=derive_seed(config["seed"], "pretrain-data"),
        code=script_code("demo_text_pretrain_data.py"),
    script:
        "../../scripts/demo_text_pretrain_data.py"


rule demo_text_task_data:
    input:
        "resources/{suite}/tokenizer.json",
    output:
        train="resources/{suite}/data/{task}/train.safetensors",
        val="resources/{suite}/data/{task}/val.safetensors",
        test="resources/{suite}/data/{task}/test.safetensors",
    log:
        "logs/{suite}/demo_text_task_data/{task}.log",
    conda:
        "../../envs/download.yaml"
    params:
        spec=lambda wildcards: DEMO_TEXT["tasks"][wildcards.task],
        max_length=DEMO_TEXT["max_length"],
        seed=lambda wildcards: derive_seed(config["seed"], "task-data", wildcards.task),
        code=script_code("demo_text_task_data.py"),
    script:
        "../../scripts/demo_text_task_data.py"


rule demo_text_pretrain:
    input:
        tokenizer="resources/{suite}/tokenizer.json",
        pairs="resources/{suite}/data/pretrain.safetensors",
    output:
        directory("resources/{suite}/backbone"),
    log:
        "logs/{suite}/demo_text_pretrain.log",
    benchmark:
        "results/{suite}/benchmarks/demo_text_pretrain.tsv"
    conda:
        "../../envs/gpu.yaml"
    threads: DEMO_TEXT["pretrain"]["threads"]
    resources:
        gpu=DEVICE_GPUS,
    params:
        backbone=DEMO_TEXT["backbone"],
        max_length=DEMO_TEXT["max_length"],
        pretrain=DEMO_TEXT["pretrain"],
        seed=derive_seed(config["seed"], "pretrain"),
        device=config["device"],
        code=script_code("demo_text_pretrain.py"),
    script:
        "../../scripts/demo_text_pretrain.py"


rule demo_text_finetune:
    input:
        backbone="resources/{suite}/backbone",
        train="resources/{suite}/data/{task}/train.safetensors",
    output:
        adapter=directory("resources/{suite}/adapters/{task}"),
        head="resources/{suite}/heads/{task}.safetensors",
    log:
        "logs/{suite}/demo_text_finetune/{task}.log",
    benchmark:
        "results/{suite}/benchmarks/demo_text_finetune/{task}.tsv"
    conda:
        "../../envs/gpu.yaml"
    threads: 1
    resources:
        gpu=DEVICE_GPUS,
    params:
        settings=lambda wildcards: SUITE_SPEC.finetune_settings(wildcards.task),
        masked=lambda wildcards: SUITE_SPEC.masked_classes(wildcards.task),
        seed=lambda wildcards: derive_seed(config["seed"], "finetune", wildcards.task),
        device=config["device"],
        code=script_code("demo_text_finetune.py"),
    script:
        "../../scripts/demo_text_finetune.py"
