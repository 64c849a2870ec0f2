"""Firmware for QEMU's emulated Arm boards (mps2-an386, the default: a Cortex-M4; mps2-an500: a Cortex-M7;
netduinoplus2: an STM32F405): built with arm-none-eabi-gcc from firmware/ (the kernel library, the board's
support folders, one application), run under qemu-system-arm with the UART on stdio or a socket and
deterministic instruction counting (-icount shift=0). Every board fact (support folders, CPU flags, QEMU
machine, clock, memory, UART) comes from the board's descriptor, hw_profiles/<board>.toml ([firmware]);
`target_of(name)` reads it."""
import hashlib
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from edgeff.csrc import KERNELS, PROTOCOL
from edgeff.errors import EdgeFFError
from edgeff.profiler.hw_profile import FirmwareTarget, firmware_profile_names, load_profile
from edgeff.runtime.c_kernels import cache_dir
from firmware_bridge.board_config import generated_files

DEFAULT_BOARD = "mps2-an386"


def target_of(board: str) -> FirmwareTarget:
    """The [firmware] table of the board named (a profile name or a .toml path), refused by name if the
    firmware does not run on it."""
    target = load_profile(board).firmware
    if target is None:
        raise EdgeFFError(f"{board}: EdgeFF's firmware does not run on this board (its profile has no [firmware] "
                          f"table); the emulated boards are {', '.join(firmware_profile_names())}")
    return target


TARGET = target_of(DEFAULT_BOARD)     # the default emulated board
FIRMWARE = Path(__file__).resolve().parent / "firmware"
# the firmware's protocol code (not the host-only fuzzing harness beside it)
PROTOCOL_SOURCES = [PROTOCOL / name for name in ("framing.c", "board_image.c", "cwc_image.c", "board_protocol.c")]


def cflags(target: FirmwareTarget) -> list:
    return ["-std=c99", *target.cpu_flags, "-O2", "-ffunction-sections", "-fdata-sections", "-ffreestanding",
            "-Wall", "-Wextra", "-Werror"]


def tool_path(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        package = "gcc-arm-none-eabi" if name.startswith("arm-none-eabi") else name
        raise EdgeFFError(f"{name} is not installed; install it with `apt-get install {package}`")
    return path


def linked_sections(elf: Path) -> dict:
    """Section name (without its dot) -> bytes of a linked firmware image, as arm-none-eabi-size -A lists them."""
    out = subprocess.run([tool_path("arm-none-eabi-size"), "-A", str(elf)], capture_output=True, text=True,
                         check=True).stdout
    return {name: int(size) for name, size in re.findall(r"^\.(\w+)\s+(\d+)", out, re.M)}


def symbol_sizes(elf: Path) -> dict:
    """Symbol -> (bytes, region) of a linked firmware image, as arm-none-eabi-nm lists them: "flash" for code and
    read-only data (the linker script puts .rodata into .text), "sram" for initialized and zeroed data (an
    initialized one also takes its initial values' bytes in flash, which linked_sections counts)."""
    out = subprocess.run([tool_path("arm-none-eabi-nm"), "-S", str(elf)], capture_output=True, text=True,
                         check=True).stdout
    regions = {"t": "flash", "r": "flash", "d": "sram", "b": "sram"}
    return {name: (int(size, 16), regions[kind.lower()])
            for size, kind, name in re.findall(r"^[0-9a-f]+ ([0-9a-f]+) ([tTrRdDbB]) (\S+)$", out, re.M)}


def build(app: str, out: Path, generated: dict | None = None, defines=(), target: FirmwareTarget = TARGET,
          kernels: Path = KERNELS) -> Path:
    """Compile and link firmware/<app>/ with the library and the board's support folders into out (an ELF);
    `generated` maps header names to C source written beside the build, `defines` are preprocessor names to
    set, `kernels` is the kernel library's directory (another version's, to compare). A link that overflows
    the board's flash or RAM fails with the linker's message."""
    gcc = tool_path("arm-none-eabi-gcc")
    folders = [FIRMWARE / "board" / name for name in target.support]
    missing = [str(f) for f in folders if not f.is_dir()]
    scripts = [ld for f in folders for ld in sorted(f.glob("*.ld"))]
    if missing or len(scripts) != 1:
        raise EdgeFFError(f"[firmware] support {list(target.support)}: "
                          + (f"no folder {', '.join(missing)}" if missing else
                             f"the folders hold {len(scripts)} linker scripts, not one"))
    sources = [*sorted(kernels.glob("*.c")), *PROTOCOL_SOURCES, *(c for f in folders for c in sorted(f.glob("*.c"))),
               *sorted((FIRMWARE / app).glob("*.c"))]
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in {**generated_files(target), **(generated or {})}.items():
            (Path(tmp) / name).write_text(text)
        cmd = [gcc, *cflags(target), *(f"-D{name}" for name in defines),
               f"-I{kernels}", f"-I{PROTOCOL}", *(f"-I{f}" for f in folders), f"-I{tmp}",
               *map(str, sources),
               "-nostdlib", "-nostartfiles", f"-L{tmp}", f"-T{scripts[0]}", "-Wl,--gc-sections",
               f"-Wl,-Map={out.with_suffix('.map')}", "-lgcc", "-o", str(out)]
        result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise EdgeFFError(f"building the {app} firmware failed:\n{result.stderr.strip()}")
    return out


def _qemu_command(elf: Path, serial: str, target: FirmwareTarget = TARGET) -> list:
    return [tool_path("qemu-system-arm"), "-machine", target.qemu_machine, "-nographic", "-monitor", "none",
            "-serial", serial, "-icount", "shift=0", "-semihosting-config", "enable=on,target=native",
            "-kernel", str(elf)]


def start(elf: Path, port: int, target: FirmwareTarget = TARGET) -> subprocess.Popen:
    """Boot the firmware in QEMU (the machine of `target`, the board it was built for) with its UART on a TCP
    server at 127.0.0.1:port (pyserial URL socket://127.0.0.1:port); the caller stops the process."""
    serial = f"tcp:127.0.0.1:{port},server=on,wait=off,nodelay=on"
    # QEMU dies with its parent: a host killed without a chance to clean up (SIGTERM, SIGKILL) leaves no
    # emulator running. setpriv (util-linux) sets the parent-death signal and execs QEMU under the same pid.
    outlive = ["setpriv", "--pdeathsig", "KILL", "--"] if shutil.which("setpriv") else []
    return subprocess.Popen(outlive + _qemu_command(elf, serial, target), stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


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


def board_firmware(model_header: str | None = None, target: FirmwareTarget = TARGET) -> Path:
    """The board firmware (board_app) for `target`, built once per source version, board descriptor and
    compiled-in model (the text of an `edgeff export --format board-header` file) into the EdgeFF cache."""
    elf = cache_dir() / f"board_app-{firmware_key(model_header, target)}.elf"
    if not elf.exists():
        elf.parent.mkdir(parents=True, exist_ok=True)
        tmp = elf.with_name(f".{elf.name}.{os.getpid()}")
        generated, defines = ({"board_model.h": model_header}, ["EDGEFF_BOARD_MODEL"]) if model_header else ({}, [])
        try:
            build("board_app", tmp, generated, defines, target=target)
            os.replace(tmp, elf)
        finally:
            tmp.unlink(missing_ok=True)
            tmp.with_suffix(".map").unlink(missing_ok=True)
    return elf


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EmulatedBoard:
    """The board firmware running in QEMU on `target`'s machine for as long as the `with` block; `url` is its
    UART. With model_header (a board-header export's text) the firmware boots with that model compiled in."""

    def __init__(self, port: int | None = None, model_header: str | None = None, target: FirmwareTarget = TARGET):
        self.port = port or free_port()
        self.url = f"socket://127.0.0.1:{self.port}"
        self.model_header, self.target, self.process = model_header, target, None

    def __enter__(self):
        self.process = start(board_firmware(self.model_header, self.target), self.port, self.target)
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
