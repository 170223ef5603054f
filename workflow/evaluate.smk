# Evaluation: each fine-tuned adapter alone (the normalisation base), and every merged model on every task's
# validation and test split with that task's head, at every λ of the method's search. One job evaluates all merges of
# a method (one JSON per merge): start-up (importing torch and transformers, ~4 s) would otherwise dominate the demo.


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
        "../envs/gpu.yaml"
    threads: config["evaluate"]["threads"]
    resources:
        gpu=DEVICE_GPUS,
    params:
        batch_size=config["evaluate"]["batch_size"],
        threads=config["evaluate"]["threads"],
        device=config["device"],
        code=CODE["vision"],
    script:
        "../scripts/evaluate_finetuned.py"


rule evaluate_merged:
    input:
        backbone="resources/{suite}/backbone",
        merged=method_merges,
        adapters=adapter_dirs,
        data=eval_data,
    output:
        directory("results/{suite}/eval/{method}"),
    log:
        "logs/{suite}/evaluate_merged/{method}.log",
    benchmark:
        "results/{suite}/benchmarks/evaluate_merged/{method}.tsv"
    conda:
        "../envs/gpu.yaml"
    threads: config["evaluate"]["threads"]
    resources:
        gpu=DEVICE_GPUS,
    params:
        points=lambda wildcards: PLANS[wildcards.method].points,
        lambdas=lambda wildcards: PLANS[wildcards.method].lambdas,
        tasks=TASKS,
        splits=EVAL_SPLITS,
        batch_size=config["evaluate"]["batch_size"],
        threads=config["evaluate"]["threads"],
        device=config["device"],
        code=CODE["vision"],
    script:
        "../scripts/evaluate_merged.py"
