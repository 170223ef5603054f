# The paper's tables and figures, each a CSV + Markdown pair or a PNG + PDF pair, all in the HTML report.


def final_outputs():
    tables = ["table3_pertask", "table1_energy_svd", "table2_energy_cur"]
    figures = ["fig1_overlap"]
    if {"cur_ties", "cur_r_ties"} <= set(PLANS):
        figures.append("fig2_ur_vs_r")
    if HYBRID in PLANS:
        tables.append("table7_alpha")
        figures.append("fig3_alpha")
    return expand(
        "results/{suite}/tables/{table}.{ext}",
        suite=SUITE,
        table=tables,
        ext=["csv", "md"],
    ) + expand(
        "results/{suite}/figures/{figure}.{ext}",
        suite=SUITE,
        figure=figures,
        ext=["png", "pdf"],
    )


rule table3:
    input:
        searches=searches,
        finetuned=finetuned_results,
    output:
        csv=report(
            "results/{suite}/tables/table3_pertask.csv",
            caption="report/table3.rst",
            category="Tables",
        ),
        md="results/{suite}/tables/table3_pertask.md",
    log:
        "logs/{suite}/table3.log",
    conda:
        "../envs/report.yaml"
    params:
        methods=list(PLANS),
        tasks=TASKS,
        code=CODE["report"],
    script:
        "../scripts/table3.py"


rule table7:
    input:
        evaluations="results/{suite}/eval/hybrid",
        search="results/{suite}/search/hybrid.json",
        finetuned=finetuned_results,
    output:
        csv=report(
            "results/{suite}/tables/table7_alpha.csv",
            caption="report/table7.rst",
            category="Tables",
        ),
        md="results/{suite}/tables/table7_alpha.md",
    log:
        "logs/{suite}/table7.log",
    conda:
        "../envs/report.yaml"
    params:
        tasks=TASKS,
        code=CODE["report"],
    script:
        "../scripts/table7.py"


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
        cur_csv=report(
            "results/{suite}/tables/table2_energy_cur.csv",
            caption="report/table2.rst",
            category="Tables",
        ),
        cur_md="results/{suite}/tables/table2_energy_cur.md",
    log:
        "logs/{suite}/energy_tables.log",
    conda:
        "../envs/report.yaml"
    params:
        code=CODE["report"],
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
        code=CODE["report"],
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
        code=CODE["report"],
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
        selection=config["search"]["selection"],
        code=CODE["report"],
    script:
        "../scripts/figure3.py"
