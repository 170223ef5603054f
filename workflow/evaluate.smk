# Evaluation: each fine-tuned adapter alone (the normalisation base), and every merged model on every task's
# validation and test split with that task's head, at every λ of the method's search.


rule evaluate_finetuned:
    input:
        backbone="resources/{suite}/backbone",
        adapter="resources/{suite}/adapters/{task}",
        val="resources/{suite}/data/{task}/val.safetensors",
        test="resources/{suite}/data/{task}/test.safetensors",
    output:
        "results/{suite}/finetuned/{task}.json",
    log:
        "logs/{suite}/evaluate_finetuned/{task}.log",
    benchmark:
        "results/{suite}/benchmarks/evaluate_finetuned/{task}.tsv"
    conda:
        "../envs/train.yaml"
    threads: config["evaluate"]["threads"]
    resources:
        gpu=DEVICE_GPUS,
    params:
        batch_size=config["evaluate"]["batch_size"],
        device=config["device"],
        code=CODE["vision"],
    script:
        "../scripts/evaluate_finetuned.py"


rule evaluate_merged:
    input:
        backbone="resources/{suite}/backbone",
        merged="results/{suite}/merged/{method}/{point}",
        adapters=adapter_dirs,
        data=eval_data,
    output:
        "results/{suite}/eval/{method}/{point}.json",
    log:
        "logs/{suite}/evaluate_merged/{method}/{point}.log",
    benchmark:
        "results/{suite}/benchmarks/evaluate_merged/{method}/{point}.tsv"
    conda:
        "../envs/train.yaml"
    threads: config["evaluate"]["threads"]
    resources:
        gpu=DEVICE_GPUS,
    params:
        tasks=TASKS,
        splits=EVAL_SPLITS,
        lambdas=lambda wildcards: PLANS[wildcards.method].lambdas,
        point=lambda wildcards: PLANS[wildcards.method].points[wildcards.point],
        batch_size=config["evaluate"]["batch_size"],
        device=config["device"],
        code=CODE["vision"],
    script:
        "../scripts/evaluate_merged.py"
