"""Firmware for QEMU's mps2-an386 (an Arm Cortex-M4 board): built with arm-none-eabi-gcc from
firmware/ (the kernel library, the board support, one application), run under qemu-system-arm with the
UART on stdio and deterministic instruction counting (-icount shift=0). Every board fact (CPU flags, QEMU
machine, clock, memory) comes from the board's descriptor, hw_profiles/mps2-an386.toml."""
import hashlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from edgeff.csrc import KERNELS, PROTOCOL
from edgeff.errors import EdgeFFError
from edgeff.profiler.hw_profile import FirmwareTarget, load_profile
from edgeff.runtime.c_kernels import cache_dir
from firmware_bridge.board_config import generated_files

TARGET = load_profile("mps2-an386").firmware     # the emulated board
FIRMWARE = Path(__file__).resolve().parent / "firmware"
# the firmware's protocol code (not the host-only fuzzing harness beside it)
PROTOCOL_SOURCES = [PROTOCOL / name for name in ("framing.c", "board_image.c", "board_protocol.c")]


def cflags(target: FirmwareTarget) -> list:
    return ["-std=c99", *target.cpu_flags, "-O2", "-ffunction-sections", "-fdata-sections", "-ffreestanding",
            "-Wall", "-Wextra", "-Werror"]


# the RAM the board firmware gives a model with its master weights (the exporter refuses a bigger board header)
IMAGE_CAPACITY = TARGET.image_bytes


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        package = "gcc-arm-none-eabi" if name.startswith("arm-none-eabi") else name
        raise EdgeFFError(f"{name} is not installed; install it with `apt-get install {package}`")
    return path


def build(app: str, out: Path, generated: dict | None = None, defines=(), target: FirmwareTarget = TARGET,
          kernels: Path = KERNELS) -> Path:
    """Compile and link firmware/<app>/ with the library and board support into out (an ELF); `generated`
    maps header names to C source written beside the build, `defines` are preprocessor names to set, `kernels`
    is the kernel library's directory (another version's, to compare). A link that overflows the board's
    flash or RAM fails with the linker's message."""
    gcc = _tool("arm-none-eabi-gcc")
    board = FIRMWARE / "board" / target.support
    sources = [*sorted(kernels.glob("*.c")), *PROTOCOL_SOURCES, *sorted(board.glob("*.c")),
               *sorted((FIRMWARE / app).glob("*.c"))]
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in {**generated_files(target), **(generated or {})}.items():
            (Path(tmp) / name).write_text(text)
        cmd = [gcc, *cflags(target), *(f"-D{name}" for name in defines),
               f"-I{kernels}", f"-I{PROTOCOL}", f"-I{board}", f"-I{tmp}",
               *map(str, sources),
               "-nostdlib", "-nostartfiles", f"-L{tmp}", f"-T{board / (target.support + '.ld')}", "-Wl,--gc-sections",
               f"-Wl,-Map={out.with_suffix('.map')}", "-lgcc", "-o", str(out)]
        result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise EdgeFFError(f"building the {app} firmware failed:\n{result.stderr.strip()}")
    return out


def _qemu_command(elf: Path, serial: str, target: FirmwareTarget = TARGET) -> list:
    return [_tool("qemu-system-arm"), "-machine", target.qemu_machine, "-nographic", "-monitor", "none",
            "-serial", serial, "-icount", "shift=0", "-semihosting-config", "enable=on,target=native",
            "-kernel", str(elf)]


def start(elf: Path, port: int) -> subprocess.Popen:
    """Boot the firmware in QEMU with its UART on a TCP server at 127.0.0.1:port (pyserial URL
    socket://127.0.0.1:port); the caller stops the process."""
    serial = f"tcp:127.0.0.1:{port},server=on,wait=off,nodelay=on"
    return subprocess.Popen(_qemu_command(elf, serial), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def run(elf: Path, marker: bytes, timeout: float = 120.0, target: FirmwareTarget = TARGET) -> bytes:
    """Boot the firmware in QEMU (the machine of `target`, the board it was built for) and return its UART
    output once it exits (semihosting); refuses output without `marker`."""
    proc = subprocess.Popen(_qemu_command(elf, "stdio", target), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
    try:
        out = proc.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        proc.kill()
        out = proc.communicate()[0]
    if marker not in out:
        raise EdgeFFError(f"{elf.name} printed no {marker.decode()!r} line in {timeout:.0f} s; its output: "
                          f"{out[-500:]!r}")
    return out


def firmware_key(model_header: str | None = None, target: FirmwareTarget = TARGET) -> str:
    """What the board firmware is built from: the compiler flags, the board descriptor's generated files, every
    source and linker script, and the compiled-in model."""
    digest = hashlib.sha256(" ".join(cflags(target)).encode() + (model_header or "").encode())
    for name, text in sorted(generated_files(target).items()):
        digest.update(name.encode() + text.encode())
    for f in [*sorted(FIRMWARE.rglob("*.[chs]")), *sorted(FIRMWARE.rglob("*.ld")), *sorted(KERNELS.glob("*.[ch]")),
              *sorted(PROTOCOL.glob("*.[ch]"))]:
        digest.update(f.name.encode() + f.read_bytes())
    return digest.hexdigest()[:16]


def board_firmware(model_header: str | None = None) -> Path:
    """The board firmware (board_app), built once per source version, board descriptor and compiled-in model
    (the text of an `edgeff export --format board-header` file) into the EdgeFF cache."""
    target = cache_dir() / f"board_app-{firmware_key(model_header)}.elf"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}")
        generated, defines = ({"board_model.h": model_header}, ["EDGEFF_BOARD_MODEL"]) if model_header else ({}, [])
        try:
            build("board_app", tmp, generated, defines)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
            tmp.with_suffix(".map").unlink(missing_ok=True)
    return target


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EmulatedBoard:
    """The board firmware running in QEMU for as long as the `with` block; `url` is its UART. With
    model_header (a board-header export's text) the firmware boots with that model compiled in."""

    def __init__(self, port: int | None = None, model_header: str | None = None):
        self.port = port or free_port()
        self.url = f"socket://127.0.0.1:{self.port}"
        self.model_header, self.process = model_header, None

    def __enter__(self):
        self.process = start(board_firmware(self.model_header), self.port)
        time.sleep(0.2)        # a BoardLink retries until QEMU listens; a QEMU that fails, fails at once
        if self.process.poll() is not None:
            raise EdgeFFError(f"QEMU stopped at once: {self.process.stderr.read().decode()[-500:]}")
        return self

    def __exit__(self, *exc):
        self.process.kill()
        self.process.wait()

    def stopped(self) -> str | None:
        """None while QEMU runs; once it has stopped on its own, what happened and what it means."""
        if self.process.poll() is None:
            return None
        tail = self.process.stderr.read().decode(errors="replace").strip().splitlines()[-1:]
        return (f"QEMU stopped on its own (exit status {self.process.returncode}{': ' + tail[0] if tail else ''}); "
                "the emulated board's checkpoints lived in its memory and are gone: a run on a new emulated board "
                "starts from sample 0")
