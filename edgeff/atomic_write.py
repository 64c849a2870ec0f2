"""Write files so that a crash or Ctrl-C never leaves a half-written file behind, and check output paths
before any work starts.

A regular file is written to a temporary file in the same directory, flushed to disk, and renamed over the
target in one step (os.replace is atomic on POSIX and Windows). A symlink is written through (the link
stays, its target gets the new bytes), an existing file keeps its permissions, and a device or pipe is
written to directly: replacing /dev/ttyACM0 or a FIFO with a regular file would destroy what the user had.
"""
import contextlib
import os
import stat
import tempfile
from pathlib import Path

from edgeff.errors import EdgeFFError


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _stat_or_none(path):
    try:
        return os.stat(path)
    except (FileNotFoundError, NotADirectoryError):   # NotADirectory: a path under a file
        return None


def atomic_write_bytes(path, data: bytes) -> Path:
    path = Path(path)
    target = Path(os.path.realpath(path))   # through a symlink: the link stays a link
    existing = _stat_or_none(target)
    if existing is not None and not stat.S_ISREG(existing.st_mode):
        if stat.S_ISDIR(existing.st_mode):
            raise EdgeFFError(f"{path} is a directory; give a file name to write")
        if not (stat.S_ISCHR(existing.st_mode) or stat.S_ISBLK(existing.st_mode) or stat.S_ISFIFO(existing.st_mode)):
            raise EdgeFFError(f"{path} is neither a file, a device nor a pipe; choose another path")
        # a device or a pipe has no half-written file to avoid: write to it as `cat > path` would
        with open(target, "wb") as f:
            f.write(data)
        return path
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        if existing is None:
            os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp makes 0600; give the usual permissions
        else:
            os.fchmod(fd, stat.S_IMODE(existing.st_mode))
            # keep the owner too where we may (root writing a user's file); others cannot, and keep theirs
            with contextlib.suppress(PermissionError):
                os.fchown(fd, existing.st_uid, existing.st_gid)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def check_out_path(path, inputs=(), directory=False, option="--out") -> Path:
    """Refuse, before any work starts, an output that could not be written or whose writing would destroy
    an input: a directory where a file goes (or a file where a folder goes), a path under a file, a place
    we cannot write in, or one of the command's own input files. Nothing is created."""
    path = Path(path)
    what = f"{option} {path}"
    target = Path(os.path.realpath(path))
    existing = _stat_or_none(target)
    if existing is not None:
        is_dir = stat.S_ISDIR(existing.st_mode)
        if directory and not is_dir:
            raise EdgeFFError(f"{what} is a file, not a folder; give a folder to write into (it is made if missing)")
        if not directory and is_dir:
            raise EdgeFFError(f"{what} is a folder; give the file to write, e.g. {path / 'model.safetensors'}")
        for source in inputs:
            if source is not None and _stat_or_none(source) is not None and os.path.samefile(target, source):
                raise EdgeFFError(f"{what} is the input file {source}; writing it would replace the input, "
                                  "so choose another output name")
        if not directory and not os.access(target, os.W_OK):
            raise EdgeFFError(f"{what} is read-only; make it writable or choose another output name")
        if not (is_dir or stat.S_ISREG(existing.st_mode)):
            return path    # a device or pipe is written to in place (atomic_write_bytes), not beside it
    holder = target if directory and existing is not None else target.parent
    while _stat_or_none(holder) is None:       # the folders that are missing are made when writing
        holder = holder.parent
    if not holder.is_dir():
        raise EdgeFFError(f"{what}: {holder} is a file, so nothing can be written under it; choose another path")
    try:   # a real probe: permission bits say nothing to root, nor about read-only file systems
        fd, probe = tempfile.mkstemp(dir=holder, prefix=".edgeff-write-check.")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise EdgeFFError(f"{what}: cannot write in {holder} ({exc.strerror}); choose a writable place") from None
    return path
