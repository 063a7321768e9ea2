# Runs -> results/metrics.json, tables, figures, DVC plot data, the README's results section.


rule aggregate:
    input:
        study_stores(),  # the late-fusion baseline reads the training split's class prior
        study_oracles(),  # exact Bayes oracles of the synthetic datasets that have one
        study_runs(),
        study_baselines(),
        study_sweeps(),
    output:
        metrics="results/metrics.json",
        main=report("results/tables/main.html", caption="../report/main.rst", category="Tables"),
        per_class=report("results/tables/per_class.html", caption="../report/per_class.rst", category="Tables"),
        ablation=report("results/tables/ablation.html", caption="../report/ablation.rst", category="Tables"),
        modality=report("results/tables/modality.html", caption="../report/modality.rst", category="Tables"),
        protocol=report("results/tables/protocol.html", caption="../report/protocol.rst", category="Tables"),
        invariance=report("results/tables/invariance.html", caption="../report/invariance.rst", category="Tables"),
        other_formats=[f"results/tables/{t}.{ext}" for t in TABLES for ext in ("csv", "md", "tex")],
        ablation_figure=report("results/figures/ablation.png", caption="../report/ablation_figure.rst", category="Figures"),
        confusion=report("results/figures/confusion.png", caption="../report/confusion.rst", category="Figures"),
        curves=report("results/figures/curves.png", caption="../report/curves.rst", category="Figures"),
        tsne=report("results/figures/tsne.png", caption="../report/tsne.rst", category="Figures"),
        per_class_f1=report("results/figures/per_class_f1.png", caption="../report/per_class_f1.rst", category="Figures"),
        plots=directory("results/plots"),
        sweep=sweep_outputs(),
    conda:
        ENV
    log:
        "results/logs/aggregate.log",
    threads: report_cpus()
    params:
        maln=MALN,
        sets=sets("datasets", "study", "report", "sweep"),
        config=report_config,
    shell:
        "{params.maln} aggregate --readme README.md --threads {threads} {params.sets} 2> {log}"
