# Raw files (synthesised or downloaded and verified) -> canonical stores.

rule synth:
    output:
        "data/raw/{dataset}.pkl",
    conda:
        ENV
    log:
        "results/logs/synth/{dataset}.log",
    wildcard_constraints:
        dataset="|".join(map(re.escape, [d for d in SYNTHETIC if d not in ORACLE_DATASETS])) or NEVER,
    params:
        maln=MALN,
        sets=sets("datasets.{dataset}", "data"),
        config=data_config,
    shell:
        "{params.maln} synth {wildcards.dataset} {params.sets} 2> {log}"


use rule synth as synth_with_oracle with:
    output:
        "data/raw/{dataset}.pkl",
        oracle_file("{dataset}"),
    wildcard_constraints:
        dataset="|".join(map(re.escape, ORACLE_DATASETS)) or NEVER,


rule fetch:
    output:
        "data/raw/{file}",
    conda:
        ENV
    log:
        "results/logs/fetch/{file}.log",
    wildcard_constraints:
        file="|".join(map(re.escape, DOWNLOADS)) or NEVER,
    params:
        maln=MALN,
        sets=sets("datasets", "data"),
        dataset=fetch_dataset,
    shell:
        "{params.maln} fetch {params.dataset} {params.sets} 2> {log}"


rule prepare:
    input:
        raw_inputs,
    output:
        "data/features/{dataset}/meta.json",
    conda:
        ENV
    log:
        "results/logs/prepare/{dataset}.log",
    params:
        maln=MALN,
        sets=sets("datasets.{dataset}", "data"),
        config=data_config,
    shell:
        "{params.maln} prepare {wildcards.dataset} {params.sets} 2> {log}"


rule data:
    input:
        study_stores(),
        study_oracles(),
