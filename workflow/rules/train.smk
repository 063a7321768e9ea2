# One training job per dataset x configuration x variant x seed (study.seeds_per_job > 1 groups seeds
# into one process: one rule per group of seeds, since a rule's outputs cannot vary in number). The
# {variant} wildcard is the study's row label: `full`, or `paper/full` for another configuration.

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
        threads: job_cpus()
        priority: train_priority
        resources:
            **_RESOURCES,
        params:
            maln=MALN,
            sets=sets("datasets.{dataset}", "budgets", "configurations", "model", "train", "baselines.logreg_C"),
            seeds=" ".join(map(str, _chunk)),
            config=train_config(_chunk),
            variant=variant_of,
            configuration=configuration_of,
        shell:
            "{params.maln} train --dataset {wildcards.dataset} --variant {params.variant} "
            "--seed {params.seeds} --threads {resources.maln_threads} {params.sets} --set configuration={params.configuration} "
            "--set resources.checkpoint_every_s={resources.checkpoint_every_s} 2> {log}"


# A sweep (params.yaml `sweep:`): one job per key x value x dataset x seed, the value passed on as
# the job's --set, so it wins over the dataset's overrides like any other --set.
rule train_sweep:
    input:
        store="data/features/{dataset}/meta.json",
    output:
        [f"results/sweeps/{{key}}/{{value}}/{{dataset}}/seed{{seed}}/{name}" for name in RUN_FILES],
    conda:
        ENV
    log:
        "results/logs/sweeps/{key}/{value}/{dataset}/seed{seed}.log",
    benchmark:
        "results/benchmarks/sweeps/{key}/{value}/{dataset}/seed{seed}.tsv"
    wildcard_constraints:
        key="|".join(map(re.escape, SWEEP)) or NEVER,
        seed=r"\d+",
    threads: job_cpus()
    resources:
        **_RESOURCES,
    params:
        maln=MALN,
        variant=SWEEP_VARIANT,
        sets=sets("datasets.{dataset}", "budgets", "configurations", "model", "train", "baselines.logreg_C"),
        config=sweep_config,
    shell:
        "{params.maln} train --dataset {wildcards.dataset} --variant {params.variant} --seed {wildcards.seed} "
        "--out results/sweeps/{wildcards.key}/{wildcards.value}/{wildcards.dataset}/seed{wildcards.seed} "
        "--threads {resources.maln_threads} {params.sets} --set resources.checkpoint_every_s={resources.checkpoint_every_s} "
        "--set {wildcards.key}={wildcards.value:q} 2> {log}"


rule runs:
    input:
        study_runs(),
        study_baselines(),
        study_sweeps(),


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
