"""Hardware profiles (edgeff/hw_profiles/*.toml, shipped in the package): the figures the profiler needs
about a board, each with its source.

Every figure is a table `[field] value = ..., source = "..."`, so a hardware engineer can trace each
number to a datasheet, a paper, or a labelled estimate. A profile with a missing, unknown, non-numeric
or unsourced field is refused with the field named.

A board that EdgeFF's firmware runs on also has a `[firmware]` table (FIRMWARE_FIELDS): what the firmware
build, its generated board_config.h / board_memory.ld (firmware_bridge/board_config.py) and the emulator
need. Its memory sizes are the profile's own figures (flash_bytes, sram_bytes, clock_hz), so no board fact is
written twice. A board the exported Arduino library is checked against has an `[arduino]` table
(ARDUINO_FIELDS): the compiler's target flags, its memory regions' origins and the stack its core keeps.
"""
import math
from dataclasses import dataclass
from pathlib import Path

from edgeff.errors import EdgeFFError
from edgeff.toml_file import read_toml

PROFILES_DIR = Path(__file__).resolve().parent.parent / "hw_profiles"   # ships in the package

COMMON_FIELDS = ("sram_bytes", "flash_bytes", "sram_reserved_bytes")
MCU_FIELDS = COMMON_FIELDS + (
    "clock_hz", "cycles_per_int8_mac", "cycles_per_fp32_mac", "cycles_per_weight_update",
    "run_current_ua_per_mhz", "supply_v",
    "e_int8_add_pj", "e_int8_mult_pj", "e_int32_add_pj", "e_int32_mult_pj", "e_fp32_add_pj", "e_fp32_mult_pj",
    "e_sram_access_pj", "e_flash_access_pj", "e_dram_access_pj")
NEUROMORPHIC_FIELDS = COMMON_FIELDS + ("e_synop_pj", "e_synaptic_update_pj", "e_neuron_update_pj")
FIELDS = {"mcu": MCU_FIELDS, "neuromorphic": NEUROMORPHIC_FIELDS}
MAY_BE_ZERO = {"flash_bytes", "sram_reserved_bytes"}
ACCESS_BYTES = 8  # Horowitz's memory energies are per 64-bit access

# [firmware] fields and their kinds: an address, interrupt number or "bytes" may be 0, a "size" may not
FIRMWARE_FIELDS = {
    "support": "texts",          # the board support folders, firmware_bridge/firmware/board/<each>/
    "board_name": "text",        # the name the firmware reports in INFO (at most 16 bytes)
    "cpu_flags": "texts",        # the compiler's target flags
    "qemu_machine": "text",      # qemu-system-arm -machine
    "flash_origin": "address",
    "ram_origin": "address",
    "storage_bytes": "bytes",    # the end of flash kept for checkpoints (0: none; the board refuses CHECKPOINT)
    "stack_bytes": "size",
    "image_bytes": "size",       # RAM for the model with its master weights
    "scratch_bytes": "size",     # RAM for its working buffers and the staging slots
    "uart_base": "address",
    "uart_rx_irq": "address",
}
# [arduino] fields: what firmware_bridge/arduino_build.py links the exported library for
ARDUINO_FIELDS = {
    "cpu_flags": "texts",        # the compiler's target flags of the board's Arduino core
    "flash_origin": "address",
    "ram_origin": "address",
    "stack_bytes": "size",       # the stack the core keeps beside the sketch's RAM
}


@dataclass(frozen=True)
class FirmwareTarget:
    """A profile's [firmware] table (FIRMWARE_FIELDS), with the profile's memory and clock figures."""
    support: tuple
    board_name: str
    cpu_flags: tuple
    qemu_machine: str
    flash_origin: int
    ram_origin: int
    storage_bytes: int
    stack_bytes: int
    image_bytes: int
    scratch_bytes: int
    uart_base: int
    uart_rx_irq: int
    flash_bytes: int
    ram_bytes: int
    clock_hz: int


@dataclass(frozen=True)
class ArduinoTarget:
    """A profile's [arduino] table (ARDUINO_FIELDS)."""
    cpu_flags: tuple
    flash_origin: int
    ram_origin: int
    stack_bytes: int


@dataclass(frozen=True)
class HardwareProfile:
    name: str
    kind: str
    description: str
    values: dict    # field -> number
    sources: dict   # field -> where the number comes from
    firmware: FirmwareTarget | None = None   # boards EdgeFF's firmware runs on
    arduino: ArduinoTarget | None = None     # boards the Arduino library export is linked for

    def __getattr__(self, field):
        try:
            return self.__dict__["values"][field]
        except KeyError:
            raise AttributeError(f"profile '{self.__dict__.get('name')}' has no field '{field}'") from None

    @property
    def energy_per_cycle_pj(self) -> float:
        """System energy per clock cycle: datasheet run current per MHz times the supply voltage."""
        return self.run_current_ua_per_mhz * self.supply_v  # uA/MHz * V = pJ per cycle

    def memory_pj_per_byte(self, region: str) -> float:
        return self.values[f"e_{region}_access_pj"] / ACCESS_BYTES


def profile_names() -> list:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.toml"))


def firmware_profile_names() -> list:
    """The boards EdgeFF's firmware runs on: the shipped profiles with a [firmware] table."""
    return [name for name in profile_names() if load_profile(name).firmware is not None]


def _resolve(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix == ".toml" and path.is_file():
        return path
    candidate = PROFILES_DIR / f"{name_or_path}.toml"
    if candidate.is_file():
        return candidate
    raise EdgeFFError(f"no hardware profile '{name_or_path}'; give a .toml path or one of: "
                      f"{', '.join(profile_names()) or 'none found in ' + str(PROFILES_DIR)}")


def load_profile(name_or_path: str) -> HardwareProfile:
    path = _resolve(name_or_path)
    raw = read_toml(path)
    return profile_from_dict(raw, str(path))


def profile_from_dict(raw: dict, where: str = "profile") -> HardwareProfile:
    kind = raw.get("kind")
    if kind not in FIELDS:
        raise EdgeFFError(f"{where}: field 'kind' must be one of {sorted(FIELDS)}, got {kind!r}")
    for key in ("name", "description"):
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            raise EdgeFFError(f"{where}: field '{key}' is missing or not a text")
    unknown = sorted(set(raw) - set(FIELDS[kind]) - {"name", "kind", "description", "firmware", "arduino"})
    if unknown:
        raise EdgeFFError(f"{where}: unknown field(s) {unknown} for a '{kind}' profile; "
                          f"the fields are {list(FIELDS[kind])}")
    values, sources = {}, {}
    for field in FIELDS[kind]:
        entry = raw.get(field)
        if not isinstance(entry, dict):
            raise EdgeFFError(f"{where}: field '{field}' is missing; write it as a table "
                              f"[{field}] with value = ... and source = \"...\"")
        value, source = entry.get("value"), entry.get("source")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise EdgeFFError(f"{where}: field '{field}' needs a numeric value, got {value!r}")
        if not math.isfinite(value) or value < 0 or (value == 0 and field not in MAY_BE_ZERO):
            raise EdgeFFError(f"{where}: field '{field}' must be a finite positive number, got {value}")
        if not isinstance(source, str) or not source.strip():
            raise EdgeFFError(f"{where}: field '{field}' has no source; say where the figure comes from")
        values[field], sources[field] = value, source
    if values["sram_reserved_bytes"] >= values["sram_bytes"]:
        raise EdgeFFError(f"{where}: sram_reserved_bytes ({values['sram_reserved_bytes']}) leaves no SRAM "
                          f"of the {values['sram_bytes']} for the model")
    firmware = _firmware_target(raw["firmware"], values, where) if "firmware" in raw else None
    arduino = (ArduinoTarget(**_table(raw["arduino"], ARDUINO_FIELDS, f"{where}: [arduino]"))
               if "arduino" in raw else None)
    return HardwareProfile(raw["name"], kind, raw["description"], values, sources, firmware, arduino)


def _table(raw, spec: dict, where: str) -> dict:
    """The checked fields of a table whose fields and their kinds are `spec` (FIRMWARE_FIELDS, ARDUINO_FIELDS)."""
    if not isinstance(raw, dict):
        raise EdgeFFError(f"{where} must be a table of the fields {list(spec)}")
    unknown = sorted(set(raw) - set(spec))
    if unknown:
        raise EdgeFFError(f"{where}: unknown field(s) {unknown}; the fields are {list(spec)}")
    fields = {}
    for field, kind in spec.items():
        if field not in raw:
            raise EdgeFFError(f"{where}: field '{field}' is missing")
        value = raw[field]
        if kind == "text" and not (isinstance(value, str) and value.strip()):
            raise EdgeFFError(f"{where}: field '{field}' must be a non-empty text, got {value!r}")
        if kind == "texts":
            if not (isinstance(value, list) and value and all(isinstance(v, str) and v.strip() for v in value)):
                raise EdgeFFError(f"{where}: field '{field}' must be a list of non-empty texts, got {value!r}")
            value = tuple(value)
        if kind in ("address", "size", "bytes"):
            if isinstance(value, bool) or not isinstance(value, int):
                raise EdgeFFError(f"{where}: field '{field}' needs an integer value, got {value!r}")
            if value < 0 or (value == 0 and kind == "size") or value >= 1 << 32:
                sign = "positive" if kind == "size" else "non-negative"
                raise EdgeFFError(f"{where}: field '{field}' must be a {sign} 32-bit integer, got {value}")
        fields[field] = value
    return fields


def _firmware_target(raw, values: dict, profile_where: str) -> FirmwareTarget:
    where = f"{profile_where}: [firmware]"
    fields = _table(raw, FIRMWARE_FIELDS, where)
    for figure in ("flash_bytes", "sram_bytes", "clock_hz"):
        if not float(values[figure]).is_integer():
            raise EdgeFFError(f"{profile_where}: field '{figure}' must be a whole number for a "
                              f"firmware board, got {values[figure]}")
    target = FirmwareTarget(**fields, flash_bytes=int(values["flash_bytes"]), ram_bytes=int(values["sram_bytes"]),
                            clock_hz=int(values["clock_hz"]))
    if target.storage_bytes >= target.flash_bytes:
        raise EdgeFFError(f"{where}: storage_bytes ({target.storage_bytes}) leaves no flash of the "
                          f"{target.flash_bytes} for the code")
    ram_used = target.image_bytes + target.scratch_bytes + target.stack_bytes
    if ram_used > target.ram_bytes:
        raise EdgeFFError(f"{where}: image_bytes + scratch_bytes + stack_bytes ({ram_used}) exceed the board's "
                          f"sram_bytes ({target.ram_bytes})")
    if target.clock_hz % 1_000_000:
        raise EdgeFFError(f"{where}: the firmware counts time in microseconds of the core clock, so clock_hz must be "
                          f"a whole number of MHz, got {target.clock_hz}")
    return target
