# Per-module SVD and CUR bases of the adapter set, computed once and reused by every merge that needs them.


rule decompose:
    input:
        adapter_dirs,
    output:
        directory("results/{suite}/decomposition"),
    log:
        "logs/{suite}/decompose.log",
    benchmark:
        "results/{suite}/benchmarks/decompose.tsv"
    conda:
        "../envs/merge.yaml"
    threads: 1
    params:
        svd_tol=config["decompose"]["svd_tol"],
        cur_rank=(
            f"--cur-rank {config['decompose']['cur_rank']}"
            if config["decompose"]["cur_rank"]
            else ""
        ),
        code=CLI_CODE,
    shell:
        "NUMBA_NUM_THREADS={threads} OMP_NUM_THREADS={threads} loramerge decompose --adapters {input} "
        "--out {output} --svd-tol {params.svd_tol} {params.cur_rank} 2> {log}"
