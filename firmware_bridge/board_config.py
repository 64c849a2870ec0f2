"""A board descriptor's facts as the firmware build takes them, generated at build time into the build folder.

    board_config_header(target) -> board_config.h: names, clock, memory and UART for the C sources
    board_memory_ld(target)     -> board_memory.ld: the MEMORY regions the linker script INCLUDEs

`target` is a profile's [firmware] table (edgeff/profiler/hw_profile.py, FirmwareTarget). The firmware's
sources and its linker script hold no board number of their own.
"""
from edgeff.errors import EdgeFFError
from edgeff.profiler.hw_profile import FirmwareTarget
from firmware_bridge import messages as m
from firmware_bridge.c_constants import define, signed

BANNER = "/* GENERATED at firmware build time by firmware_bridge/board_config.py from the board's descriptor\n" \
         " * (hw_profiles/<board>.toml, [firmware]); do not edit. */\n"


def board_config_header(target: FirmwareTarget) -> str:
    if len(target.board_name.encode()) > m.TEXT_FIELD:
        raise EdgeFFError(f"[firmware] board_name {target.board_name!r} is longer than INFO's {m.TEXT_FIELD} bytes")
    lines = [
        f'#define EF_BOARD_NAME "{target.board_name}"',
        define("EF_BOARD_CLOCK_HZ", target.clock_hz, "SysTick runs at the core clock"),
        define("EF_BOARD_TICKS_PER_US", target.clock_hz // 1_000_000),
        define("EF_BOARD_FLASH_BYTES", target.flash_bytes),
        define("EF_BOARD_RAM_BYTES", target.ram_bytes),
        define("EF_BOARD_IMAGE_BYTES", target.image_bytes, "the model with its master weights"),
        define("EF_BOARD_SCRATCH_BYTES", target.scratch_bytes, "its working buffers and the staging slots"),
        define("EF_BOARD_UART_BASE", target.uart_base),
        signed("EF_BOARD_UART_RX_IRQ", target.uart_rx_irq),
    ]
    return BANNER + "#ifndef EDGEFF_BOARD_CONFIG_H\n#define EDGEFF_BOARD_CONFIG_H\n\n" + "\n".join(lines) + \
        "\n\n#endif\n"


def board_memory_ld(target: FirmwareTarget) -> str:
    """The code in flash below a checkpoint partition at its end (no section goes there, so neither the ELF
    loader nor a reset writes it: __storage_start, __storage_end), the data and stack in RAM."""
    code = target.flash_bytes - target.storage_bytes
    return (BANNER + "MEMORY\n{\n"
            f"    FLASH (rx)    : ORIGIN = {target.flash_origin:#010x}, LENGTH = {code:#x}\n"
            f"    STORAGE (rw)  : ORIGIN = {target.flash_origin + code:#010x}, LENGTH = {target.storage_bytes:#x}\n"
            f"    RAM (rwx)     : ORIGIN = {target.ram_origin:#010x}, LENGTH = {target.ram_bytes:#x}\n"
            "}\n\n"
            f"STACK_SIZE = {target.stack_bytes:#x};\n")


def generated_files(target: FirmwareTarget) -> dict:
    """File name -> text of what a firmware build writes into its build folder for this board."""
    return {"board_config.h": board_config_header(target), "board_memory.ld": board_memory_ld(target)}
