# MALN study: data -> stores -> one training job per dataset x variant x seed -> tables and figures.
# Configuration: params.yaml (validated against workflow/schemas/params.schema.yaml).
# Run: snakemake --cores 4 --resources gpu=1   (see README.md; the local profile is profiles/default)

from snakemake.utils import min_version

min_version("9.17")  # a rule priority given by a function (train.smk)


configfile: "params.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"


wildcard_constraints:
    dataset="|".join(map(re.escape, STUDY["datasets"])),
    variant="|".join(map(re.escape, labels(config))),  # full, paper/full: configuration x variant


include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        report_outputs(),
    default_target: True
