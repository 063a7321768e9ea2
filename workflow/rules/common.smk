# Configuration is validated once, here; every helper the rules use lives in this file.

import os
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import available_cpu_count, validate

from maln.config import check_references, diff_overrides, effective_config, read_params_file, read_yaml, validate_schema
from maln.deps import STEPS, files as code_files
from maln.devices import cuda_available
from maln.io import canonical_hash
from maln.data import layouts
from maln.data.fetch import raw_files, verify
from maln.data.shapes import has_oracle
from maln.errors import MalnError
from maln.config import Params
from maln.model.variants import VARIANTS
from maln.study import RUN_FILES, SWEEP_VARIANT, TABLES, report_outputs as aggregate_outputs, baseline_path, labels, oracle_file as registry_oracle, parse_label, runs, seed_chunks, sweep_path, sweep_runs

_SHIPPED = read_params_file("params.yaml")


def _retype(value, shipped=None):
    """Snakemake reads nested `--config` values as strings ('0.3', '1'); read scalars back as YAML.
    What equals params.yaml's own value came from the file, typed already, and is not parsed again."""
    if value == shipped:
        return value
    if isinstance(value, dict):
        shipped = shipped if isinstance(shipped, dict) else {}
        return {k: _retype(v, shipped.get(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_retype(v) for v in value]
    if isinstance(value, str) and value.strip():
        parsed = read_yaml(value, f"--config value {value!r}")
        return parsed if not isinstance(parsed, (dict, list)) else value
    return value


config.update(_retype(dict(config), _SHIPPED))
validate(config, schema="../schemas/params.schema.yaml")
# maln's own pass over the same schema also refuses what JSON Schema admits (NaN, infinities, 8.0 as
# an integer), so a bad --config value stops here, not in the first training job
validate_schema(config, "params.yaml with --config")
check_references(config)

STUDY = config["study"]

# Every job runs `maln` with this interpreter (so a person can rerun it by hand), and passes on any
# `--config` change as `--set`, so jobs see exactly the configuration Snakemake validated.
_OVERRIDES = diff_overrides(_SHIPPED, config)
PARAMS = Params(config, Path("params.yaml").resolve(), tuple(_OVERRIDES))
# With --use-conda a job runs in workflow/envs/maln.yaml, whose `python` is the one to call.
_CONDA = "CONDA" in {m.name for m in workflow.deployment_settings.deployment_method}


def _interpreter() -> str:
    """This interpreter, spelt `<its bin>/python` where that is the same program: a venv's python,
    python3 and python3.11 are one, and `snakemake` (its script says python3) and `python -m
    snakemake` must give the jobs the same command, or each would rerun every job of the other."""
    exe = Path(sys.executable)
    plain = exe.with_name("python")
    try:
        return str(plain) if plain != exe and os.path.samefile(plain, exe) else str(exe)
    except OSError:
        return str(exe)


MALN = "python -m maln" if _CONDA else f"{shlex.quote(_interpreter())} -m maln"
ENV = "../envs/maln.yaml"


def sets(*sections):
    """The `--set` arguments a job needs: only overrides under `sections` ('{dataset}' is filled
    from the job's wildcards), so changing, say, study.seeds does not rerun unrelated jobs."""

    def args(wildcards):
        keys = [k.format(**wildcards) for k in sections]
        chosen = [o for o in _OVERRIDES if any(o.split("=", 1)[0] == k or o.startswith(f"{k}.") for k in keys)]
        return " ".join(f"--set {shlex.quote(o)}" for o in chosen)

    return args


# Snakemake reruns a job when its params change, not when params.yaml or maln's code does. So each
# job carries the hash of the configuration it uses and of the code it runs: the files its `maln`
# command imports, read off the imports (maln/deps.py, which also writes dvc.yaml's code deps). An
# edit of train.lr, or of any module training imports, then reruns exactly the training jobs.
def source_hash(step):
    root = Path(workflow.basedir)
    return canonical_hash({f: (root / f).read_text() for f in code_files(step, root)})


CODE = {step: source_hash(step) for step in STEPS}


def data_config(wildcards):
    return canonical_hash([config["datasets"][wildcards.dataset], config["data"], CODE["data"]])


def train_config(seeds):
    def config_hash(wildcards):
        configuration, variant = parse_label(wildcards.variant)
        runs_ = [effective_config(PARAMS, wildcards.dataset, variant, s, configuration) for s in seeds]
        return canonical_hash([runs_, CODE["train"]])

    return config_hash


def configuration_of(wildcards):
    """A job's configuration and variant, from its row label (`paper/full`: paper, full)."""
    return parse_label(wildcards.variant)[0]


def variant_of(wildcards):
    return parse_label(wildcards.variant)[1]


def train_priority(wildcards):
    """Multimodal rows first (each takes three to five times a single modality's time), so that the
    study does not end on one long job with the other CPUs idle."""
    return 0 if VARIANTS[variant_of(wildcards)].modality else 1


def baseline_config(wildcards):
    return canonical_hash([config["baselines"], CODE["baseline"]])


def report_config(wildcards):
    return canonical_hash([STUDY, config["report"], config.get("sweep") or {}, CODE["report"]])


def sweep_outputs():
    """The sweep's table and figure, when params.yaml asks for a sweep."""
    return [f for f in aggregate_outputs(config) if Path(f).stem == "sweep"]

def _raw(dataset):
    return raw_files(PARAMS, dataset)


# Files a user places by hand are checked now, so a missing one stops the run before any job starts.
for _dataset in STUDY["datasets"]:
    for _f in _raw(_dataset):
        if _f.url is None and not _f.synthetic:
            try:
                verify(_f)
            except MalnError as e:
                raise WorkflowError(str(e)) from None

SYNTHETIC = [d for d in STUDY["datasets"] if layouts.get(config["datasets"][d]["layout"]).synthetic]
# downloaded file name -> the first study dataset that pins it (several may share one file)
DOWNLOADS = {}
for _dataset in STUDY["datasets"]:
    for _f in _raw(_dataset):
        if _f.url is not None:
            DOWNLOADS.setdefault(_f.path.name, _dataset)

# Synthetic datasets whose kind has an exact Bayes oracle (maln/data/fusion.py): `maln synth` writes
# data/raw/NAME.oracle.npz beside data/raw/NAME.pkl, so their rule declares both; the others (the
# `styled` default) write the raw file only.
ORACLE_DATASETS = [d for d in SYNTHETIC if has_oracle(config["datasets"][d]["synthetic"])]


def oracle_file(dataset):
    return f"data/raw/{dataset}.oracle.npz"


def study_oracles():
    """Every study dataset's oracle file (maln.study.oracle_file): the synthetic kinds' and your own
    (`oracle: {path}`), which must exist, as a `path:` raw file must."""
    out = []
    for d in STUDY["datasets"]:
        path = registry_oracle(config, d)
        if path is None:
            continue
        try:
            resolved = PARAMS.resolve(path, f"datasets.{d}.oracle.path")
        except MalnError as e:
            raise WorkflowError(str(e)) from None
        if d not in ORACLE_DATASETS and not resolved.is_file():
            raise WorkflowError(f"{d}: its oracle {path} (datasets.{d}.oracle.path) does not exist; place it there "
                                "or remove the key")
        out.append(path)
    return out


NEVER = "(?!x)x"  # a wildcard constraint that matches nothing


def raw_inputs(wildcards):
    """Raw files as paths relative to the project where they are inside it (so they match the
    output patterns of synth and fetch); a file kept elsewhere on purpose stays absolute."""
    root = PARAMS.root
    return [str(f.path.relative_to(root)) if f.path.is_relative_to(root) else str(f.path)
            for f in _raw(wildcards.dataset)]


def fetch_dataset(wildcards):
    return DOWNLOADS[wildcards.file]


def store(dataset):
    return f"data/features/{dataset}/meta.json"


def run_outputs(seeds, dataset="{dataset}", variant="{variant}"):
    return [f"results/runs/{dataset}/{variant}/seed{s}/{name}" for s in seeds for name in RUN_FILES]


def study_stores():
    return [store(d) for d in STUDY["datasets"]]


def study_runs():
    return [f"results/runs/{d}/{v}/seed{s}/metrics.json" for d, v, s in runs(config)]


SWEEP = list((config.get("sweep") or {}))


def study_sweeps():
    return [str(sweep_path(*job) / "metrics.json") for job in sweep_runs(config)]


def sweep_config(wildcards):
    seed = int(wildcards.seed)
    overridden = Params(config, PARAMS.path, PARAMS.overrides + (f"{wildcards.key}={wildcards.value}",))
    return canonical_hash([effective_config(overridden, wildcards.dataset, SWEEP_VARIANT, seed), CODE["train"]])


def study_baselines():
    return [str(baseline_path(d)) for d in STUDY["datasets"]]


def _local_cores():
    """`--cores` of a run on this machine; None on a cluster (where a job's CPUs are what it asked
    for, on the submitting side and in the job alike) or without `--cores`."""
    if not workflow.local_exec or workflow.remote_exec:
        return None
    try:
        return workflow.cores
    except WorkflowError:
        return None


def job_cpus():
    """The CPUs Snakemake counts for one training job: resources.threads (the threads it runs), or
    `--cores` // the CPUs this process may use where that is more, so that run locally about as many
    training jobs as CPUs share the machine (`--cores 4` on 2 CPUs: two at a time, not four time-sliced;
    docs/development.md "Study time" has the study's time before and after). Scheduling only:
    the job still runs resources.threads threads (its --threads), so results do not depend on it;
    `--set-threads RULE=N` overrides it as for any rule."""
    threads = config["resources"]["threads"]
    cores = _local_cores()
    return max(threads, cores // available_cpu_count()) if cores else threads


def report_cpus():
    """The aggregate's processes (its t-SNE layouts run one per CPU): every CPU `--cores` gives it, up
    to the machine's; it runs last, when the training jobs are done."""
    cores = _local_cores()
    return max(1, min(cores, available_cpu_count())) if cores else 1


def train_resources():
    """Resources of a training job (params.yaml `resources:`). gpu=1 only where a GPU will be used,
    so a CPU-only machine never queues jobs behind a GPU nobody has."""
    r = config["resources"]
    gpu = r["gpu"]
    if gpu == "auto":
        device = config["train"]["device"]
        if device == "auto":
            device = "cuda" if cuda_available() else "cpu"
        gpu = int(device == "cuda")
    resources = {"mem_mb": r["mem_mb"], "runtime": r["runtime"], "gpu": gpu,
                 # what the job itself is told, as resources: changing them reruns nothing (params would)
                 "maln_threads": r["threads"], "checkpoint_every_s": r["checkpoint_every_s"]}
    # SLURM-only requests; absent unless set, so the profile's default-resources apply.
    if r.get("slurm_partition"):
        resources["slurm_partition"] = r["slurm_partition"]
    if r.get("gpu_model") and gpu:
        resources["gpu_model"] = r["gpu_model"]
    return resources


def report_outputs():
    # The runs are listed too: tables and figures are committed to git (the README shows them), so
    # on a fresh clone they exist, and only the missing runs make the study run again.
    return aggregate_outputs(config) + study_runs() + study_baselines() + study_sweeps()
