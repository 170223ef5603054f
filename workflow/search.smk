# Hyper-parameter selection on validation: the KnOTS authors' greedy linear search and the full-grid argmax, both
# over the evaluated merges (the argmax over the grid only, the greedy search also at a default that is no grid value);
# the test numbers of the chosen settings are read, never used to choose. Per-task scores are normalized by the
# fine-tuned accuracy (`evaluate.normalize_by`); the joint search selects on pooled validation Hits@k
# (`evaluate.joint`). DARE seeds (`merge.methods.*.seeds`) are replicates of one setting. The joint search walks its
# own grid order and defaults where `merge.methods.<m>.joint` sets them (KnOTS's joint script walks top-K descending
# from 30); each rule gets only its own spec, so editing the joint block reruns the joint search only (and the merges
# a new default outside the grid needs).

# (common.smk's check_suite has checked evaluate.* against the suite: published accuracies exist, select_k in ks)
JOINT = config["evaluate"]["joint"]
NORMALIZE_BY = config["evaluate"]["normalize_by"]
# The published accuracies reach the jobs only when they normalize, so editing them reruns nothing otherwise.
PUBLISHED_BASE = published_finetuned() if NORMALIZE_BY == "published" else {}


rule search:
    input:
        evaluations=method_evaluations("eval"),
        finetuned=finetuned_results,
    output:
        "results/{suite}/search/{method}.json",
    log:
        "logs/{suite}/search/{method}.log",
    conda:
        "../envs/report.yaml"
    params:
        spec=lambda wildcards: PLANS[wildcards.method].search_spec(),
        tasks=TASKS,
        normalize_by=NORMALIZE_BY,
        published=PUBLISHED_BASE,
        made_by=made_by,
        code=script_code("search.py"),
    script:
        "../scripts/search.py"


rule search_joint:
    input:
        evaluations=method_evaluations("joint"),
    output:
        "results/{suite}/search_joint/{method}.json",
    log:
        "logs/{suite}/search_joint/{method}.log",
    conda:
        "../envs/report.yaml"
    params:
        spec=lambda wildcards: PLANS[wildcards.method].search_spec(joint=True),
        joint=JOINT,
        tasks=TASKS,
        made_by=made_by,
        code=script_code("search_joint.py"),
    script:
        "../scripts/search_joint.py"
