"""edgeff sweep: specs, the Ray-run sweep on tiny data (killed and resumed, a failing variant), the refusal
without Ray, and the report's statistics against hand-computed values."""
import json
import math
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from edgeff.errors import EdgeFFError
from edgeff.sweep.spec import load_spec
from edgeff.sweep.stats import holm
from edgeff.sweep.table import read_table, write_table
from edgeff.sweep.trial import run_trial
from tests.conftest import TINY_CONFIG, run_cli, write_dataset
from tests.test_trainer import assert_png

SPEC = """
seeds = 2
data_dir = "{data}"
cpus_per_trial = 1
config = "tiny.toml"
[set.train]
epochs = 3
[[variants]]
name = "FF"
set.collab.mode = "none"
[[variants]]
name = "A-CFF"
set.collab.mode = "adaptive"
[[variants]]
name = "wrong width"
set.model.sizes = [100, 16]
"""
# what differs between two runs of the same trial: the clock and the machine
RUN_COLUMNS = {"wall_s", "train_s", "host", "finished_utc"}


def _sweep_folder(root, spec=SPEC, data=None):
    """A spec with its tiny config, reading `data` (written here if not given)."""
    data = data or write_dataset(root / "data")
    spec = spec.replace("{data}", str(data))
    (root / "tiny.toml").write_text(TINY_CONFIG.format(mode="none", epochs=3, negatives="random",
                                                       sizes=[784, 32, 16]))
    (root / "spec.toml").write_text(spec)
    return root / "spec.toml"


def _comparable(rows):
    return [{k: v for k, v in r.items() if k not in RUN_COLUMNS} for r in rows]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """One whole sweep, run by the CLI on a local Ray with 2 CPUs: (spec, results table, process)."""
    spec = _sweep_folder(tmp_path_factory.mktemp("sweep"))
    res = run_cli("sweep", spec, "--out", spec.parent / "out", "--cpus", 2)
    return spec, spec.parent / "out/results.csv", res


def test_a_failing_trial_is_recorded_and_the_rest_finish(uninterrupted):
    _, results, res = uninterrupted
    assert res.returncode == 1, res.stderr     # some trials failed: the status says so
    assert "6 trials run (2 failed)" in res.stdout and "Traceback" not in res.stderr
    rows = read_table(results)
    assert [(r["variant"], r["seed"], r["status"]) for r in rows] == [
        ("FF", 0, "ok"), ("FF", 1, "ok"), ("A-CFF", 0, "ok"), ("A-CFF", 1, "ok"),
        ("wrong width", 0, "failed"), ("wrong width", 1, "failed")]
    for r in rows[:4]:
        assert 0 < r["test_multi_pass"] <= 1 and r["epochs_run"] == 3 and r["host"]
        assert r["curves"]["epoch"] == [1, 2, 3] and len(r["curves"]["layers"]) == 2
        assert r["error"] is None
    assert rows[2]["params"] == {"collab.mode": "adaptive"} and rows[2]["collab"] == "adaptive"
    assert "input width of 100" in rows[4]["error"] and rows[4]["test_multi_pass"] is None


def test_a_sweep_killed_midway_resumes_to_the_same_table(uninterrupted, tmp_path):
    first, reference, _ = uninterrupted
    spec = _sweep_folder(tmp_path, data=first.parent / "data")   # the same data: the same error messages
    results = tmp_path / "out/results.csv"
    cmd = [sys.executable, "-m", "edgeff", "sweep", str(spec), "--out", str(tmp_path / "out"), "--cpus", "2"]
    # its own process group: the kill takes the driver and the Ray processes it started, as a crash would
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while not (results.exists() and len(read_table(results)) >= 1) and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = read_table(results)
    assert 1 <= len(partial) < 6, "the kill came too late to test resuming"
    res = run_cli("sweep", spec, "--out", tmp_path / "out", "--cpus", 2)
    assert f"{sum(r['status'] == 'ok' for r in partial)} already done" in res.stdout, res.stdout
    assert _comparable(read_table(results)) == _comparable(read_table(reference))
    again = run_cli("sweep", spec, "--out", tmp_path / "out", "--cpus", 2, "--json")
    assert '"skipped": 4' in again.stdout and '"ran": 2' in again.stdout   # only the failed ones run again


def _descendants(pid: int) -> list:
    """Every process below pid, from /proc."""
    children = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        todo += children.get(todo.pop(), [])
        found += todo
    return sorted(set(found))


def _running_trial(pid: int):
    """The Ray worker below pid that runs a trial (Ray names the process after the task), or None."""
    for child in _descendants(pid):
        try:
            if Path(f"/proc/{child}/cmdline").read_bytes().startswith(b"ray::run_trial"):
                return child
        except OSError:
            continue
    return None


def test_a_trial_whose_worker_dies_is_recorded_and_the_sweep_ends(uninterrupted, tmp_path):
    first, _, _ = uninterrupted
    spec = _sweep_folder(tmp_path, "seeds = 1\ndata_dir = '{data}'\nconfig = 'tiny.toml'\n[set.train]\n"
                                   "epochs = 500", data=first.parent / "data")
    proc = subprocess.Popen([sys.executable, "-m", "edgeff", "sweep", str(spec), "--out", str(tmp_path / "out"),
                             "--cpus", "1", "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        deadline, worker = time.monotonic() + 120, None
        while worker is None and time.monotonic() < deadline and proc.poll() is None:
            worker = _running_trial(proc.pid)
            time.sleep(0.1)
        assert worker is not None, "no trial started"
        os.kill(worker, signal.SIGKILL)        # as the kernel's out-of-memory killer would
        out, err = proc.communicate(timeout=120)
    finally:                                   # a failed check leaves no sweep running: its whole group goes
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 1 and "1 trials run (1 failed)" in out and "Traceback" not in err, err
    (row,) = read_table(tmp_path / "out/results.csv")
    assert row["status"] == "failed" and row["error"].startswith("the worker running it died")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_sweep_runs_on_a_ray_cluster_at_an_address(uninterrupted, tmp_path, monkeypatch):
    """A real Ray head (`ray start --head`, what a cluster's head node runs) on this machine, with token
    authentication as a cluster has it: the sweep sent to its address runs its trials there, the driver
    writes the table here, and the rows are those of the local run."""
    monkeypatch.setenv("RAY_AUTH_MODE", "token")                # the head and the driver share the token
    monkeypatch.setenv("RAY_AUTH_TOKEN", secrets.token_hex(16))
    first, reference, _ = uninterrupted
    spec = _sweep_folder(tmp_path, spec=SPEC[:SPEC.index('[[variants]]\nname = "A-CFF"')],
                         data=first.parent / "data")
    port = _free_port()
    ray_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")      # Ray's socket paths must stay short
    ray = Path(sys.executable).with_name("ray")
    head = subprocess.Popen([str(ray), "start", "--head", f"--port={port}", "--num-cpus=2",
                             "--include-dashboard=false", f"--temp-dir={ray_dir}", "--block"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120          # the head is up when its port takes connections
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert head.poll() is None, "ray start --head exited"
                time.sleep(0.5)
        res = run_cli("sweep", spec, "--out", tmp_path / "out", "--address", f"127.0.0.1:{port}", "--json")
        assert res.returncode == 0, res.stderr[-2000:]
        summary = json.loads(res.stdout)
        assert summary["ran"] == 2 and summary["ray"]["address"].endswith(f":{port}"), summary
    finally:
        os.killpg(head.pid, signal.SIGTERM)       # the head stops its raylet and workers on SIGTERM
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        shutil.rmtree(ray_dir, ignore_errors=True)
    ff_rows = [r for r in read_table(reference) if r["variant"] == "FF"]
    assert _comparable(read_table(tmp_path / "out/results.csv")) == _comparable(ff_rows)


@pytest.mark.parametrize("blocked, argv", [("ray", ["sweep", "SPEC"]), ("torch", ["sweep", "SPEC"]),
                                            ("scipy", ["sweep", "report", "TABLE"])])
def test_without_an_extra_the_sweep_refuses_with_the_install_line(tmp_path, blocked, argv):
    spec = _sweep_folder(tmp_path)
    write_table(tmp_path / "results.csv", [_row("A", 0, 0.8, 100, 0.9, [0.1, 0.2, 0.3, 0.4])])
    argv = [{"SPEC": str(spec), "TABLE": str(tmp_path / "results.csv")}.get(a, a) for a in argv]
    # sys.modules[name] = None makes `import name` raise ImportError, as in a Python without the extra
    code = (f"import sys; sys.modules[{blocked!r}] = None; from edgeff.app.cli import main; "
            f"sys.exit(main({argv!r}))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert f"needs {blocked} (" in res.stderr and "pip install 'edgeff[train,sweep]'" in res.stderr
    assert not (tmp_path / "runs").exists() and not (tmp_path / "sweep_test_multi_pass.png").exists()


def test_a_dead_address_is_refused_at_once_not_waited_for(tmp_path):
    spec = _sweep_folder(tmp_path)
    port = _free_port()                   # free a moment ago: nothing listens there
    res = run_cli("sweep", spec, "--out", tmp_path / "out", "--address", f"127.0.0.1:{port}")
    assert res.returncode == 2 and f"nothing answers at 127.0.0.1:{port}" in res.stderr
    assert "ray start --head" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "out/results.csv").exists()


def test_a_table_of_trials_on_other_data_is_not_resumed(tmp_path):
    spec = _sweep_folder(tmp_path)
    row = _row("A", 0, 0.8, 100, 0.9, [0.1, 0.2, 0.3, 0.4]) | {"data_sha256": "0" * 64}
    write_table(tmp_path / "out/results.csv", [row])
    before = (tmp_path / "out/results.csv").read_bytes()
    res = run_cli("sweep", spec, "--out", tmp_path / "out")
    assert res.returncode == 2 and "1 finished trials were trained on other training data" in res.stderr
    assert "another --out" in res.stderr and (tmp_path / "out/results.csv").read_bytes() == before


def test_a_spec_whose_data_is_missing_is_refused_before_any_trial(tmp_path):
    spec = _sweep_folder(tmp_path, SPEC.replace('data_dir = "{data}"', 'data_dir = "no-such-data"'), data="x")
    res = run_cli("sweep", spec, "--out", tmp_path / "out")
    assert res.returncode == 2 and "no dataset directory at" in res.stderr
    assert "spec.toml's data_dir" in res.stderr and not (tmp_path / "out/results.csv").exists()


@pytest.mark.parametrize("text, message", [
    ("config = 'tiny.toml'", "'seeds' is missing"),
    ("seeds = 2\nconfig = 'tiny.toml'\nepochs = 3", "unknown key(s) epochs"),
    ("seeds = [1, 1]\nconfig = 'tiny.toml'", "lists a seed twice"),
    ("seeds = 2", "names no config"),
    ("seeds = 2\nconfig = 'tiny.toml'\n[set.train]\nepochs = 0", "'epochs' must be at least 1"),
    ("seeds = 2\nconfig = 'tiny.toml'\n[[variants]]\nname = 'a'\n[[variants]]\nname = 'a'\nset.train.lr = 0.1",
     "two variants are named 'a'"),
    ("seeds = 2\nconfig = 'tiny.toml'\n[[variants]]\nname = 'a'\n[[variants]]\nname = 'b'", "train the same config"),
    ("seeds = 2\nconfig = 'tiny.toml'\nfinetune_epochs = 1", "set quantize = true"),
    ("seeds = 2\nconfig = 'tiny.toml'\n[grid]\nmodel.sizes = []", "must list the values"),
    ("seeds = 2\nconfig = 'no-such-config'", "spec.toml: no config file 'no-such-config'"),
])
def test_bad_specs_are_refused_naming_the_problem(tmp_path, text, message):
    spec = _sweep_folder(tmp_path, text)
    with pytest.raises(EdgeFFError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_spec(spec)


@pytest.mark.parametrize("path", sorted((Path(__file__).parent.parent / "benchmarks/sweeps").glob("*.toml")),
                         ids=lambda p: p.stem)
def test_the_specs_the_docs_ran_still_load(path):
    spec = load_spec(path)
    assert spec.name == path.stem and len(spec.trials) == len(spec.variants) * len(spec.seeds) >= 2


def test_a_grid_makes_one_variant_per_combination_with_the_seeds_inside(tmp_path):
    spec = load_spec(_sweep_folder(tmp_path, "seeds = [3, 4]\nconfig = 'tiny.toml'\n[grid]\n"
                                             "model.sizes = [[784, 8], [784, 8, 8]]\ncollab.mode = ['none']"))
    assert spec.variants == ["sizes=784-8 mode=none", "sizes=784-8-8 mode=none"]
    assert [(t.variant, t.seed, t.config["train"]["seed"]) for t in spec.trials] == [
        ("sizes=784-8 mode=none", 3, 3), ("sizes=784-8 mode=none", 4, 4),
        ("sizes=784-8-8 mode=none", 3, 3), ("sizes=784-8-8 mode=none", 4, 4)]
    assert spec.trials[0].config_hash == spec.trials[1].config_hash != spec.trials[2].config_hash
    assert spec.trials[2].params == {"model.sizes": [784, 8, 8], "collab.mode": "none"}


def _row(variant, seed, acc, width, r1, layer2):
    layer1 = [0.6, 0.96, 0.98, 1.0]
    return {"variant": variant, "config_hash": variant * 6, "seed": seed, "status": "ok", "test_multi_pass": acc,
            "params": {}, "sizes": [784, width, width], "collab": "none", "correlation": [r1, 0.5],
            "curves": {"epoch": [1, 2, 3, 4], "model": layer2, "layers": [layer1, layer2]}}


def test_report_statistics_match_hand_computed_values(tmp_path):
    late, later = [0.2, 0.5, 0.96, 1.0], [0.2, 0.5, 0.9, 1.0]     # layer 2 reaches 95% at epoch 3, or 4
    rows = [_row("A", s, acc, 100, r, late if s < 2 else later)
            for s, acc, r in zip(range(4), [0.80, 0.82, 0.84, 0.86], [0.9, 0.8, 0.85, 0.95], strict=True)]
    rows += [_row("B", s, acc, 200, r, late)
             for s, acc, r in zip(range(4), [0.78, 0.81, 0.80, 0.83], [0.5, 0.6, 0.55, 0.4], strict=True)]
    rows.append({"variant": "C", "config_hash": "c" * 12, "seed": 0, "status": "failed", "error": "boom"})
    write_table(tmp_path / "results.csv", rows)
    res = run_cli("sweep", "report", tmp_path, "--json", "--plots", tmp_path / "plots")
    assert res.returncode == 0, res.stderr
    r = json.loads(res.stdout)
    a, b = r["variants"]
    assert a["n"] == 4 and a["mean"] == pytest.approx(0.83) and a["std"] == pytest.approx(math.sqrt(0.002 / 3))
    half = 3.182446305 * math.sqrt(0.002 / 3) / 2          # t(0.975, 3) * s / sqrt(n)
    assert a["ci95"] == pytest.approx([0.83 - half, 0.83 + half])
    (c,) = r["comparisons"]                                  # the later variant minus the earlier one
    sd = math.sqrt(0.0005 / 3)                               # std of B - A = [-.02, -.01, -.04, -.03]
    assert (c["a"], c["b"], c["n"]) == ("B", "A", 4) and c["mean_diff"] == pytest.approx(-0.025)
    assert c["t"] == pytest.approx(-0.025 / (sd / 2)) and c["cohens_d"] == pytest.approx(-0.025 / sd)
    assert c["p"] == pytest.approx(0.0304663, abs=1e-6) and c["p_holm"] == c["p"] and c["significant"]
    dyn_a = r["dynamics"]["variants"][0]
    assert [d["mean"] for d in dyn_a["delay"]] == [2, 3.5]
    (lag,) = dyn_a["lag"]                                    # layer 2 behind layer 1 by [1, 1, 2, 2] epochs
    assert lag["mean_diff"] == 1.5 and lag["t"] == pytest.approx(1.5 / (math.sqrt(1 / 3) / 2))
    z = [math.atanh(v) for v in (0.9, 0.8, 0.85, 0.95)]
    assert dyn_a["correlation"][0]["mean_r"] == pytest.approx(math.tanh(sum(z) / 4))
    (above,) = dyn_a["layer1_above"]                       # z(r of layer 1) - z(0.5) on each seed
    assert above["layer"] == 2 and above["mean_diff"] == pytest.approx(sum(z) / 4 - math.atanh(0.5))
    assert r["dynamics"]["width_trend"] == []                # two widths: no trend over widths to test
    assert r["trials"] == {"ok": 8, "failed": 1} and r["failed"][0]["error"] == "boom"
    for png in r["plots"]:
        assert_png(png)
    text = run_cli("sweep", "report", tmp_path / "results.csv", "--plots", tmp_path / "plots").stdout
    assert "| B − A | 4 | -2.50 |" in text and "| A | 4 | 83.00 ± 2.58 |" in text


def test_the_width_trend_is_a_spearman_rho_per_seed_tested_over_seeds(tmp_path):
    r1 = {100: [0.9, 0.8, 0.85, 0.95], 200: [0.5, 0.6, 0.55, 0.4], 400: [0.45, 0.7, 0.3, 0.2]}
    rows = [_row(f"w{w}", s, 0.8, w, r1[w][s], [0.1, 0.2, 0.3, 0.4]) for w in r1 for s in range(4)]
    write_table(tmp_path / "results.csv", rows)
    res = run_cli("sweep", "report", tmp_path, "--json")
    assert res.returncode == 0, res.stderr
    first, second = json.loads(res.stdout)["dynamics"]["width_trend"]
    # per seed, r against widths 100, 200, 400: falling (rho -1) on seeds 0, 2, 3; 0.8, 0.6, 0.7 on seed 1: -0.5
    assert (first["depth"], first["layer"], first["widths"], first["n"]) == (2, 1, [100, 200, 400], 4)
    assert first["mean_rho"] == pytest.approx(-0.875) and first["t"] == pytest.approx(-7.0)   # sd 0.25, n 4
    assert first["p"] == pytest.approx(2 * 0.0029931, rel=1e-4) and first["p_holm"] == first["p"]
    assert second["layer"] == 2 and second["n"] == 0 and second["p"] is None   # layer 2's r is 0.5 everywhere
    text = run_cli("sweep", "report", tmp_path).stdout
    assert "| 2 | 1 | 100, 200, 400 | 4 | -0.875 |" in text


def test_holm_adjusts_in_order_and_skips_untested():
    assert holm([0.01, 0.04, 0.03, None]) == pytest.approx([0.03, 0.06, 0.06, None])
    assert holm([0.5, 0.01]) == pytest.approx([0.5, 0.02])
    assert holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])


def test_report_refusals_name_the_problem(tmp_path):
    res = run_cli("sweep", "report", tmp_path)
    assert res.returncode == 2 and "no results table there" in res.stderr
    (tmp_path / "results.csv").write_text("a,b\n1,2\n")
    res = run_cli("sweep", "report", tmp_path / "results.csv")
    assert res.returncode == 2 and "not a sweep results table" in res.stderr and "Traceback" not in res.stderr
    write_table(tmp_path / "results.csv", [_row("A", 0, 0.8, 100, 0.9, [0.1, 0.2, 0.3, 0.4])])
    res = run_cli("sweep", "report", tmp_path / "results.csv", "--metric", "int8_multi_pass")
    assert res.returncode == 2 and "quantize = true" in res.stderr


def test_a_trial_can_quantize_finetune_and_keep_its_models(tmp_path):
    spec = load_spec(_sweep_folder(tmp_path, "seeds = 1\nconfig = 'tiny.toml'\ndata_dir = 'data'\nquantize = true\n"
                                             "finetune_epochs = 1\nfinetune_samples = 50\nkeep_models = true\n"
                                             "[set.train]\nepochs = 2"), results_dir=tmp_path / "out")
    (trial,) = spec.trials
    row = run_trial(trial)      # in this process: the function every Ray worker runs
    assert row["status"] == "ok", row["error"]
    for key in ("int8_multi_pass", "int8_one_pass", "finetune_multi_pass"):
        assert 0 <= row[key] <= 1
    kept = tmp_path / "out/models" / f"{trial.config_hash}-seed0"
    assert (kept / "model.safetensors").is_file() and (kept / "model-int8.safetensors").is_file()
    assert abs(row["int8_multi_pass"] - row["test_multi_pass"]) < 0.2   # PTQ keeps the model's accuracy


def test_options_of_the_other_mode_are_refused(tmp_path):
    spec = _sweep_folder(tmp_path)
    res = run_cli("sweep", "report", tmp_path, "--cpus", 2)
    assert res.returncode == 2 and "--cpus: not an option of `edgeff sweep report`" in res.stderr
    res = run_cli("sweep", spec, "--plots", tmp_path)
    assert res.returncode == 2 and "--plots: not an option for running a sweep" in res.stderr
    res = run_cli("sweep", spec, "--cpus", 2, "--address", "ray://nowhere:10001")
    assert res.returncode == 2 and "drop --cpus" in res.stderr
