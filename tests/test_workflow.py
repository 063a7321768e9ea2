"""The workflow with the real Snakemake on a tiny study: run, -n, lint, report, several GPUs, the
offline real-data switch, grouped seeds, sweeps (DVC's side: tests/test_dvc.py)."""

import json
import shutil
import sys
from itertools import combinations

import pytest

from workflow_helpers import copy_repo, edited, job_stats, make_tiny, run, snakemake

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = copy_repo(tmp_path_factory.mktemp("study"))
    make_tiny(root)
    proc = snakemake(root, "--cores", "4", "--resources", "gpu=1")
    return root, proc


def test_tiny_study_runs_and_then_has_nothing_to_do(study):
    root, proc = study
    metrics = json.loads((root / "results/metrics.json").read_text())
    baselines = {"majority", "logreg_text", "logreg_audio", "logreg_all", "mlp_all", "logreg_all_chain"}
    # late fusion needs text_only and another single-modality run: visual_only here, none on MELD
    assert set(metrics["synthetic-iemocap"]) == {"full", "text_only", "visual_only", "logreg_visual", "late_fusion"} | baselines
    assert set(metrics["synthetic-meld"]) == {"full", "text_only"} | baselines  # visual_only does not apply
    assert metrics["synthetic-iemocap"]["full"]["n"] == 2
    for seed in (0, 1):
        log = root / f"results/logs/train/synthetic-meld/full/seed{seed}.log"
        assert "test acc" in log.read_text()
        assert (root / f"results/benchmarks/train/synthetic-meld/full/seed{seed}.tsv").is_file()
    assert "-m maln train --dataset" in proc.stdout + proc.stderr  # the command, to rerun by hand
    again = snakemake(root, "-n")
    assert "Nothing to be done" in again.stdout + again.stderr


def test_parameter_change_reruns_only_the_jobs_it_concerns(study):
    root, _ = study
    out = snakemake(root, "-n", "--config", "train={weight_decay: 0.001}")
    text = out.stdout + out.stderr
    assert "train_seed0" in text and "prepare" not in text and "synth " not in text
    out = snakemake(root, "-n", "--config", "study={seeds: [0]}")
    assert "train_seed" not in out.stdout + out.stderr


def test_a_non_finite_config_value_stops_snakemake_before_any_job(study):
    root, _ = study
    out = snakemake(root, "-n", "--config", "train={lr: .nan}", check=False)
    assert out.returncode != 0 and "train.lr: nan is not a finite number" in out.stdout + out.stderr


def test_editing_code_that_training_imports_reruns_training_and_a_report_module_only_the_report(study):
    """Code dependencies are read off the imports (maln/deps.py): maln/combination.py chooses the
    weights every prediction uses and was once missing from a hand-kept list."""
    root, _ = study
    def planned():
        return set(job_stats(snakemake(root, "-n")))

    with edited(root / "maln/combination.py"):
        jobs = planned()
    assert {"train_seed0", "train_seed1", "aggregate"} <= jobs and not {"synth", "prepare", "baseline"} & jobs, jobs
    with edited(root / "maln/report/figures.py"):
        jobs = planned()
    assert jobs == {"aggregate", "all"}, jobs
    assert planned() == set()


def test_a_sweep_runs_with_one_command_and_makes_its_table_and_figure(study, tmp_path):
    root, _ = study
    swept = tmp_path / "swept"
    shutil.copytree(root, swept, symlinks=True)
    sweep = "sweep={train.loss_weights.orthogonality: [0, 0.5]}"
    study = "study={seeds: [0], datasets: [synthetic-meld]}"  # one seed of one dataset: the machinery, quickly
    snakemake(swept, "--cores", "2", "--config", sweep, study)
    for value in ("0", "0.5"):
        metrics = json.loads((swept / f"results/sweeps/train.loss_weights.orthogonality/{value}/synthetic-meld/seed0/"
                              "metrics.json").read_text())
        assert metrics["variant"] == "full"
        assert metrics["config"]["train"]["loss_weights"]["orthogonality"] == float(value)
    assert not (swept / "results/sweeps/train.loss_weights.orthogonality/0/synthetic-iemocap").exists()
    table = (swept / "results/tables/sweep.md").read_text()
    assert "| train.loss_weights.orthogonality | 0.5 | synthetic-meld |" in table
    assert (swept / "results/figures/sweep.png").read_bytes()[:4] == b"\x89PNG"
    again = snakemake(swept, "-n", "--config", sweep, study)
    assert "Nothing to be done" in again.stdout + again.stderr


def test_training_jobs_count_a_cpu_each_start_multimodal_first_and_run_their_own_threads(study):
    """`--cores` twice the CPUs: each training job counts 2 (so one per CPU runs) but is told
    resources.threads (1); multimodal jobs first; the aggregate gets a CPU per t-SNE process."""
    import re

    from snakemake.utils import available_cpu_count

    root, _ = study
    cpus = available_cpu_count()
    out = snakemake(root, "-n", "-p", "--forceall", "--cores", str(2 * cpus), "--resources", "gpu=1").stdout
    jobs = {}
    for block in re.split(r"\n(?=(?:local)?rule )", out):
        rule = re.match(r"(?:local)?rule (\w+):", block)
        if rule and rule.group(1).startswith(("train_seed", "aggregate")):
            wildcards = re.search(r"wildcards: .*variant=(\S+)", block)
            field = lambda name: int((re.search(rf"\n    {name}: (\d+)", block) or [0, 1 if name == "threads" else 0])[1])
            shell = re.search(r"Shell command: (.*)", block)[1]
            jobs[wildcards[1] if wildcards else rule.group(1)] = (field("threads"), field("priority"), shell)
    assert {v: j[:2] for v, j in jobs.items() if v != "aggregate"} == {"full": (2, 1), "text_only": (2, 0), "visual_only": (2, 0)}
    assert all("--threads 1 " in shell for v, (_, _, shell) in jobs.items() if v != "aggregate")
    assert jobs["aggregate"][0] == cpus and f"--threads {cpus} " in jobs["aggregate"][2]


def test_parsing_the_snakefile_imports_no_torch(study):
    """Every Snakemake start (each `dvc repro` stage, each job on SLURM) parses the Snakefile;
    torch's import would add 2-3 s of CPU to each (resources.gpu: auto asks whether CUDA is there:
    maln.devices.cuda_available reads it off the installed torch's build)."""
    root, _ = study
    code = ("import sys\nfrom snakemake.cli import main\ntry:\n    main(['-n', '--quiet'])\n"
            "except SystemExit as e:\n    assert not e.code, e.code\n"
            "print(sorted(m for m in ('torch', 'sklearn', 'maln.train') if m in sys.modules))")
    out = run([sys.executable, "-c", code], root)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout[-2000:]


def test_lint_is_clean(study):
    root, _ = study
    out = snakemake(root, "--lint")
    assert "Congratulations, your workflow is in a good condition!" in out.stdout + out.stderr


def _browser(tmp_path):
    """Headless Chromium driven by Selenium, or a skip that says what is missing."""
    import shutil as sh

    for tool in ("chromium", "chromedriver"):
        if not sh.which(tool):
            pytest.skip(f"{tool} is not installed (Debian: apt-get install chromium chromium-driver; .ci/run does)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[test]')")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1500,1100", f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        opts.add_argument(arg)
    opts.binary_location = sh.which("chromium")
    return webdriver.Chrome(service=Service(sh.which("chromedriver")), options=opts)


def test_report_shows_the_main_table_and_the_ablation_figure_in_a_browser(study, tmp_path):
    """Builds the report, opens it in headless Chromium and clicks through it as a reader would;
    screenshots are saved next to the test output (the paths are printed)."""
    import base64
    import time

    from selenium.webdriver.common.by import By

    root, _ = study
    snakemake(root, "--report", "report.html")
    driver = _browser(tmp_path)
    try:
        driver.get((root / "report.html").as_uri())

        def open_result(category, name):
            time.sleep(1.0)
            driver.find_element(By.XPATH, f"//*[normalize-space(text())='{category}']").click()
            time.sleep(0.5)
            row = driver.find_element(By.XPATH, f"//td[normalize-space(text())='{name}']/..")
            row.find_element(By.CSS_SELECTOR, "a[iconname='eye']").click()
            time.sleep(1.0)

        open_result("Tables", "results/tables/main.html")
        driver.save_screenshot(str(tmp_path / "report-main-table.png"))
        frame = driver.find_element(By.TAG_NAME, "iframe")
        driver.switch_to.frame(frame)
        table = driver.find_element(By.TAG_NAME, "table").text
        driver.switch_to.default_content()
        assert "Weighted F1" in table and "synthetic-iemocap full 2" in table and "n/a" in table
        driver.find_element(By.XPATH, "//*[normalize-space(text())='Results']").click()
        open_result("Figures", "results/figures/ablation.png")
        driver.save_screenshot(str(tmp_path / "report-ablation-figure.png"))
        shown = [img for img in driver.find_elements(By.TAG_NAME, "img")
                 if (img.get_attribute("src") or "").startswith("data:image/png") and img.size["width"] > 300]
        assert shown, "the ablation figure is not displayed"
        png = base64.b64decode(shown[0].get_attribute("src").split(",", 1)[1])
        assert png == (root / "results/figures/ablation.png").read_bytes()
    finally:
        driver.quit()
    print(f"screenshots: {tmp_path / 'report-main-table.png'}, {tmp_path / 'report-ablation-figure.png'}")


def test_concurrent_training_jobs_get_distinct_gpus(tmp_path, monkeypatch):
    """Two jobs that hold a GPU at the same moment hold different ones. The moment is made, not hoped
    for: the test holds both (simulated) GPUs until two training jobs are waiting for one, then lets
    both go; on a loaded machine, jobs left to start on their own can each finish before the next
    asks (CI once saw four jobs in a row on slot 0)."""
    import time
    from concurrent.futures import ThreadPoolExecutor

    from maln.devices import acquire_slot

    root = copy_repo(tmp_path / "gpus")
    # multimodal jobs: each holds its GPU for a second or more (its probes), longer than the 0.5 s a
    # waiting job sleeps between polls; a tiny single-modality job holds it 0.1 s, and the second
    # waiter could find the first one gone and take its slot (seen once, all four on slot 0)
    variants = ("full", "no_sclm", "no_adversary")
    make_tiny(root, variants=variants, seeds=(0,), epochs=3, datasets=("synthetic-iemocap",))
    locks = tmp_path / "locks"
    monkeypatch.setenv("MALN_GPU_LOCK_DIR", str(locks))
    keys = ["simulated-0", "simulated-1"]  # MALN_SIMULATE_GPUS=2's slots
    held = [acquire_slot(keys)[1] for _ in keys]  # slot 0, then slot 1
    logs = [root / f"results/logs/train/synthetic-iemocap/{v}/seed0.log" for v in variants]
    with ThreadPoolExecutor(1) as pool:
        done = pool.submit(snakemake, root, *[f"results/runs/synthetic-iemocap/{v}/seed0/metrics.json"
                                               for v in variants],
                           # a CPU each, however few the machine has, so that two run at once
                           "--cores", "4", "--set-threads", "train_seed0=1", "--resources", "gpu=2",
                           "--config", "resources={gpu: 1}",
                           MALN_SIMULATE_GPUS="2", MALN_GPU_LOCK_DIR=str(locks))
        try:
            deadline = time.monotonic() + 300
            while sum(log.exists() and "GPU(s) are taken" in log.read_text() for log in logs) < 2:
                assert not done.done(), done.result()
                assert time.monotonic() < deadline, "no two training jobs ever waited for a GPU"
                time.sleep(0.2)
        finally:
            for f in held:
                f.close()  # both slots free at once (and, should the wait fail, Snakemake not left hanging)
        done.result()
    jobs = []
    for m in (root / "results/runs").glob("*/*/seed0/metrics.json"):
        metrics = json.loads(m.read_text())
        assert "simulated" in metrics["device"], metrics["device"]
        slot = int(metrics["device"].split("slot ")[1].split(",")[0])
        clock = json.loads(m.with_name("timing.json").read_text())
        jobs.append((clock["device_held_from"], clock["finished_at"], slot, m.parent))
    assert len(jobs) == len(variants) and {slot for *_, slot, _ in jobs} == {0, 1}
    overlapping = [(a, b) for a, b in combinations(jobs, 2) if a[0] < b[1] and b[0] < a[1]]
    assert overlapping, "no two jobs ran at once; the test proves nothing"
    for a, b in overlapping:
        assert a[2] != b[2], f"{a[3]} and {b[3]} ran at the same time on slot {a[2]}"


def test_real_data_without_network_stops_early_with_the_fetch_error(tmp_path):
    import socket

    import yaml

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    root = copy_repo(tmp_path / "offline")
    params = yaml.safe_load((root / "params.yaml").read_text())
    url = f"http://127.0.0.1:{port}/conv-emotion/IEMOCAP_features.pkl"
    params["datasets"]["iemocap"]["url"] = url
    params["datasets"].pop("iemocap-roberta")
    params["study"]["datasets"] = ["iemocap"]
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = snakemake(root, "--cores", "2", check=False)
    text = out.stdout + out.stderr
    assert out.returncode != 0
    assert "could not connect" in text and url in text and "place the file by hand" in text
    assert not (root / "data/raw/IEMOCAP_features.pkl").exists()
    assert not (root / "results/runs").exists()  # nothing trained, nothing substituted


def test_your_own_dataset_with_its_oracle_is_planned_and_a_missing_oracle_named(tmp_path):
    import yaml

    from maln.data import synthetic

    root = copy_repo(tmp_path / "yours")
    params = yaml.safe_load((root / "params.yaml").read_text())
    made = {**params["datasets"]["synthetic-iemocap-interaction"]["synthetic"], "dialogues": 12}
    synthetic.write(root / "data/raw/yours.pkl", "synthetic-iemocap", made)  # and data/raw/yours.oracle.npz
    params["datasets"]["yours"] = {"layout": "conv-emotion-iemocap", "path": "data/raw/yours.pkl",
                                   "oracle": {"path": "data/raw/yours.oracle.npz"}}
    params["study"].update(datasets=["yours"], variants=["full"], seeds=[0])
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = snakemake(root, "-n", "-p", "aggregate", "--cores", "1")
    assert "rule prepare" in out.stdout and "data/raw/yours.oracle.npz" in out.stdout
    (root / "data/raw/yours.oracle.npz").unlink()
    out = snakemake(root, "-n", "--cores", "1", check=False)
    assert out.returncode != 0
    assert "yours: its oracle data/raw/yours.oracle.npz (datasets.yours.oracle.path) does not exist" in out.stdout + out.stderr


def test_fresh_clone_with_committed_results_still_runs_the_study(tmp_path):
    """Tables, figures and metrics.json live in git; a clone without runs must train them."""
    root = copy_repo(tmp_path / "fresh")
    make_tiny(root, variants=("text_only",), seeds=(0,))
    (root / "results").mkdir()
    for name in ("metrics.json",):
        (root / "results" / name).write_text("{}")
    out = snakemake(root, "-n")
    assert "train_seed0" in out.stdout + out.stderr and "Nothing to be done" not in out.stdout + out.stderr


def test_seeds_grouped_in_one_job_give_the_same_runs_as_one_job_per_seed(study, tmp_path):
    root, _ = study
    grouped = copy_repo(tmp_path / "grouped")
    # the study fixture's parameters, seeds 0 and 1 in one job, on one of its two datasets
    make_tiny(grouped, seeds_per_job=2, datasets=("synthetic-meld",))
    # the runs only: what grouping could change (the baseline and the report are not run)
    targets = [f"results/runs/synthetic-meld/{v}/seed{s}/metrics.json" for v in ("full", "text_only") for s in (0, 1)]
    out = snakemake(grouped, *targets, "--cores", "4", "--resources", "gpu=1")  # targets first: options take lists
    assert "train_seeds0_1" in out.stdout + out.stderr
    runs = sorted(p.relative_to(root) for p in (root / "results/runs/synthetic-meld").rglob("*") if p.is_file())
    assert runs == sorted(p.relative_to(grouped) for p in (grouped / "results/runs").rglob("*") if p.is_file())
    for rel in runs:
        a, b = (root / rel), (grouped / rel)
        if rel.name == "metrics.json":
            ma, mb = json.loads(a.read_text()), json.loads(b.read_text())
            assert ma == mb
        elif rel.suffix == ".csv" and rel.name != "history.csv":
            assert a.read_bytes() == b.read_bytes(), rel


@pytest.mark.parametrize("configfile", ["benchmarks/heldout.yaml", "benchmarks/heldout-meld-500.yaml", "benchmarks/heldout-b.yaml",
                                        "benchmarks/heldout-c.yaml"])
def test_the_held_out_benchmarks_are_planned_from_their_config_file_and_are_not_in_the_study(tmp_path, configfile):
    """benchmarks/heldout*.yaml (docs/findings.md, 2026-12-05): registry entries and a study merged over
    params.yaml by `--configfile`. Held out means the shipped study never trains them; the file alone
    must make Snakemake plan each one's oracle and its recommended rows, and nothing of the study's."""
    import yaml

    root = copy_repo(tmp_path / "heldout")
    extra = yaml.safe_load((root / configfile).read_text())
    shipped = yaml.safe_load((root / "params.yaml").read_text())
    assert set(extra["datasets"]).isdisjoint(shipped["datasets"])
    assert set(extra["study"]["datasets"]) == set(extra["datasets"])
    out = snakemake(root, "-n", "-p", "--cores", "1", "--configfile", configfile)
    text = out.stdout + out.stderr
    for name in extra["datasets"]:
        assert f"data/raw/{name}.oracle.npz" in text and f"results/runs/{name}/full/seed2/metrics.json" in text
    assert "results/runs/synthetic-" not in text and "/paper/" not in text


def test_the_data_size_study_plans_its_datasets_rows_and_nothing_of_the_shipped_study(tmp_path):
    """benchmarks/data-size.yaml (docs/findings.md, 2026-12-06): the two fusion benchmarks at five times
    their dialogues, every row of the study's fusion benchmarks, the paper's model included."""
    import yaml

    root = copy_repo(tmp_path / "sizes")
    extra = yaml.safe_load((root / "benchmarks/data-size.yaml").read_text())
    shipped = yaml.safe_load((root / "params.yaml").read_text())
    for name, entry in extra["datasets"].items():  # the same law: only the number of dialogues differs
        base = shipped["datasets"][name.removesuffix("-x5")]
        assert {**entry["synthetic"], "dialogues": base["synthetic"]["dialogues"]} == base["synthetic"], name
        assert entry["synthetic"]["dialogues"] == 5 * base["synthetic"]["dialogues"], name
    out = snakemake(root, "-n", "-p", "--cores", "1", "--configfile", "benchmarks/data-size.yaml")
    text = out.stdout + out.stderr
    for name in extra["datasets"]:
        assert f"results/runs/{name}/paper/full/seed2/metrics.json" in text and f"data/raw/{name}.oracle.npz" in text
        assert f"results/runs/{name.removesuffix('-x5')}/" not in text


def test_the_noise_draws_are_the_noise_control_with_other_seeds_and_nothing_of_the_shipped_study(tmp_path):
    """benchmarks/noise-draws.yaml (docs/findings.md, 2026-12-06): synthetic-iemocap-noise drawn again, so that
    the only difference from the study's control is the generator seed, and the rows late fusion needs."""
    import yaml

    root = copy_repo(tmp_path / "draws")
    extra = yaml.safe_load((root / "benchmarks/noise-draws.yaml").read_text())
    base = yaml.safe_load((root / "params.yaml").read_text())["datasets"]["synthetic-iemocap-noise"]
    seeds = {entry["synthetic"]["seed"] for entry in extra["datasets"].values()}
    assert len(seeds) == len(extra["datasets"]) >= 3 and base["synthetic"]["seed"] not in seeds
    for entry in extra["datasets"].values():
        assert {**entry, "description": base["description"], "synthetic": {**entry["synthetic"], "seed": 7}} == base
    out = snakemake(root, "-n", "-p", "--cores", "1", "--configfile", "benchmarks/noise-draws.yaml")
    text = out.stdout + out.stderr
    for name in extra["datasets"]:
        assert all(f"results/runs/{name}/{v}/seed2/metrics.json" in text for v in ("full", "text_only", "visual_only"))
    assert "results/runs/synthetic-" not in text and "/paper/" not in text
