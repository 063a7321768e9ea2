# One training job per dataset x variant x seed (study.seeds_per_job > 1 groups seeds into one
# process: one rule per group of seeds, since a rule's outputs cannot vary in number).

_RESOURCES = train_resources()

for _chunk in seed_chunks(config):
    _tag = "_".join(map(str, _chunk))

    rule:
        name:
            f"train_seed{_tag}" if len(_chunk) == 1 else f"train_seeds{_tag}"
        input:
            store="data/features/{dataset}/meta.json",
        output:
            run_outputs(_chunk),
        conda:
            ENV
        log:
            f"results/logs/train/{{dataset}}/{{variant}}/seed{_tag}.log",
        benchmark:
            f"results/benchmarks/train/{{dataset}}/{{variant}}/seed{_tag}.tsv"
        threads: config["resources"]["threads"]
        resources:
            **_RESOURCES,
        params:
            maln=MALN,
            sets=sets("datasets.{dataset}", "model", "train"),
            seeds=" ".join(map(str, _chunk)),
            config=train_config(_chunk),
        shell:
            "{params.maln} train --dataset {wildcards.dataset} --variant {wildcards.variant} "
            "--seed {params.seeds} --threads {threads} {params.sets} 2> {log}"


rule runs:
    input:
        study_runs(),
        study_baselines(),


rule baseline:
    input:
        store="data/features/{dataset}/meta.json",
    output:
        "results/baselines/{dataset}.json",
    conda:
        ENV
    log:
        "results/logs/baseline/{dataset}.log",
    params:
        maln=MALN,
        sets=sets("datasets.{dataset}", "baselines"),
        config=baseline_config,
    shell:
        "{params.maln} baseline {wildcards.dataset} {params.sets} 2> {log}"
