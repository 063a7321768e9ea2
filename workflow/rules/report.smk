# Runs -> results/metrics.json (tables and figures are added by `maln aggregate`).


rule aggregate:
    input:
        study_runs(),
    output:
        "results/metrics.json",
    conda:
        ENV
    log:
        "results/logs/aggregate.log",
    params:
        maln=MALN,
        sets=sets("datasets", "study"),
        config=report_config,
    shell:
        "{params.maln} aggregate {params.sets} 2> {log}"
