"""Atomic writes keep what is not a plain file: symlinks, pipes and devices, and the file's permissions."""
import os
import stat

import pytest

from edgeff.atomic_write import atomic_write_bytes, check_out_path
from edgeff.errors import EdgeFFError


def test_writing_through_a_symlink_keeps_the_link(tmp_path):
    target = tmp_path / "real.bin"
    target.write_bytes(b"old")
    link = tmp_path / "link.bin"
    link.symlink_to(target)
    atomic_write_bytes(link, b"new")
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.bin", "real.bin"]   # no temporary left


def test_a_dangling_symlink_is_written_through_too(tmp_path):
    link = tmp_path / "link.bin"
    link.symlink_to(tmp_path / "sub" / "made.bin")
    atomic_write_bytes(link, b"x")
    assert link.is_symlink() and (tmp_path / "sub" / "made.bin").read_bytes() == b"x"


def test_the_original_permissions_are_kept(tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(b"old")
    path.chmod(0o640)
    atomic_write_bytes(path, b"new")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640 and path.read_bytes() == b"new"


def test_a_pipe_is_written_to_not_replaced(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)   # a reader is there, so opening for writing won't wait
    try:
        atomic_write_bytes(fifo, b"through the pipe")
        assert stat.S_ISFIFO(os.stat(fifo).st_mode) and os.read(reader, 100) == b"through the pipe"
    finally:
        os.close(reader)


def test_a_character_device_is_written_to_not_replaced(tmp_path):
    # a private twin of /dev/null (as root, the old rename replaced a device node with a regular file)
    node = tmp_path / "null"
    try:
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("making a device node needs root")
    atomic_write_bytes(node, b"discarded")
    assert stat.S_ISCHR(os.stat(node).st_mode) and os.stat(node).st_rdev == os.makedev(1, 3)


def test_a_directory_is_refused(tmp_path):
    with pytest.raises(EdgeFFError, match="is a directory"):
        atomic_write_bytes(tmp_path, b"x")


def test_check_out_path_refuses_what_writing_would_break(tmp_path):
    model = tmp_path / "m.safetensors"
    model.write_bytes(b"model")
    (tmp_path / "link").symlink_to(model)
    cases = [(tmp_path, "is a folder"), (model / "x.onnx", "is a file, so nothing can be written under it"),
             (tmp_path / "link", "is the input file"), ("/proc/edgeff/out.bin", "cannot write in /proc")]
    for out, message in cases:
        with pytest.raises(EdgeFFError, match=message):
            check_out_path(out, inputs=[model])
    with pytest.raises(EdgeFFError, match="is a file, not a folder"):
        check_out_path(model, directory=True)
    assert check_out_path(tmp_path / "new" / "deeper" / "out.bin") and not (tmp_path / "new").exists()
    assert model.read_bytes() == b"model"
