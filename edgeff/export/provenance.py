"""What an export records about the model file it came from (its name, kind and SHA-256), so that
`edgeff verify` refuses to compare a model with another model's export instead of printing a table of
differences. ONNX files carry it as a metadata property, TFLite files as a metadata buffer, both named KEY."""
import hashlib
import json
from pathlib import Path

from edgeff.errors import EdgeFFError

KEY = "edgeff_source"


def file_sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def source_record(model_path, kind: str) -> str:
    """The JSON an export of model_path records."""
    return json.dumps({"model": Path(model_path).name, "kind": kind, "sha256": file_sha256(model_path)},
                      sort_keys=True)


def check_source(model_path, exported_path, recorded: str | None):
    """Refuse when the export records a different source model than model_path. Exports written before
    EdgeFF recorded sources pass here; verify's shape checks still catch a different architecture."""
    if recorded is None:
        return
    try:
        source = json.loads(recorded)
        name, digest = str(source["model"]), str(source["sha256"])
    except (ValueError, KeyError, TypeError):
        raise EdgeFFError(f"{exported_path}: its {KEY} record is damaged; export it again with "
                          "`edgeff export`") from None
    if digest != file_sha256(model_path):
        raise EdgeFFError(f"{exported_path} was exported from another model ({name}, sha256 {digest[:12]}), not "
                          f"from {model_path} (sha256 {file_sha256(model_path)[:12]}); verify it against the model "
                          "it came from, or export this one")
