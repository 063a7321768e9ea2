"""The tiny study through a real single-node SLURM (workflow/scripts/local-slurm.sh) with the
executor plugin submitting real sbatch jobs; the results must equal a local run's."""

import json
import os
import re
import shutil
import subprocess

import pytest

from builders import REPO
from workflow_helpers import copy_repo, make_tiny, snakemake

pytestmark = pytest.mark.integration

SCRIPT = REPO / "workflow/scripts/local-slurm.sh"
# No accounting database on the local cluster: job states come from squeue; first check after 1 s,
# then every 2 s (the default 10 s would leave the tiny jobs' results waiting).
SLURM_FLAGS = ["--slurm-status-command", "squeue", "--slurm-no-account", "--slurm-init-seconds-before-status-checks", "1",
               "--seconds-between-status-checks", "2"]


@pytest.fixture(scope="module")
def slurm():
    pytest.importorskip("snakemake_executor_plugin_slurm", reason="the SLURM executor plugin is not installed "
                        "(pip install -e '.[slurm]')")
    if os.geteuid() != 0:
        pytest.skip("bringing up a local SLURM needs root (workflow/scripts/local-slurm.sh)")
    if not shutil.which("apt-get") and not shutil.which("slurmctld"):
        pytest.skip("neither SLURM nor apt-get to install it is available")
    was_up = subprocess.run(["bash", str(SCRIPT), "status"], capture_output=True).returncode == 0
    up = subprocess.run(["bash", str(SCRIPT), "up"], capture_output=True, text=True, timeout=600)
    if up.returncode != 0:
        pytest.skip(f"could not bring up a local SLURM: {up.stderr.strip()[-500:]}")
    yield
    if not was_up:
        subprocess.run(["bash", str(SCRIPT), "down"], capture_output=True, timeout=60)


def test_tiny_study_through_slurm_equals_the_local_run(slurm, tmp_path):
    cluster = copy_repo(tmp_path / "cluster")
    local = copy_repo(tmp_path / "local")
    for root in (cluster, local):
        make_tiny(root, variants=("text_only", "visual_only"), seeds=(0,), epochs=2, datasets=("synthetic-iemocap",))
    # Training jobs ask for a GPU of a given model, memory, time and a partition, as on a real
    # cluster (README "SLURM"): each request must reach sbatch and be granted from the node's
    # (fake) gpu GRES; with no CUDA behind it, torch trains on the CPU.
    out = snakemake(cluster, "--profile", "workflow/profiles/slurm", *SLURM_FLAGS, "--config",
                    "resources={gpu: 1, gpu_model: fake, mem_mb: 3000, runtime: 20, slurm_partition: debug}",
                    timeout=900, slurm=True)
    text = out.stdout + out.stderr
    # "Job 4 has been submitted with SLURM jobid 2 (log: .../slurm_logs/rule_synth/...)"
    submitted = re.findall(r"submitted with SLURM jobid (\d+) \(log: \S+/slurm_logs/rule_(\w+)/", text)
    rules = sorted(rule for _, rule in submitted)
    assert len({jobid for jobid, _ in submitted}) == 6, text[-3000:]
    assert rules == ["aggregate", "baseline", "prepare", "synth", "train_seed0", "train_seed0"]
    for jobid, rule in submitted:
        # Finished jobs stay in slurmctld's memory for MinJobAge (300 s), long enough to ask.
        job = subprocess.run(["scontrol", "show", "job", "-o", jobid], capture_output=True, text=True).stdout
        # TresPerJob=gres:gpu:fake:1 is sbatch's --gpus=fake:1; the job ran, so the GRES granted it.
        if rule.startswith("train"):
            for field in ("TresPerJob=gres:gpu:fake:1", "MinMemoryNode=3000M", "TimeLimit=00:20:00",
                          "Partition=debug", "NumCPUs=1", "JobState=COMPLETED"):
                assert field in job, (field, job)
        else:
            assert not re.search(r"gres[:/]gpu", job) and "JobState=COMPLETED" in job, (rule, job)
    snakemake(local, "--cores", "2")
    runs = sorted(p.relative_to(local) for p in (local / "results/runs").rglob("metrics.json"))
    assert len(runs) == 2
    for rel in runs:
        a, b = json.loads((cluster / rel).read_text()), json.loads((local / rel).read_text())
        assert a == b
        assert (cluster / rel).with_name("predictions.csv").read_bytes() == (local / rel).with_name("predictions.csv").read_bytes()
    assert (cluster / "results/tables/main.csv").read_text() == (local / "results/tables/main.csv").read_text()
