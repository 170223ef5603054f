# One merge per method and structural hyper-parameter point, at λ = 1: λ only scales the merged update, so every λ
# of the search is applied at evaluation time instead of costing a merge each.

from loramerge.repro.stats.needs import statistics_kind


rule merge:
    input:
        unpack(merge_inputs),
        # every task's statistics folder, for methods that read statistics (regmean, fisher)
        statistics=lambda wildcards: expand(
            "resources/{suite}/stats/{kind}/{task}",
            suite=wildcards.suite,
            kind=statistics_kind(PLANS[wildcards.method]) or [],
            task=TASKS,
        ),
    output:
        directory("results/{suite}/merged/{method}/{point}"),
    log:
        "logs/{suite}/merge/{method}/{point}.log",
    benchmark:
        "results/{suite}/benchmarks/merge/{method}/{point}.tsv"
    conda:
        "../envs/merge.yaml"
    threads: 1
    params:
        point=lambda wildcards: PLANS[wildcards.method].points[wildcards.point],
        branches=lambda wildcards: PLANS[wildcards.method].branches,
        branch_params=lambda wildcards: list(
            PLANS[wildcards.method].facts.branch_params
        ),
        branch_selection=config["search"]["selection"],
        made_by=made_by,
        code=script_code("merge.py"),
    script:
        "../scripts/merge.py"
