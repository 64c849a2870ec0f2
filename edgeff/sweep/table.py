"""The results table of a sweep: one CSV row per trial, rewritten atomically after every finished trial, so a
kill leaves the table of the trials that finished and never a half-written file.

Scalar metrics are plain columns (a spreadsheet or pandas reads them as they are); lists (per-layer curves,
correlations, gammas) and the variant's settings are JSON in their cells. A trial is identified by its
variant's config hash and its seed.
"""
import csv
import io
import json
from pathlib import Path

from edgeff.atomic_write import atomic_write_text
from edgeff.errors import EdgeFFError

IDENTITY = ["variant", "config_hash", "seed"]
# test_*: the test split, scored once after training; val_*: validation, as the trainer chose its layers on it;
# int8_*: the PTQ model in the integer runtime; finetune_*: that model after integer-only finetuning
METRICS = ["test_multi_pass", "test_one_pass", "val_multi_pass", "val_one_pass", "int8_multi_pass",
           "int8_one_pass", "finetune_multi_pass", "epochs_run", "train_s"]
JSON_COLUMNS = ["params", "sizes", "test_per_layer", "correlation", "gamma_final", "curves"]
COLUMNS = IDENTITY + ["status", "error"] + METRICS + JSON_COLUMNS + ["collab", "wall_s", "host", "finished_utc",
                                                                    "data_sha256"]
NUMERIC = set(METRICS) | {"wall_s"}


def _cell(column, value) -> str:
    if value is None:
        return ""
    if column in JSON_COLUMNS:
        return json.dumps(value, separators=(",", ":"))
    return repr(value) if isinstance(value, float) else str(value)   # repr: every bit of a float survives


def _parse(path, line, column, text):
    if text == "":
        return None
    try:
        if column in JSON_COLUMNS:
            return json.loads(text)
        if column == "seed" or column == "epochs_run":
            return int(text)
        if column in NUMERIC:
            return float(text)
    except ValueError:
        raise EdgeFFError(f"{path} line {line}: column {column} holds {text[:40]!r}, which is not what a sweep "
                          "writes there; the table was edited or is not a sweep's results table") from None
    return text


def read_table(path) -> list:
    """The rows of a results table (dicts keyed by COLUMNS), or [] if there is none yet."""
    path = Path(path)
    if not path.exists():
        return []
    if path.is_dir():
        raise EdgeFFError(f"{path} is a folder; give the results table (a .csv file) a sweep wrote")
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in IDENTITY + ["status"] if c not in (reader.fieldnames or [])]
        if missing:
            raise EdgeFFError(f"{path}: not a sweep results table (no column {', '.join(missing)})")
        return [{c: _parse(path, reader.line_num, c, row.get(c) or "") for c in COLUMNS} for row in reader]


def table_text(rows: list) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: _cell(c, row.get(c)) for c in COLUMNS})
    return buf.getvalue()


def write_table(path, rows: list):
    atomic_write_text(path, table_text(rows))
