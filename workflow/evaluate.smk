# Evaluation: each fine-tuned adapter alone (the normalisation base), and every merged model on every task's
# validation and test split with that task's head, at every λ of the method's search. One job evaluates all merges of
# a method (one JSON per merge): start-up (importing torch and transformers, ~4 s) would otherwise dominate the demo.


rule evaluate_finetuned:
    input:
        backbone="resources/{suite}/backbone",
        adapter="resources/{suite}/adapters/{task}",
        head="resources/{suite}/heads/{task}.safetensors",
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
        heads=head_files,
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


rule joint_head:
    input:
        head_files,
    output:
        "resources/{suite}/heads/joint.safetensors",
    log:
        "logs/{suite}/joint_head.log",
    conda:
        "../envs/gpu.yaml"
    params:
        tasks=TASKS,
        shared={} if DEMO else VISION["joint_shared"],
        code=CODE["vision"],
    script:
        "../scripts/joint_head.py"


rule evaluate_joint:
    input:
        backbone="resources/{suite}/backbone",
        merged=method_merges,
        joint_head="resources/{suite}/heads/joint.safetensors",
        data=eval_data,
    output:
        directory("results/{suite}/joint/{method}"),
    log:
        "logs/{suite}/evaluate_joint/{method}.log",
    benchmark:
        "results/{suite}/benchmarks/evaluate_joint/{method}.tsv"
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
        ks=(config["evaluate"]["joint"] or {}).get("ks"),
        batch_size=config["evaluate"]["batch_size"],
        threads=config["evaluate"]["threads"],
        device=config["device"],
        code=CODE["vision"],
    script:
        "../scripts/evaluate_joint.py"
