# Hyper-parameter selection on validation: the KnOTS authors' greedy linear search and the full-grid argmax, both
# over the same evaluated grid; the test numbers of the chosen settings are read, never used to choose.


rule search:
    input:
        evaluations="results/{suite}/eval/{method}",
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
        code=CODE["search"],
    script:
        "../scripts/search.py"
