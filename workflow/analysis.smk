# Representation geometry of the adapter set: SVD/CUR subspace overlap per module (Fig. 1) and per-task projected
# energy (Tables 1-2), at rank k_a.


rule analyze:
    input:
        adapter_dirs,
    output:
        directory("results/{suite}/analysis"),
    log:
        "logs/{suite}/analyze.log",
    conda:
        "../envs/merge.yaml"
    params:
        rank=(
            f"--rank {config['analysis']['rank']}"
            if config["analysis"]["rank"]
            else ""
        ),
        code=CLI_CODE,
    shell:
        "loramerge analyze --adapters {input} --out {output} {params.rank} 2> {log}"
