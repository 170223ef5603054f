# Inputs of the Llama NLI suites (kind llama_nli), downloaded at the commits and checksums of the suite's lock file:
# the gated base model (read with HF_TOKEN) saved once as a sequence classifier with its tokenizer, the KnOTS adapters
# (checked against it), each task's head (the adapter's own or the authors' heads file), and each task's evaluation
# splits, tokenised once.
# The lock is an input once it exists, so that relocking reruns the downloads; before that, the download jobs stop
# with a message saying how to create it (and a dry run still shows the whole DAG).


rule nli_backbone:
    input:
        lock=lambda wildcards: SUITE_SPEC.lock_inputs(),
    output:
        directory("resources/{suite}/backbone"),
    log:
        "logs/{suite}/nli_backbone.log",
    benchmark:
        "results/{suite}/benchmarks/nli_backbone.tsv"
    conda:
        "../../envs/download.yaml"
    params:
        repo=SUITE_SPEC.settings["backbone"]["repo"],
        gated=SUITE_SPEC.settings["backbone"]["gated"],
        pad_token_id=SUITE_SPEC.settings["backbone"]["pad_token_id"],
        class_names=SUITE_SPEC.settings["class_names"],
        lock=SUITE_SPEC.lock,
        code=script_code("nli_backbone.py"),
    script:
        "../../scripts/nli_backbone.py"


rule nli_adapter:
    input:
        lock=lambda wildcards: SUITE_SPEC.lock_inputs(),
        backbone="resources/{suite}/backbone",
    output:
        directory("resources/{suite}/adapters/{task}"),
    log:
        "logs/{suite}/nli_adapter/{task}.log",
    conda:
        "../../envs/download.yaml"
    params:
        repo=lambda wildcards: SUITE_SPEC.settings["tasks"][wildcards.task]["adapter"],
        head_key=SUITE_SPEC.settings["heads"]["adapter_key"],
        lock=SUITE_SPEC.lock,
        code=script_code("nli_adapter.py"),
    script:
        "../../scripts/nli_adapter.py"


rule nli_authors_heads:
    input:
        lock=lambda wildcards: SUITE_SPEC.lock_inputs(),
    output:
        "resources/{suite}/authors_heads.safetensors",
    log:
        "logs/{suite}/nli_authors_heads.log",
    conda:
        "../../envs/download.yaml"
    params:
        url=(SUITE_SPEC.authors_heads() or {}).get("url"),
        sha256=(SUITE_SPEC.authors_heads() or {}).get("sha256"),
        lock=SUITE_SPEC.lock,
        code=script_code("nli_authors_heads.py"),
    script:
        "../../scripts/nli_authors_heads.py"


rule nli_head:
    input:
        backbone="resources/{suite}/backbone",
        adapter="resources/{suite}/adapters/{task}",
        # compared with the adapter's head whenever the config gives the authors' file
        authors=lambda wildcards: (
            f"resources/{wildcards.suite}/authors_heads.safetensors"
            if SUITE_SPEC.authors_heads()
            else []
        ),
    output:
        "resources/{suite}/heads/{task}.safetensors",
    log:
        "logs/{suite}/nli_head/{task}.log",
    conda:
        "../../envs/download.yaml"
    params:
        source=SUITE_SPEC.settings["heads"]["source"],
        adapter_key=SUITE_SPEC.settings["heads"]["adapter_key"],
        max_difference=SUITE_SPEC.settings["heads"]["max_difference"],
        masked=lambda wildcards: SUITE_SPEC.masked_classes(wildcards.task),
        class_names=SUITE_SPEC.settings["class_names"],
        code=script_code("nli_head.py"),
    script:
        "../../scripts/nli_head.py"


rule nli_data:
    input:
        lock=lambda wildcards: SUITE_SPEC.lock_inputs(),
        backbone="resources/{suite}/backbone",
    output:
        val="resources/{suite}/data/{task}/val.safetensors",
        test="resources/{suite}/data/{task}/test.safetensors",
    log:
        "logs/{suite}/nli_data/{task}.log",
    benchmark:
        "results/{suite}/benchmarks/nli_data/{task}.tsv"
    conda:
        "../../envs/download.yaml"
    params:
        spec=lambda wildcards: SUITE_SPEC.data_spec(wildcards.task),
        class_names=SUITE_SPEC.settings["class_names"],
        lock=SUITE_SPEC.lock,
        code=script_code("nli_data.py"),
    script:
        "../../scripts/nli_data.py"
