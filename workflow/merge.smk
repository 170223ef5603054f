# One merge job per method: it merges every structural hyper-parameter point of the method's plan at λ = 1 into
# results/<suite>/merged/<method>/<point> (λ only scales the merged update, so every λ of the search is applied at
# evaluation time instead of costing a merge each). One job loads the adapters and the decomposition once for all
# points; on the demo, start-up (importing torch) would otherwise cost more than the merges themselves.

from loramerge.repro.stats.needs import statistics_kind


rule merge:
    input:
        unpack(merge_inputs),
        # the statistics folder of the kind the method reads (regmean: Grams, fisher: Fishers), every task in it
        statistics=lambda wildcards: expand(
            "resources/{suite}/stats/{kind}",
            suite=wildcards.suite,
            kind=statistics_kind(PLANS[wildcards.method]) or [],
        ),
    output:
        directory("results/{suite}/merged/{method}"),
    log:
        "logs/{suite}/merge/{method}.log",
    benchmark:
        "results/{suite}/benchmarks/merge/{method}.tsv"
    conda:
        "../envs/merge.yaml"
    threads: 1
    params:
        points=lambda wildcards: PLANS[wildcards.method].points,
        branches=lambda wildcards: PLANS[wildcards.method].branches,
        branch_params=lambda wildcards: list(
            PLANS[wildcards.method].facts.branch_params
        ),
        branch_selection=config["search"]["selection"],
        made_by=made_by,
        code=script_code("merge.py"),
    script:
        "../scripts/merge.py"
