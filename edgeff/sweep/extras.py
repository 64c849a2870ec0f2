"""The sweep's optional dependencies: Ray and torch to run trials, SciPy for the report's statistics. A missing
one is refused with the install line before any work starts."""
import importlib

from edgeff.errors import EdgeFFError

INSTALL_LINE = "pip install 'edgeff[train,sweep]'"
RUNNING = {"ray": "runs the trials", "torch": "trains them"}
REPORTING = {"scipy": "the report's statistics"}


def require(modules: dict) -> None:
    """modules: import name -> what it does for the sweep. Refuses, naming each one that is not installed."""
    missing = []
    for name, purpose in modules.items():
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(f"{name} ({purpose})")
    if missing:
        raise EdgeFFError(f"edgeff sweep needs {' and '.join(missing)}, not installed here; install it with "
                          f"`{INSTALL_LINE}` (the train extra: torch; the sweep extra: Ray and SciPy)")
