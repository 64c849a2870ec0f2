"""Hardware profiles (edgeff/hw_profiles/*.toml, shipped in the package): the figures the profiler needs
about a board, each with its source.

Every figure is a table `[field] value = ..., source = "..."`, so a hardware engineer can trace each
number to a datasheet, a paper, or a labelled estimate. A profile with a missing, unknown, non-numeric
or unsourced field is refused with the field named.
"""
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path

from edgeff.errors import EdgeFFError

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


@dataclass(frozen=True)
class HardwareProfile:
    name: str
    kind: str
    description: str
    values: dict    # field -> number
    sources: dict   # field -> where the number comes from

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
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise EdgeFFError(f"{path}: not valid TOML ({exc})") from None
    return profile_from_dict(raw, str(path))


def profile_from_dict(raw: dict, where: str = "profile") -> HardwareProfile:
    kind = raw.get("kind")
    if kind not in FIELDS:
        raise EdgeFFError(f"{where}: field 'kind' must be one of {sorted(FIELDS)}, got {kind!r}")
    for key in ("name", "description"):
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            raise EdgeFFError(f"{where}: field '{key}' is missing or not a text")
    unknown = sorted(set(raw) - set(FIELDS[kind]) - {"name", "kind", "description"})
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
    return HardwareProfile(raw["name"], kind, raw["description"], values, sources)
