"""Reading the TOML files users write (training configs, sweep specs, board descriptors)."""
import tomllib
from pathlib import Path

from edgeff.errors import EdgeFFError


def read_toml(path) -> dict:
    """The file's top-level table; a file that is not TOML, or not UTF-8 text, is refused with its path."""
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise EdgeFFError(f"{path}: not valid TOML ({exc})") from None
