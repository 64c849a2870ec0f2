"""Files that ship inside the package, so that a wheel installed anywhere finds them: the training configs
(edgeff/models/*.toml)."""
from pathlib import Path

from edgeff.errors import EdgeFFError

MODELS_DIR = Path(__file__).resolve().parent / "models"


def model_config(name_or_path: str) -> Path:
    """A config path, or the name of one in edgeff/models/ (with or without .toml)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    for candidate in (MODELS_DIR / name_or_path, MODELS_DIR / f"{name_or_path}.toml"):
        if candidate.is_file():
            return candidate
    known = ", ".join(sorted(p.stem for p in MODELS_DIR.glob("*.toml"))) or "none found"
    raise EdgeFFError(f"no config file '{name_or_path}'; give a path or one of the names in "
                      f"{MODELS_DIR}: {known}")
