# Evaluation: each fine-tuned adapter alone (the normalization base), and every merged model on every task's
# validation and test split with that task's head, at every λ of the method's search. One job evaluates a chunk of a
# method's merges (`evaluate.points_per_job`; one JSON per merge) with one model load, since start-up (importing
# torch and transformers, loading the backbone) would otherwise dominate; the chunks are then read together by the method's search.
# The suite's kind (a param) says how its backbone loads and encodes.


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
        kind=SUITE_SPEC.kind,
        masked=lambda wildcards: SUITE_SPEC.masked_classes(wildcards.task),
        dtype=config["evaluate"]["dtype"],
        batch_size=config["evaluate"]["batch_size"],
        threads=config["evaluate"]["threads"],
        device=config["device"],
        made_by=made_by,
        code=script_code("evaluate_finetuned.py"),
    script:
        "../scripts/evaluate_finetuned.py"


rule evaluate_merged:
    input:
        backbone="resources/{suite}/backbone",
        merged=method_merges,
        heads=head_files,
        data=eval_data,
    output:
        directory("results/{suite}/eval/{method}/{part}"),
    log:
        "logs/{suite}/evaluate_merged/{method}.{part}.log",
    benchmark:
        "results/{suite}/benchmarks/evaluate_merged/{method}.{part}.tsv"
    conda:
        "../envs/gpu.yaml"
    threads: config["evaluate"]["threads"]
    resources:
        gpu=DEVICE_GPUS,
    params:
        kind=SUITE_SPEC.kind,
        points=part_points,
        lambdas=lambda wildcards: PLANS[wildcards.method].lambdas,
        tasks=TASKS,
        splits=EVAL_SPLITS,
        masked=SUITE_SPEC.masked_by_task(),
        dtype=config["evaluate"]["dtype"],
        batch_size=config["evaluate"]["batch_size"],
        threads=config["evaluate"]["threads"],
        device=config["device"],
        made_by=made_by,
        code=script_code("evaluate_merged.py"),
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
        shared=SUITE_SPEC.joint_shared(),
        code=script_code("joint_head.py"),
    script:
        "../scripts/joint_head.py"


rule evaluate_joint:
    input:
        backbone="resources/{suite}/backbone",
        merged=method_merges,
        joint_head="resources/{suite}/heads/joint.safetensors",
        data=eval_data,
    output:
        directory("results/{suite}/joint/{method}/{part}"),
    log:
        "logs/{suite}/evaluate_joint/{method}.{part}.log",
    benchmark:
        "results/{suite}/benchmarks/evaluate_joint/{method}.{part}.tsv"
    conda:
        "../envs/gpu.yaml"
    threads: config["evaluate"]["threads"]
    resources:
        gpu=DEVICE_GPUS,
    params:
        kind=SUITE_SPEC.kind,
        points=part_points,
        lambdas=lambda wildcards: PLANS[wildcards.method].lambdas,
        tasks=TASKS,
        splits=EVAL_SPLITS,
        ks=(config["evaluate"]["joint"] or {}).get("ks"),
        dtype=config["evaluate"]["dtype"],
        batch_size=config["evaluate"]["batch_size"],
        threads=config["evaluate"]["threads"],
        device=config["device"],
        made_by=made_by,
        code=script_code("evaluate_joint.py"),
    script:
        "../scripts/evaluate_joint.py"
