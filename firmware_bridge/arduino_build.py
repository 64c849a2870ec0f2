"""Builds an exported Arduino library (arduino_library.py) with its example sketch against a stand-in for the
Arduino core (firmware/arduino_standin/), without an Arduino toolchain:

    build_cortex_m(library, out) -> footprint   arm-none-eabi-gcc for the board's [arduino] target (its
                                                 profile), its flash and SRAM as the linker's regions: RAM and
                                                 flash of the result

(tests/test_arduino_library.py builds the same sources for the host with compile_sketch, the sketch's Serial on
a pty.) The sketch is compiled as the Arduino builder compiles a .ino: as C++ with <Arduino.h> included first.
"""
import subprocess
from pathlib import Path

from edgeff.errors import EdgeFFError
from edgeff.profiler.hw_profile import load_profile
from firmware_bridge.arduino_library import BOARD
from firmware_bridge.emulator import FIRMWARE, linked_sections, tool_path

STANDIN = FIRMWARE / "arduino_standin"
SKETCH = "examples/TrainOverSerial/TrainOverSerial.ino"
# what Arduino cores build with: no exceptions or RTTI in C++, sections the linker can drop
COMMON = ["-O2", "-ffunction-sections", "-fdata-sections", "-Wall", "-Wextra", "-Werror"]
CXX_ONLY = ["-std=gnu++17", "-fno-exceptions", "-fno-rtti"]


def _sources(library: Path, build: Path) -> tuple[list, list]:
    """(C sources, C++ sources) of the library, the sketch (as a .cpp) and nothing of the stand-in."""
    sketch = build / "sketch.cpp"
    sketch.write_text("#include <Arduino.h>\n" + (library / SKETCH).read_text())
    return sorted((library / "src").glob("*.c")), [*sorted((library / "src").glob("*.cpp")), sketch]


def compile_sketch(cc: str, cxx: str, flags: list, library: Path, build: Path, standin: Path) -> list:
    """The object files of the library, its sketch and the stand-in core `standin` (tests build a host one)."""
    c_sources, cxx_sources = _sources(library, build)
    includes = [f"-I{library / 'src'}", f"-I{STANDIN}"]
    objects = []
    for source in [*c_sources, *cxx_sources, standin]:
        obj = build / (source.stem + ".o")
        compiler, extra = (cc, ["-std=c99"]) if source.suffix == ".c" else (cxx, CXX_ONLY)
        run_build([compiler, *flags, *COMMON, *extra, *includes, "-c", str(source), "-o", str(obj)], source)
        objects.append(obj)
    return objects


def run_build(cmd: list, what):
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise EdgeFFError(f"building the Arduino library failed at {what}:\n{done.stderr.strip()}")


def _memory_ld(board) -> str:
    """The stand-in link's memory regions: the board profile's sizes at its [arduino] origins."""
    target = board.arduino
    return ("MEMORY\n{\n"
            f"    FLASH (rx) : ORIGIN = {target.flash_origin:#010x}, LENGTH = {board.flash_bytes:#x}\n"
            f"    RAM (rwx)  : ORIGIN = {target.ram_origin:#010x}, LENGTH = {board.sram_bytes:#x}\n"
            f"}}\n\nSTACK_SIZE = {target.stack_bytes:#x};\n")


def _ram_symbols(elf: Path) -> dict:
    """Name -> bytes of every object in RAM (.data and .bss), C++ names demangled (arm-none-eabi-nm)."""
    done = subprocess.run([tool_path("arm-none-eabi-nm"), "-S", "-C", str(elf)], capture_output=True, text=True,
                          check=True)
    symbols = {}
    for line in done.stdout.splitlines():
        parts = line.split(maxsplit=3)
        if len(parts) == 4 and parts[2] in "bBdD":
            symbols[parts[3]] = int(parts[1], 16)
    return symbols


def build_cortex_m(library, out) -> dict:
    """Link the library and its sketch for a Cortex-M4F whose flash and SRAM are the board profile's (a link
    that does not fit fails with the linker's message); returns its flash and RAM in bytes, the stack apart."""
    library, out = Path(library), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    board = load_profile(BOARD)
    (out / "standin_memory.ld").write_text(_memory_ld(board))
    gcc, gxx = tool_path("arm-none-eabi-gcc"), tool_path("arm-none-eabi-g++")
    flags = list(board.arduino.cpu_flags)
    objects = compile_sketch(gcc, gxx, flags, library, out, STANDIN / "standin_cortex_m.cpp")
    elf = out / "TrainOverSerial.elf"
    # linked by the C driver: the C++ here needs no libstdc++ (no exceptions, RTTI or new), only newlib's memcpy
    run_build([gcc, *flags, "-nostartfiles", "--specs=nano.specs", f"-L{out}", f"-T{STANDIN / 'standin_cortex_m.ld'}",
          "-Wl,--gc-sections", f"-Wl,-Map={elf.with_suffix('.map')}", *map(str, objects), "-lgcc", "-o", str(elf)],
         "the link")
    sections = linked_sections(elf)
    return {"elf": str(elf), "board": BOARD, "flash_bytes": sections["text"] + sections.get("data", 0),
            "ram_bytes": sections.get("data", 0) + sections.get("bss", 0), "stack_bytes": board.arduino.stack_bytes,
            "ram_symbols": _ram_symbols(elf),
            "board_flash_bytes": board.flash_bytes, "board_sram_bytes": board.sram_bytes}
