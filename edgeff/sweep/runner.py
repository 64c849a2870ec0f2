"""Run a sweep's trials as Ray tasks and keep the results table current.

Ray is an optional extra (edgeff.sweep.extras). Without an address, Ray starts in this process on
this machine (a fresh local instance, never one another user started) with --cpus CPUs, all cores by
default; each trial asks for the spec's cpus_per_trial, so Ray runs as many at once as fit. With an address
(--address or $RAY_ADDRESS) the same trials go to that cluster; the driver, here, writes the table.

Resuming: trials whose (config hash, seed) already has an "ok" row are skipped; failed ones run again. A table
whose finished trials were trained on other training files than the spec's is refused (the driver reads the
training split to know: so the data must be at the spec's data_dir here too). Trials are submitted seed by seed;
the table is rewritten atomically after every finished trial, in the spec's order (variant by variant).
"""
import os
import socket
import sys

from tqdm import tqdm

from edgeff.data.datasets import training_digest
from edgeff.errors import EdgeFFError
from edgeff.sweep.spec import Spec
from edgeff.sweep.table import read_table, write_table

CONNECT_TIMEOUT_S = 5


def check_reachable(address: str):
    """A HOST:PORT address must answer before ray.init is given it: ray.init waits for a dead one without end.
    Other forms (ray://, auto) are left to Ray, which refuses a malformed address itself."""
    host, sep, port = address.rpartition(":")
    if "://" in address or not sep or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise EdgeFFError(f"nothing answers at {address} ({exc.strerror or exc}); start the cluster's head there "
                          "(`ray start --head`) or fix --address / $RAY_ADDRESS") from None


def check_same_data(spec: Spec, rows: list, results_path):
    """Refuse to resume a table whose finished trials were trained on other training files than the spec's."""
    digest = training_digest(spec.data_dir, given_by=f"{spec.path}'s data_dir")
    other = [r for r in rows if r["status"] == "ok" and r.get("data_sha256") not in (None, digest)]
    if other:
        raise EdgeFFError(f"{results_path}: {len(other)} finished trials were trained on other training data "
                          f"(sha256 {other[0]['data_sha256'][:12]}…) than the spec's ({digest[:12]}…); give this "
                          "sweep another --out, or point data_dir at the data those trials used")


def ordered(rows: list, spec: Spec) -> list:
    """The spec's trials in its order, then rows of trials the spec no longer names (kept: they are results)."""
    position = {t.key: t.index for t in spec.trials}
    return sorted(rows, key=lambda r: (position.get((r["config_hash"], r["seed"]), len(position)),
                                       r["variant"], r["seed"]))


def pending_trials(spec: Spec, rows: list) -> list:
    """The trials without an ok row, seed by seed (every variant's seed 0, then seed 1, ...): a sweep stopped
    early then has all its variants on the same seeds, which paired comparisons need."""
    done = {(r["config_hash"], r["seed"]) for r in rows if r["status"] == "ok"}
    seed_rank = {s: k for k, s in enumerate(spec.seeds)}
    return sorted((t for t in spec.trials if t.key not in done), key=lambda t: (seed_rank[t.seed], t.index))


def _crashed_row(trial, exc) -> dict:
    """A trial whose worker died (killed, out of memory): recorded like a trial that raised."""
    from edgeff.sweep.trial import failure_text

    return {"variant": trial.variant, "config_hash": trial.config_hash, "seed": trial.seed,
            "params": trial.params, "sizes": trial.config["model"]["sizes"], "status": "failed",
            "error": f"the worker running it died: {failure_text(exc)}"}


def run_sweep(spec: Spec, results_path, address=None, cpus=None, quiet=False) -> dict:
    """Run the spec's pending trials; returns counts of what ran, was skipped and failed."""
    rows = read_table(results_path)
    check_same_data(spec, rows, results_path)
    todo = pending_trials(spec, rows)
    skipped = len(spec.trials) - len(todo)
    summary = {"trials": len(spec.trials), "skipped": skipped, "ran": 0, "failed": 0, "results": str(results_path)}
    if not quiet and skipped:
        tqdm.write(f"sweep {spec.name}: {skipped} of {len(spec.trials)} trials already in {results_path}; "
                   "skipping them", file=sys.stderr)
    if not todo:
        return summary
    # imported here, not at the top: the CLI checks first that Ray and torch (which trial needs) are installed
    import ray

    from edgeff.sweep.trial import run_trial

    address = address or os.environ.get("RAY_ADDRESS")
    try:
        if address:
            check_reachable(address)
            ray.init(address=address, configure_logging=False, log_to_driver=False)
        else:
            ray.init(address="local", num_cpus=cpus or os.cpu_count(), include_dashboard=False,
                     configure_logging=False, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:   # what ray.init raises for a bad or dead address
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        raise EdgeFFError(f"could not start or reach {where} ({exc}); check the address and that `ray status` "
                          "there shows the cluster") from None
    # which Ray ran the trials: its head's address and how many nodes it had
    summary["ray"] = {"address": ray.get_runtime_context().gcs_address, "nodes": len(ray.nodes())}
    try:
        task = ray.remote(run_trial)
        # max_retries=0: a trial whose worker dies is recorded as failed (a rerun tries it again), not rerun
        pending = {task.options(num_cpus=t.cpus, max_retries=0).remote(t): t for t in todo}
        bar = tqdm(total=len(spec.trials), initial=skipped, unit="trial", desc=f"sweep {spec.name}",
                   disable=quiet, file=sys.stderr, dynamic_ncols=True)
        while pending:
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            trial = pending.pop(ref)
            try:
                row = ray.get(ref)
            except ray.exceptions.RayError as exc:
                row = _crashed_row(trial, exc)
            rows = [r for r in rows if (r["config_hash"], r["seed"]) != trial.key] + [row]
            write_table(results_path, ordered(rows, spec))
            summary["ran"] += 1
            summary["failed"] += row["status"] != "ok"
            bar.update(1)
            if not quiet:
                result = (f"test multi-pass {row['test_multi_pass']:.4f}" if row["status"] == "ok"
                          else f"FAILED: {row['error']}")
                tqdm.write(f"{row['variant']} seed {row['seed']}: {result} ({row.get('wall_s') or 0:.0f} s)",
                           file=sys.stderr)
        bar.close()
    finally:
        ray.shutdown()
    return summary
