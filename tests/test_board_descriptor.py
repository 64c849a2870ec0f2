"""A board is one descriptor (hw_profiles/<board>.toml): its [firmware] table is loaded strictly, and the
firmware's board_config.h and board_memory.ld are generated from it. The wire formats' C copies are generated
from their Python definitions and must not drift from them."""
import copy
import dataclasses
import shutil
import tomllib

import pytest

from edgeff.errors import EdgeFFError
from edgeff.profiler.hw_profile import PROFILES_DIR, load_profile, profile_from_dict
from firmware_bridge import c_constants, emulator
from firmware_bridge.board_config import board_config_header, board_memory_ld

RAW = tomllib.loads((PROFILES_DIR / "mps2-an386.toml").read_text())


def _with_firmware(**changes) -> dict:
    raw = copy.deepcopy(RAW)
    for field, value in changes.items():
        if value is None:
            del raw["firmware"][field]
        else:
            raw["firmware"][field] = value
    return raw


@pytest.mark.parametrize(("changes", "message"), [
    ({"image_bytes": None}, "field 'image_bytes' is missing"),
    ({"uart_speed": 115200}, "unknown field(s) ['uart_speed']"),
    ({"ram_origin": "0x20000000"}, "field 'ram_origin' needs an integer value"),
    ({"stack_bytes": 0}, "field 'stack_bytes' must be a positive 32-bit integer"),
    ({"scratch_bytes": -8}, "field 'scratch_bytes' must be a positive 32-bit integer"),
    ({"flash_origin": 1 << 32}, "field 'flash_origin' must be a non-negative 32-bit integer"),
    ({"cpu_flags": "-mcpu=cortex-m4"}, "field 'cpu_flags' must be a list of non-empty texts"),
    ({"qemu_machine": " "}, "field 'qemu_machine' must be a non-empty text"),
    ({"storage_bytes": 1_048_576}, "storage_bytes (1048576) leaves no flash"),
    ({"storage_bytes": -1}, "field 'storage_bytes' must be a non-negative 32-bit integer"),
    ({"support": "cortex_m"}, "field 'support' must be a list of non-empty texts"),
    ({"image_bytes": 262_144}, "exceed the board's sram_bytes (262144)"),
])
def test_a_firmware_table_with_a_bad_field_is_refused_with_the_field_named(changes, message):
    with pytest.raises(EdgeFFError, match="mps2: \\[firmware\\]") as err:
        profile_from_dict(_with_firmware(**changes), "mps2")
    assert message in str(err.value)


def test_a_firmware_board_needs_a_whole_mhz_clock():
    raw = copy.deepcopy(RAW)
    raw["clock_hz"]["value"] = 25_500_000
    with pytest.raises(EdgeFFError, match="clock_hz must be a whole number of MHz, got 25500000"):
        profile_from_dict(raw, "mps2")


def test_the_arduino_board_has_its_link_target_and_a_bad_one_is_refused():
    """nrf52840's [arduino] table (what the exported library links for); a wrong field is named."""
    target = load_profile("nrf52840").arduino
    assert "-mfpu=fpv4-sp-d16" in target.cpu_flags and (target.flash_origin, target.ram_origin) == (0, 0x2000_0000)
    assert load_profile("mps2-an386").arduino is None
    raw = tomllib.loads((PROFILES_DIR / "nrf52840.toml").read_text())
    for field, value, message in (("stack_bytes", 0, "field 'stack_bytes' must be a positive"),
                                  ("fpu", "yes", "unknown field(s) ['fpu']"),
                                  ("cpu_flags", [], "field 'cpu_flags' must be a list of non-empty texts")):
        bad = copy.deepcopy(raw)
        bad["arduino"][field] = value
        with pytest.raises(EdgeFFError, match="nrf: \\[arduino\\]") as err:
            profile_from_dict(bad, "nrf")
        assert message in str(err.value)


def test_profiles_without_firmware_have_none_and_the_emulated_board_has_its_table():
    assert load_profile("nrf52840").firmware is None
    target = load_profile("mps2-an386").firmware
    assert (target.qemu_machine, target.clock_hz, target.flash_bytes, target.ram_bytes) == \
        ("mps2-an386", 25_000_000, 1_048_576, 262_144)


def test_each_emulated_board_has_its_machine_memory_map_and_uart():
    # the addresses QEMU 7.2 maps for each machine (`info mtree`), the UART kind each board's support folders drive
    boards = {name: load_profile(name).firmware for name in ("mps2-an500", "netduinoplus2")}
    an500, f405 = boards["mps2-an500"], boards["netduinoplus2"]
    assert (an500.qemu_machine, an500.support, an500.flash_origin, an500.uart_base, an500.uart_rx_irq) == \
        ("mps2-an500", ("cortex_m", "cmsdk_uart"), 0, 0x4000_4000, 0)
    assert "-mcpu=cortex-m7" in an500.cpu_flags and an500.support == emulator.TARGET.support
    assert (f405.qemu_machine, f405.support, f405.flash_origin, f405.ram_origin, f405.uart_base, f405.uart_rx_irq) == \
        ("netduinoplus2", ("cortex_m", "stm32_usart"), 0x0800_0000, 0x2000_0000, 0x4001_1000, 37)
    assert (f405.flash_bytes, f405.ram_bytes, f405.clock_hz, f405.storage_bytes) == (1 << 20, 128 << 10, 168_000_000, 0)
    assert "STORAGE (rw)  : ORIGIN = 0x08100000, LENGTH = 0x0\n" in board_memory_ld(f405)   # no checkpoint partition
    assert emulator.firmware_key(target=an500) != emulator.firmware_key() != emulator.firmware_key(target=f405)
    with pytest.raises(EdgeFFError, match="nrf52840: EdgeFF's firmware does not run on this board.*mps2-an500"):
        emulator.target_of("nrf52840")


def test_a_support_folder_that_does_not_exist_is_refused(tmp_path):
    with pytest.raises(EdgeFFError, match="no folder .*board/no_such_uart"):
        emulator.build("board_app", tmp_path / "x.elf",
                       target=dataclasses.replace(emulator.TARGET, support=("cortex_m", "no_such_uart")))
    with pytest.raises(EdgeFFError, match="hold 0 linker scripts, not one"):
        emulator.build("board_app", tmp_path / "x.elf", target=dataclasses.replace(emulator.TARGET,
                                                                                   support=("cmsdk_uart",)))


def test_the_linker_regions_come_from_the_descriptor():
    # 1 MB of flash with its last 448 KB for checkpoints, 256 KB of RAM: the memory the firmware always had
    ld = board_memory_ld(emulator.TARGET)
    assert "FLASH (rx)    : ORIGIN = 0x00000000, LENGTH = 0x90000\n" in ld
    assert "STORAGE (rw)  : ORIGIN = 0x00090000, LENGTH = 0x70000\n" in ld
    assert "RAM (rwx)     : ORIGIN = 0x20000000, LENGTH = 0x40000\n" in ld
    assert "STACK_SIZE = 0x2000;" in ld
    smaller = board_memory_ld(dataclasses.replace(emulator.TARGET, ram_origin=0x2000_8000, stack_bytes=4096))
    assert "RAM (rwx)     : ORIGIN = 0x20008000, LENGTH = 0x40000\n" in smaller and "STACK_SIZE = 0x1000;" in smaller


def test_the_board_header_comes_from_the_descriptor():
    header = board_config_header(emulator.TARGET)
    for line in ('#define EF_BOARD_NAME "qemu-mps2-an386"', "#define EF_BOARD_TICKS_PER_US 25u",
                 "#define EF_BOARD_FLASH_BYTES 0x100000u", "#define EF_BOARD_IMAGE_BYTES 0x30000u",
                 "#define EF_BOARD_SCRATCH_BYTES 40960u", "#define EF_BOARD_UART_BASE 0x40004000u",
                 "#define EF_BOARD_UART_RX_IRQ 0"):
        assert line in header.splitlines() or any(l.startswith(line + " ") for l in header.splitlines()), line
    assert emulator.TARGET.image_bytes == 196_608
    with pytest.raises(EdgeFFError, match="longer than INFO's 16 bytes"):
        board_config_header(dataclasses.replace(emulator.TARGET, board_name="a-board-name-of-17"))


def test_the_firmware_cache_key_covers_the_descriptor():
    key = emulator.firmware_key()
    assert emulator.firmware_key(target=dataclasses.replace(emulator.TARGET, scratch_bytes=4096)) != key
    assert emulator.firmware_key(target=dataclasses.replace(emulator.TARGET, cpu_flags=("-mcpu=cortex-m3",
                                                                                        "-mthumb"))) != key
    assert emulator.firmware_key() == key


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="needs gcc-arm-none-eabi")
def test_the_firmware_links_against_the_descriptors_memory(tmp_path):
    # a board with 128 KB of RAM cannot hold the 192 KB image buffer: the generated regions are the ones linked
    small = dataclasses.replace(emulator.TARGET, ram_bytes=128 * 1024)
    with pytest.raises(EdgeFFError, match="region `RAM' overflowed"):
        emulator.build("board_app", tmp_path / "small.elf", target=small)


@pytest.mark.parametrize("path", sorted(c_constants.GENERATED), ids=lambda p: p.name)
def test_the_committed_c_copy_of_the_wire_formats_has_not_drifted(path):
    assert path.read_text(encoding="utf-8") == c_constants.GENERATED[path](), (
        f"{path} differs from what its Python definitions generate; regenerate it with `{c_constants.REGENERATE}`")


def test_the_generated_wire_header_carries_the_python_numbers():
    from firmware_bridge import board_image
    from firmware_bridge import messages as m
    header = c_constants.wire_header().splitlines()
    assert f"#define EF_CONFIGURE_BYTES {m.CONFIGURE.size}u" in header
    assert f"    EF_REQUEST_RESET = {int(m.Request.RESET):#04x}," in header
    record = board_image.layer_encoding().RECORD
    assert f"#define EF_IMAGE_LAYER_BYTES {record.size}u   /* one layer's record */" in header
    assert "#define EF_REQUEST_PAYLOAD_BYTES {0, 2, 8, -4, 0, 28, -8, 8, 8, 0, 6, 0, 0, 0}" in header   # -n: chunked
    with pytest.raises(ValueError, match="EF_X = -1 cannot be unsigned"):
        c_constants.define("EF_X", -1)
