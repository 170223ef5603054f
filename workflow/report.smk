# The paper's tables and figures, each a CSV + Markdown + LaTeX triple or a PNG + PDF pair, all in the HTML report.
# With `report.paper`, every table the paper prints puts its published numbers and the difference beside ours.

from loramerge.repro.report.alpha_sweep import sweep_branches
from loramerge.repro.report.table3 import pertask_table

# The per-task table takes the paper's number for it, which the paper's folder gives (Table 4 for llama3-8b);
# Table 3 without a paper.
PERTASK_TABLE = pertask_table(PAPER)
PERTASK = f"{PERTASK_TABLE}_pertask"

TABLE_EXTENSIONS = ["csv", "md", "tex"]
FINAL_TABLES = [
    "finetuned_accuracy",
    PERTASK,
    "table1_energy_svd",
    "table2_energy_cur",
]
FINAL_FIGURES = ["fig1_overlap"]
if {"cur_ties", "cur_r_ties"} <= set(PLANS):
    FINAL_FIGURES.append("fig2_ur_vs_r")
if "hybrid" in PLANS:  # Table 7 and Fig. 3 sweep the paper's α
    FINAL_TABLES.append("table7_alpha")
    FINAL_FIGURES.append("fig3_alpha")
if "mix" in PLANS:  # Table 8 and its figure sweep α between mix's two branches
    FINAL_TABLES.append("table8_alpha")
    FINAL_FIGURES.append("fig8_alpha")
if JOINT is not None:
    FINAL_TABLES += ["table5_joint", "table9_joint_pertask"]
FINAL_OUTPUTS = expand(
    "results/{suite}/tables/{table}.{ext}",
    suite=SUITE,
    table=FINAL_TABLES,
    ext=TABLE_EXTENSIONS,
) + expand(
    "results/{suite}/figures/{figure}.{ext}",
    suite=SUITE,
    figure=FINAL_FIGURES,
    ext=["png", "pdf"],
)
# `rule all` calls final_outputs(). A lambda, not a def: Snakemake's linter rejects functions beside rules.
final_outputs = lambda: list(FINAL_OUTPUTS)


rule finetuned_table:
    input:
        finetuned_results,
    output:
        csv=report(
            "results/{suite}/tables/finetuned_accuracy.csv",
            caption="report/finetuned.rst",
            category="Tables",
        ),
        md="results/{suite}/tables/finetuned_accuracy.md",
        tex="results/{suite}/tables/finetuned_accuracy.tex",
    log:
        "logs/{suite}/finetuned_table.log",
    conda:
        "../envs/report.yaml"
    params:
        tasks=TASKS,
        published=published_finetuned(),
        normalize_by=NORMALIZE_BY,
        code=script_code("finetuned_table.py"),
    script:
        "../scripts/finetuned_table.py"


rule table3:
    input:
        searches=searches,
        finetuned=finetuned_results,
    output:
        csv=report(
            f"results/{{suite}}/tables/{PERTASK}.csv",
            caption=f"report/{PERTASK_TABLE}.rst",
            category="Tables",
        ),
        md=f"results/{{suite}}/tables/{PERTASK}.md",
        tex=f"results/{{suite}}/tables/{PERTASK}.tex",
    log:
        "logs/{suite}/table3.log",
    conda:
        "../envs/report.yaml"
    params:
        methods=list(PLANS),
        tasks=TASKS,
        paper=PAPER,
        code=script_code("table3.py"),
    script:
        "../scripts/table3.py"


rule joint_tables:
    input:
        lambda wildcards: expand(
            "results/{suite}/search_joint/{method}.json",
            suite=wildcards.suite,
            method=PLANS,
        ),
    output:
        table5_csv=report(
            "results/{suite}/tables/table5_joint.csv",
            caption="report/table5.rst",
            category="Tables",
        ),
        table5_md="results/{suite}/tables/table5_joint.md",
        table5_tex="results/{suite}/tables/table5_joint.tex",
        table9_csv=report(
            "results/{suite}/tables/table9_joint_pertask.csv",
            caption="report/table9.rst",
            category="Tables",
        ),
        table9_md="results/{suite}/tables/table9_joint_pertask.md",
        table9_tex="results/{suite}/tables/table9_joint_pertask.tex",
    log:
        "logs/{suite}/joint_tables.log",
    conda:
        "../envs/report.yaml"
    params:
        methods=list(PLANS),
        tasks=TASKS,
        paper=paper_for("table5", "table9"),
        code=script_code("tables_joint.py"),
    script:
        "../scripts/tables_joint.py"


rule table7:
    input:
        evaluations=method_evaluations("eval", "hybrid"),
        search="results/{suite}/search/hybrid.json",
        finetuned=finetuned_results,
    output:
        csv=report(
            "results/{suite}/tables/table7_alpha.csv",
            caption="report/table7.rst",
            category="Tables",
        ),
        md="results/{suite}/tables/table7_alpha.md",
        tex="results/{suite}/tables/table7_alpha.tex",
    log:
        "logs/{suite}/table7.log",
    conda:
        "../envs/report.yaml"
    params:
        branches=lambda wildcards: sweep_branches(PLANS["hybrid"]),
        replicates=lambda wildcards: PLANS["hybrid"].search_spec().get("replicates"),
        paper_table="table7",
        tasks=TASKS,
        normalize_by=NORMALIZE_BY,
        published=PUBLISHED_BASE,
        paper=paper_for("table7"),
        code=script_code("alpha_sweep_table.py"),
    script:
        "../scripts/alpha_sweep_table.py"


rule table8:
    input:
        evaluations=method_evaluations("eval", "mix"),
        search="results/{suite}/search/mix.json",
        finetuned=finetuned_results,
    output:
        csv=report(
            "results/{suite}/tables/table8_alpha.csv",
            caption="report/table8.rst",
            category="Tables",
        ),
        md="results/{suite}/tables/table8_alpha.md",
        tex="results/{suite}/tables/table8_alpha.tex",
    log:
        "logs/{suite}/table8.log",
    conda:
        "../envs/report.yaml"
    params:
        branches=lambda wildcards: sweep_branches(PLANS["mix"]),
        replicates=lambda wildcards: PLANS["mix"].search_spec().get("replicates"),
        paper_table="table8",
        tasks=TASKS,
        normalize_by=NORMALIZE_BY,
        published=PUBLISHED_BASE,
        paper=paper_for("table8"),
        code=script_code("alpha_sweep_table.py"),
    script:
        "../scripts/alpha_sweep_table.py"


rule energy_tables:
    input:
        "results/{suite}/analysis",
    output:
        svd_csv=report(
            "results/{suite}/tables/table1_energy_svd.csv",
            caption="report/table1.rst",
            category="Tables",
        ),
        svd_md="results/{suite}/tables/table1_energy_svd.md",
        svd_tex="results/{suite}/tables/table1_energy_svd.tex",
        cur_csv=report(
            "results/{suite}/tables/table2_energy_cur.csv",
            caption="report/table2.rst",
            category="Tables",
        ),
        cur_md="results/{suite}/tables/table2_energy_cur.md",
        cur_tex="results/{suite}/tables/table2_energy_cur.tex",
    log:
        "logs/{suite}/energy_tables.log",
    conda:
        "../envs/report.yaml"
    params:
        paper=paper_for("table1", "table2"),
        code=script_code("energy_tables.py"),
    script:
        "../scripts/energy_tables.py"


rule figure1:
    input:
        "results/{suite}/analysis",
    output:
        png=report(
            "results/{suite}/figures/fig1_overlap.png",
            caption="report/fig1.rst",
            category="Figures",
        ),
        pdf="results/{suite}/figures/fig1_overlap.pdf",
    log:
        "logs/{suite}/figure1.log",
    conda:
        "../envs/report.yaml"
    params:
        code=script_code("figure1.py"),
    script:
        "../scripts/figure1.py"


rule figure2:
    input:
        ur="results/{suite}/search/cur_ties.json",
        r="results/{suite}/search/cur_r_ties.json",
    output:
        png=report(
            "results/{suite}/figures/fig2_ur_vs_r.png",
            caption="report/fig2.rst",
            category="Figures",
        ),
        pdf="results/{suite}/figures/fig2_ur_vs_r.pdf",
    log:
        "logs/{suite}/figure2.log",
    conda:
        "../envs/report.yaml"
    params:
        selection=config["search"]["selection"],
        tasks=TASKS,
        code=script_code("figure2.py"),
    script:
        "../scripts/figure2.py"


rule figure3:
    input:
        table="results/{suite}/tables/table7_alpha.csv",
        search="results/{suite}/search/hybrid.json",
    output:
        png=report(
            "results/{suite}/figures/fig3_alpha.png",
            caption="report/fig3.rst",
            category="Figures",
        ),
        pdf="results/{suite}/figures/fig3_alpha.pdf",
    log:
        "logs/{suite}/figure3.log",
    conda:
        "../envs/report.yaml"
    params:
        branches=lambda wildcards: sweep_branches(PLANS["hybrid"]),
        selection=config["search"]["selection"],
        code=script_code("alpha_sweep_figure.py"),
    script:
        "../scripts/alpha_sweep_figure.py"


rule figure8:
    input:
        table="results/{suite}/tables/table8_alpha.csv",
        search="results/{suite}/search/mix.json",
    output:
        png=report(
            "results/{suite}/figures/fig8_alpha.png",
            caption="report/fig8.rst",
            category="Figures",
        ),
        pdf="results/{suite}/figures/fig8_alpha.pdf",
    log:
        "logs/{suite}/figure8.log",
    conda:
        "../envs/report.yaml"
    params:
        branches=lambda wildcards: sweep_branches(PLANS["mix"]),
        selection=config["search"]["selection"],
        code=script_code("alpha_sweep_figure.py"),
    script:
        "../scripts/alpha_sweep_figure.py"
