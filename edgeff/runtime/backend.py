"""Which kernel set computes the integers: the reference NumPy kernels or the compiled C kernels.

The choice is made once, by the environment variable EDGEFF_KERNELS (read on first use) or by this API,
never inside a kernel: every caller asks `kernels()` for the active set and calls it, so `active()` names
the code that produced the bits.

    EDGEFF_KERNELS=auto        (default) the C kernels when they build, else the reference ones, with one warning
    EDGEFF_KERNELS=c           the C kernels; an error when they do not build
    EDGEFF_KERNELS=reference   the reference NumPy kernels (nothing is compiled)

    backend.use("reference")            for the rest of the process
    with backend.using("c") as k: ...   for a block (k is the kernel set), then the previous choice again
    backend.active()                    "c" or "reference": the set that runs now
    backend.kernels()                   that set (ReferenceKernels or CKernels)

Both sets give the same bits (tests/test_c_kernels.py); the C set runs the cases its C code covers and
hands the others to the reference set (c_kernels.CKernels).
"""
import contextlib
import os
import warnings

from edgeff.errors import EdgeFFError

VARIABLE = "EDGEFF_KERNELS"
CHOICES = ("auto", "c", "reference")

_choice = None    # set by use(); None: the environment variable's
_kernels = None   # the resolved set of the current choice, made on first use


def _checked(name, request: str) -> str:
    if name not in CHOICES:
        raise EdgeFFError(f"{request} names no kernel backend: choose one of {', '.join(CHOICES)}")
    return name


def choice() -> str:
    """The requested backend: use()'s, else EDGEFF_KERNELS's (auto when unset)."""
    if _choice is not None:
        return _choice
    name = os.environ.get(VARIABLE, "auto")
    return _checked(name, f"{VARIABLE}={name}")


def use(name: str) -> None:
    """Choose the backend ("auto", "c" or "reference") for the rest of the process."""
    global _choice, _kernels
    _choice, _kernels = _checked(name, f"backend.use({name!r})"), None


@contextlib.contextmanager
def using(name: str):
    """Choose the backend for a block; the previous choice is back afterwards."""
    global _choice, _kernels
    previous = _choice
    use(name)
    try:
        yield kernels()
    finally:
        _choice, _kernels = previous, None


def kernels():
    """The active kernel set: every kernel call of the runtime goes through it."""
    global _kernels
    if _kernels is None:
        _kernels = _resolve(choice())
    return _kernels


def active() -> str:
    """"c" or "reference": the kernel set that computes now."""
    return kernels().name


def _resolve(name: str):
    from edgeff.runtime import c_kernels
    from edgeff.runtime.reference_kernels import ReferenceKernels

    if name == "reference":
        return ReferenceKernels()
    try:
        c_kernels.library()
    except EdgeFFError as exc:
        if name == "c":
            raise EdgeFFError(f"{VARIABLE}=c but the C kernels are unavailable: {exc}; install a C compiler "
                              f"(apt-get install gcc) or set {VARIABLE}=reference") from None
        warnings.warn(f"EdgeFF runs its reference NumPy kernels (same results, slower): {exc}", stacklevel=3)
        return ReferenceKernels()
    return c_kernels.CKernels()
