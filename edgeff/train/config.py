"""Training configuration: a small TOML file (models/*.toml), checked strictly on load.

Sections and their keys are the dataclasses below; an unknown key, a wrong type or an out-of-range
value is refused with the file, the key and what is allowed. Layers are numbered from 1 (the first
hidden layer) wherever a user reads or writes them.
"""
import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

from edgeff.data.datasets import DEFAULT_VAL_FRACTION
from edgeff.errors import EdgeFFError
from edgeff.model_description import ModelDescription
from edgeff.toml_file import read_toml


@dataclass
class ModelConfig:
    sizes: list = None            # input width, then hidden widths; required (no network is trained by default)
    goodness: str = "mean"        # "mean" or "sum" of squared activities
    label_value: float = 1.0      # value of the one-hot label pixels
    normalization: str = "rms"    # "rms" (unit mean square) or "length" (unit length, Hinton's)
    qat: bool = False             # quantization-aware training of the layers with Brevitas (edgeff/train/qat.py)
    # a layered network (edgeff.train.conv_network) instead of sizes: its layers, each a table with a kind
    # ("conv2d", "maxpool2d", "flatten", "dense") and that kind's parameters less its input size, which comes
    # from the layer before (the first from input_shape); and how it learns: "cwc", "overlay" or "backprop"
    layers: list = None
    input_shape: list = None      # (channels, height, width) of an image, e.g. [1, 28, 28]
    objective: str = None         # layered networks only; default "cwc"


@dataclass
class CollabConfig:
    mode: str = "none"            # "none" (FF), "fixed" (F-CFF) or "adaptive" (A-CFF)
    gamma_init: float = 1.0       # Beigzad 2025: gamma_l = 1.0
    gamma_lr: float = 0.01        # A-CFF only (Beigzad 2025: eta_gamma = 0.01)


@dataclass
class TrainConfig:
    protocol: str = "fast"        # "fast": mini-batch, all layers each step; "paper": layer after layer
    epochs: int = 20              # fast: epochs in all; paper: epochs per layer
    batch_size: int = 256         # paper protocol: 0 means the whole training set (full batch)
    lr: float = 0.01
    lr_schedule: str = "cosine"   # "cosine" (with warm-up), "constant" or "multistep" (milestones, lr_factor)
    milestones: list = field(default_factory=list)   # multistep: epochs (1-based) after which lr *= lr_factor
    lr_factor: float = 0.1        # multistep: the factor (torch's MultiStepLR gamma)
    # layered networks: which layers a loss reaches (edgeff.train.schedules): "greedy", "chunked" or
    # "overlapping", with `chunk` layers a group; chunked boundaries shift every step when `alternate`
    schedule: str = "greedy"
    chunk: int = 2
    alternate: bool = True
    shift: int = 0                # layered networks: each training image moved by up to +-shift pixels per step
    warmup_epochs: float = 0.5
    loss: str = "softplus"        # "softplus" (theta threshold, Ortiz Torres et al. eq. 1) or "symba"
    theta: float = 2.0
    symba_alpha: float = 4.0
    negatives: str = "hard"       # "random" wrong label or the "hard"est wrong label of the current model
    seed: int = 0
    val_fraction: float = DEFAULT_VAL_FRACTION   # of the training images held out for validation
    val_size: int = 0             # if set, exactly this many validation images instead of val_fraction
    eval_every: int = 1           # epochs between per-layer validation accuracy records
    eval_samples: int = 5000      # validation samples scored at each record (the final pick uses all)


@dataclass
class EvalConfig:
    layers: object = "auto"       # layers whose goodness is summed in multi-pass, or "auto" (best on val)
    head_layers: list = None      # one-pass softmax head input; default: layers 2..L
    head_epochs: int = 10


@dataclass
class Config:
    name: str = "model"
    model: ModelConfig = field(default_factory=ModelConfig)
    collab: CollabConfig = field(default_factory=CollabConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    @property
    def layered(self) -> bool:
        """A network of typed layers (conv blocks, flatten, dense) rather than an FF MLP of sizes."""
        return self.model.layers is not None

    @property
    def n_layers(self):
        return len(self.model.layers) if self.layered else len(self.model.sizes) - 1

    def to_dict(self):
        """The config as a dictionary (kept in model files and checkpoints). The keys of layered networks and
        of the multistep schedule are left out where unused, so an MLP config keeps writing the bytes it
        wrote before they existed."""
        d = dataclasses.asdict(self)
        if not self.layered:
            for key in LAYERED_KEYS["model"]:
                d["model"].pop(key)
            for key in LAYERED_KEYS["train"]:
                d["train"].pop(key)
        if self.train.lr_schedule != "multistep":
            for key in MULTISTEP_KEYS:
                d["train"].pop(key)
        return d


LAYERED_KEYS = {"model": ("layers", "input_shape", "objective"), "train": ("schedule", "chunk", "alternate", "shift")}
MULTISTEP_KEYS = ("milestones", "lr_factor")


_CHOICES = {
    ("model", "goodness"): ("mean", "sum"),
    ("model", "normalization"): ("rms", "length"),
    ("collab", "mode"): ("none", "fixed", "adaptive"),
    ("train", "protocol"): ("fast", "paper"),
    ("train", "lr_schedule"): ("cosine", "constant", "multistep"),
    ("train", "schedule"): ("greedy", "chunked", "overlapping"),
    ("model", "objective"): ("cwc", "overlay", "backprop"),
    ("train", "loss"): ("softplus", "symba"),
    ("train", "negatives"): ("random", "hard"),
}


def _check_type(where, key, value, default):
    if default is None or key in ("layers", "milestones"):  # checked in _validate
        return value
    if isinstance(default, bool) or isinstance(value, bool):
        ok = isinstance(value, bool) and isinstance(default, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float))
        value = float(value) if ok else value
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise EdgeFFError(f"{where}: '{key}' must be {type(default).__name__}, got {value!r}")
    return value


def layer_list(where, key, value, n_layers):
    if not isinstance(value, list) or not value or not all(isinstance(v, int) for v in value):
        raise EdgeFFError(f"{where}: '{key}' must be a non-empty list of layer numbers (1..{n_layers})")
    bad = [v for v in value if not 1 <= v <= n_layers]
    if bad:
        raise EdgeFFError(f"{where}: '{key}' names layer(s) {bad}; this network has layers 1..{n_layers}")
    return sorted(set(value))


def config_from_dict(raw: dict, source="config") -> Config:
    cfg = Config()
    for key, value in raw.items():
        if key == "name":
            if not isinstance(value, str) or not value:
                raise EdgeFFError(f"{source}: 'name' must be a non-empty string")
            cfg.name = value
            continue
        section = getattr(cfg, key, None)
        if not dataclasses.is_dataclass(section) or not isinstance(value, dict):
            raise EdgeFFError(f"{source}: unknown section or key [{key}]; allowed: name, "
                              "[model], [collab], [train], [eval]")
        known = {f.name for f in dataclasses.fields(section)}
        for k, v in value.items():
            where = f"{source} [{key}]"
            if k not in known:
                raise EdgeFFError(f"{where}: unknown key '{k}'; allowed: {', '.join(sorted(known))}")
            v = _check_type(where, k, v, getattr(section, k))
            choices = _CHOICES.get((key, k))
            if choices and v not in choices:
                raise EdgeFFError(f"{where}: '{k}' = {v!r} is not one of {', '.join(choices)}")
            setattr(section, k, v)
    if {"val_size", "val_fraction"} <= set(raw.get("train", {})):
        raise EdgeFFError(f"{source} [train]: give 'val_size' (a count) or 'val_fraction', not both")
    _validate(cfg, source)
    return cfg


def _validate(cfg: Config, source: str):
    m, t, e = cfg.model, cfg.train, cfg.eval
    if m.layers is not None:
        _validate_layered(cfg, source)
    elif m.sizes is None:
        raise EdgeFFError(f"{source}: [model] sizes is missing; every config names its network, e.g. "
                          "[model] sizes = [784, 500, 500] (input width, then hidden widths), or a layered "
                          "one with [model] layers and input_shape")
    elif not isinstance(m.sizes, list) or len(m.sizes) < 2 \
            or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in m.sizes):
        raise EdgeFFError(f"{source} [model]: 'sizes' must list the input width and at least one hidden "
                          f"width, all positive integers; got {m.sizes}")
    else:
        for key in ("input_shape", "objective"):
            if getattr(m, key) is not None:
                raise EdgeFFError(f"{source} [model]: '{key}' is for a layered network ([model] layers), "
                                  "not an MLP of sizes")
        if t.shift:
            raise EdgeFFError(f"{source} [train]: 'shift' moves images for a layered network ([model] layers); "
                              "an MLP of sizes sees no image layout")
    ms = t.milestones
    if not (isinstance(ms, list) and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in ms)
            and ms == sorted(set(ms))):
        raise EdgeFFError(f"{source} [train]: 'milestones' must list epochs (1 or more) in increasing order, "
                          f"got {t.milestones!r}")
    if not 0 <= t.shift <= 8:   # its type is checked with every key's
        raise EdgeFFError(f"{source} [train]: 'shift' must be a whole number of pixels from 0 to 8, got {t.shift!r}")
    if t.lr_factor <= 0:
        raise EdgeFFError(f"{source} [train]: 'lr_factor' must be positive")
    if t.chunk < 1 or (t.schedule == "overlapping" and t.chunk < 2):
        raise EdgeFFError(f"{source} [train]: 'chunk' must be at least 1 (2 for the overlapping schedule), "
                          f"got {t.chunk}")
    for section in (m, cfg.collab, t, e):   # TOML spells inf and nan; no setting means either
        for f in dataclasses.fields(section):
            value = getattr(section, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise EdgeFFError(f"{source}: '{f.name}' must be a finite number, got {value}")
    for key in ("epochs", "eval_every", "eval_samples"):
        if getattr(t, key) < 1:
            raise EdgeFFError(f"{source} [train]: '{key}' must be at least 1")
    if t.warmup_epochs < 0:
        raise EdgeFFError(f"{source} [train]: 'warmup_epochs' must be 0 or more, got {t.warmup_epochs}")
    if t.val_size < 0:
        raise EdgeFFError(f"{source} [train]: 'val_size' must be positive (or 0: use val_fraction)")
    if not 0 < t.val_fraction < 1:
        raise EdgeFFError(f"{source} [train]: 'val_fraction' must lie between 0 and 1, got {t.val_fraction}")
    if t.batch_size < 0 or (t.batch_size == 0 and t.protocol != "paper"):
        raise EdgeFFError(f"{source} [train]: 'batch_size' must be positive (0, full batch, is for "
                          "the paper protocol only)")
    for key in ("lr", "theta", "symba_alpha"):
        if getattr(t, key) <= 0:
            raise EdgeFFError(f"{source} [train]: '{key}' must be positive")
    if cfg.collab.gamma_lr <= 0:
        raise EdgeFFError(f"{source} [collab]: 'gamma_lr' must be positive")
    n = cfg.n_layers
    if cfg.collab.mode != "none" and n < 2:
        raise EdgeFFError(f"{source} [collab]: collaboration needs at least two hidden layers")
    if e.layers != "auto":
        e.layers = layer_list(f"{source} [eval]", "layers", e.layers, n)
    if e.head_layers is None:
        e.head_layers = [n] if cfg.layered else list(range(2, n + 1)) if n > 1 else [1]
    e.head_layers = layer_list(f"{source} [eval]", "head_layers", e.head_layers, n)
    if e.head_epochs < 0:
        raise EdgeFFError(f"{source} [eval]: 'head_epochs' must be 0 or more")


def _validate_layered(cfg: Config, source: str):
    """A layered network's keys: its layers chain from input_shape (checked by building the description)."""
    m = cfg.model
    if m.sizes is not None:
        raise EdgeFFError(f"{source} [model]: give 'sizes' (an MLP) or 'layers' (a layered network), not both")
    shape = m.input_shape
    if not (isinstance(shape, list) and len(shape) == 3
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in shape)):
        raise EdgeFFError(f"{source} [model]: a layered network needs 'input_shape' = [channels, height, width] "
                          f"of its images, e.g. [1, 28, 28]; got {shape!r}")
    if not (isinstance(m.layers, list) and m.layers):
        raise EdgeFFError(f"{source} [model]: 'layers' must be a non-empty list of layer tables")
    ModelDescription.chain(shape, m.layers, f"{source} [model] layers")
    if m.objective is None:
        m.objective = "cwc"
    if m.qat:
        raise EdgeFFError(f"{source} [model]: quantization-aware training of layered networks is not "
                          "supported yet; set qat = false")
    if cfg.collab.mode != "none":
        raise EdgeFFError(f"{source} [collab]: collaboration (CFF) is for MLPs; a layered network takes "
                          "mode = \"none\"")


def description_of(cfg: Config):
    """The model description of a layered config."""
    return ModelDescription.chain(cfg.model.input_shape, cfg.model.layers)


def load_config(path) -> Config:
    path = Path(path)
    if not path.is_file():
        raise EdgeFFError(f"{path}: no such config file (see models/ for examples)")
    raw = read_toml(path)
    raw.setdefault("name", path.stem)
    return config_from_dict(raw, source=str(path))
