"""A sweep spec (SPEC.toml): which training configs, overrides and seeds make the trials of a sweep.

    name = "cff-variants"            # optional; the file's stem by default
    seeds = 10                       # seeds 0..9, or a list such as [0, 5, 7]
    data_dir = "/usr/share/datasets/fashion-mnist"   # optional; each worker reads it (as `edgeff train` would)
    cpus_per_trial = 1               # CPUs Ray reserves for a trial (its torch threads)
    quantize = false                 # also quantize (PTQ) and score the int8 model on the test split
    finetune_epochs = 0              # then integer-only finetune epochs (needs quantize), scored again
    finetune_samples = 0             # training samples per finetune epoch (0: all)
    keep_models = false              # keep each trial's model files under <out>/models/ (else only the table)
    config = "ff-784-500-500-fast"   # the base config of every variant that names none (a name from
                                     # edgeff/models/ or a file; paths are relative to the spec's folder)
    [set]                            # overrides for every trial: a partial training config
    train.epochs = 5
    [[variants]]                     # optional: named variants, each a config and/or overrides
    name = "A-CFF"
    set.collab.mode = "adaptive"
    [grid]                           # optional: every combination of these values is a variant (of each one above)
    model.sizes = [[784, 100, 100], [784, 100, 100, 100]]

A variant's identity is the hash of its resolved training config (seed left out) and the trial's extra steps,
so the same variant under another name or spec is recognized in a results table, and changed settings are not.
"""
import copy
import hashlib
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path

from edgeff.errors import EdgeFFError
from edgeff.package_data import model_config
from edgeff.toml_file import read_toml
from edgeff.train.config import config_from_dict

TOP_KEYS = {"name", "seeds", "data_dir", "cpus_per_trial", "quantize", "finetune_epochs", "finetune_samples",
            "config", "set", "variants", "grid", "keep_models"}
VARIANT_KEYS = {"name", "config", "set"}


@dataclass(frozen=True)
class Trial:
    """One training run of a sweep: plain data, so Ray can ship it to any worker."""
    index: int                 # position in the spec's order (variants, then seeds): the table's row order
    variant: str
    config_hash: str
    seed: int
    config: dict               # the resolved training config, validated, seed set
    params: dict               # the settings that make this variant (its overrides, flattened)
    data_dir: str | None
    cpus: int
    quantize: bool
    finetune_epochs: int
    finetune_samples: int
    keep_dir: str | None       # where the trial's model files are kept, if the spec keeps them

    @property
    def key(self):
        return self.config_hash, self.seed


@dataclass
class Spec:
    name: str
    path: Path
    seeds: list
    data_dir: str | None = None                      # None: $EDGEFF_DATA_DIR or the Debian package
    variants: list = field(default_factory=list)   # variant names, in order
    trials: list = field(default_factory=list)


def _merge(base: dict, over: dict) -> dict:
    """`over` laid onto `base`, table by table (a partial config overrides only the keys it names)."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def _flatten(table: dict, prefix="") -> dict:
    """{"model": {"sizes": X}} -> {"model.sizes": X}: the leaves of a nested table, by dotted key."""
    out = {}
    for k, v in table.items():
        if isinstance(v, dict):
            out |= _flatten(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = v
    return out


def _nest(dotted: dict) -> dict:
    out = {}
    for key, v in dotted.items():
        *tables, leaf = key.split(".")
        node = out
        for t in tables:
            node = node.setdefault(t, {})
        node[leaf] = v
    return out


def _value_text(v) -> str:
    return "-".join(map(str, v)) if isinstance(v, list) else str(v)


def _check_table(where, value, what):
    if not isinstance(value, dict):
        raise EdgeFFError(f"{where}: '{what}' must be a table of config keys, e.g. [set] train.epochs = 5")
    return value


def _seeds(where, value) -> list:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return list(range(value))
    if isinstance(value, list) and value and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                                                 for s in value):
        if len(set(value)) != len(value):
            raise EdgeFFError(f"{where}: 'seeds' lists a seed twice: {value}")
        return list(value)
    raise EdgeFFError(f"{where}: 'seeds' must be a count (seeds 0..n-1) or a list of seeds >= 0, got {value!r}")


def _whole(where, raw, key, default, low):
    value = raw.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise EdgeFFError(f"{where}: '{key}' must be a whole number of at least {low}, got {value!r}")
    return value


def _base_config(where, name, folder: Path) -> dict:
    if not isinstance(name, str) or not name:
        raise EdgeFFError(f"{where}: 'config' must name a training config (a path or a name from edgeff/models/)")
    if (folder / name).is_file():
        return read_toml(folder / name)
    try:
        return read_toml(model_config(name))
    except EdgeFFError as exc:
        raise EdgeFFError(f"{where}: {exc}") from None


def config_hash(config: dict, steps: dict) -> str:
    """12 hex digits naming a variant: its resolved config without the seed (and its name), plus the steps."""
    cfg = copy.deepcopy(config)
    cfg.pop("name", None)
    cfg["train"].pop("seed", None)
    text = json.dumps({"config": cfg, "steps": steps}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def load_spec(path, results_dir=None) -> Spec:
    """Read and check a sweep spec; every trial's config is validated here, before any worker starts."""
    path = Path(path)
    if not path.is_file():
        raise EdgeFFError(f"{path}: no such sweep spec (a TOML file; docs/sweep.md shows one)")
    raw = read_toml(path)
    where = str(path)
    unknown = set(raw) - TOP_KEYS
    if unknown:
        raise EdgeFFError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; allowed: "
                          f"{', '.join(sorted(TOP_KEYS))}")
    if "seeds" not in raw:
        raise EdgeFFError(f"{where}: 'seeds' is missing; give a count, e.g. seeds = 10")
    seeds = _seeds(where, raw["seeds"])
    cpus = _whole(where, raw, "cpus_per_trial", 1, 1)
    ft_epochs = _whole(where, raw, "finetune_epochs", 0, 0)
    ft_samples = _whole(where, raw, "finetune_samples", 0, 0)
    for key in ("quantize", "keep_models"):
        if not isinstance(raw.get(key, False), bool):
            raise EdgeFFError(f"{where}: '{key}' must be true or false")
    quantize = raw.get("quantize", False)
    if ft_epochs and not quantize:
        raise EdgeFFError(f"{where}: 'finetune_epochs' trains the int8 model; set quantize = true as well")
    data_dir = raw.get("data_dir")
    if data_dir is not None:
        if not isinstance(data_dir, str):
            raise EdgeFFError(f"{where}: 'data_dir' must be a path string")
        data_dir = str((path.parent / data_dir).resolve())   # absolute: a worker's working folder is not ours
    common = _check_table(where, raw.get("set", {}), "set")
    variants = raw.get("variants", [{}])
    if not isinstance(variants, list) or not variants or not all(isinstance(v, dict) for v in variants):
        raise EdgeFFError(f"{where}: 'variants' must be a list of tables ([[variants]] with name, config, set)")
    grid = _flatten(_check_table(where, raw.get("grid", {}), "grid"))
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise EdgeFFError(f"{where} [grid]: '{key}' must list the values to try, e.g. {key} = [a, b]")
    steps = {"quantize": quantize, "finetune_epochs": ft_epochs, "finetune_samples": ft_samples}
    spec = Spec(name=raw.get("name", path.stem), path=path, seeds=seeds, data_dir=data_dir)
    seen = {}
    for k, variant in enumerate(variants):
        bad = set(variant) - VARIANT_KEYS
        if bad:
            raise EdgeFFError(f"{where} variants[{k}]: unknown key(s) {', '.join(sorted(bad))}; allowed: "
                              f"{', '.join(sorted(VARIANT_KEYS))}")
        base_name = variant.get("config", raw.get("config"))
        if base_name is None:
            raise EdgeFFError(f"{where}: variants[{k}] names no config; give config = NAME there or at the top")
        base = _base_config(where, base_name, path.parent)
        own = _check_table(f"{where} variants[{k}]", variant.get("set", {}), "set")
        label = variant.get("name") or (Path(base_name).stem if len(variants) > 1 else "")
        for combo in itertools.product(*grid.values()) if grid else [()]:
            point = dict(zip(grid, combo, strict=True))
            name = " ".join([label] * bool(label) + [f"{k.split('.')[-1]}={_value_text(v)}" for k, v in point.items()])
            name = name or spec.name
            if name in seen:
                raise EdgeFFError(f"{where}: two variants are named {name!r}; give each [[variants]] its own name")
            config = _merge(_merge(_merge(base, common), own), _nest(point))
            config["name"] = name
            config_from_dict(_merge(config, {"train": {"seed": seeds[0]}}), source=f"{where} variant {name!r}")
            digest = config_hash(config, steps)
            if digest in seen.values():
                other = next(n for n, d in seen.items() if d == digest)
                raise EdgeFFError(f"{where}: variants {other!r} and {name!r} train the same config; drop one")
            seen[name] = digest
            spec.variants.append(name)
            params = _flatten(own) | point
            for seed in seeds:
                keep = (str(Path(results_dir) / "models" / f"{digest}-seed{seed}")
                        if raw.get("keep_models") and results_dir is not None else None)
                spec.trials.append(Trial(
                    index=len(spec.trials), variant=name, config_hash=digest, seed=seed,
                    config=_merge(config, {"train": {"seed": seed}}), params=params, data_dir=data_dir,
                    cpus=cpus, quantize=quantize, finetune_epochs=ft_epochs, finetune_samples=ft_samples,
                    keep_dir=keep))
    return spec
