# One merge per method and structural hyper-parameter point, at λ = 1: λ only scales the merged update, so every λ
# of the search is applied at evaluation time instead of costing a merge each.


rule merge:
    input:
        unpack(merge_inputs),
    output:
        directory("results/{suite}/merged/{method}/{point}"),
    params:
        point=lambda wildcards: PLANS[wildcards.method].points[wildcards.point],
        branch_selection=config["search"]["hybrid_branches"],
        code=CODE["merge"],
    threads: 1
    log:
        "logs/{suite}/merge/{method}/{point}.log",
    benchmark:
        "results/{suite}/benchmarks/merge/{method}/{point}.tsv"
    conda:
        "../envs/merge.yaml"
    script:
        "../scripts/merge.py"
