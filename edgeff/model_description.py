"""The model description: what a model file's network is, as an ordered list of typed layer specs.

A model file's header carries the network under "architecture": its kind (float or int8), the FF settings
(classes, label value, goodness, collaboration, which layers score) and, since model-file format 2, "layers":
one entry per layer ({"kind": "dense", ...}, "conv2d", "maxpool2d", "flatten"). Every layer kind has one frozen
spec class, in its op folder (edgeff/ops/<kind>/spec.py, found through edgeff.op_registry); a kind this EdgeFF
does not know is refused by name, so a file made for a newer layer kind (heads, say) never half-loads.

Format 1 stored the layers as `sizes` (input width, then each layer's width) plus one network-wide
`normalization`; `migrate_v1_architecture` turns that into the layer list, so old files keep loading.
"""
from dataclasses import MISSING, dataclass, fields
from enum import StrEnum

from edgeff.errors import EdgeFFError
from edgeff.op_registry import KINDS, facet, spec_class


class ModelKind(StrEnum):
    """The two kinds of model file; the stored strings are those of format 1."""

    FLOAT = "ff-mlp"
    INT8 = "ff-mlp-int8"


# the architecture keys derived from the layers, kept in memory for code that still reads sizes
DERIVED_KEYS = ("sizes", "normalization")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_layer(entry, where: str = "layer"):
    """The spec of one "layers" entry of a model-file header; unknown kinds and fields are refused by name."""
    if not isinstance(entry, dict):
        raise EdgeFFError(f"{where}: a layer must be a JSON object with a 'kind', got {entry!r}")
    kind = entry.get("kind")
    if kind not in KINDS:
        raise EdgeFFError(f"{where}: unknown layer kind {kind!r}; this EdgeFF knows {', '.join(KINDS)} "
                          "(a newer EdgeFF may have written the file: upgrade to read it)")
    spec = spec_class(kind)
    given = {k: v for k, v in entry.items() if k != "kind"}
    known = [f.name for f in fields(spec)]
    required = [f.name for f in fields(spec) if f.default is MISSING and f.default_factory is MISSING]
    unknown = sorted(set(given) - set(known))
    missing = sorted(name for name in required if name not in given)
    if unknown or missing:
        raise EdgeFFError(f"{where}: a {kind} layer takes {', '.join(known)}; "
                          + (f"unknown {unknown}" if unknown else f"missing {missing}"))
    try:
        return spec(**given)
    except EdgeFFError as exc:
        raise EdgeFFError(f"{where}: {exc}") from None


@dataclass(frozen=True)
class ModelDescription:
    """The ordered layers of a network; each layer's input is the previous layer's output: the same number
    of values, and the same (C, H, W) layout where both layers have one (a dense layer takes any layout
    flattened)."""

    layers: tuple

    def __post_init__(self):
        if not self.layers:
            raise EdgeFFError("a model description needs at least one layer")
        for i, (a, b) in enumerate(zip(self.layers[:-1], self.layers[1:], strict=True)):
            if a.n_outputs != b.n_inputs:
                raise EdgeFFError(f"layer {i + 1} takes {b.n_inputs} inputs, but layer {i} gives "
                                  f"{a.n_outputs}: each layer's inputs must be the previous layer's outputs")
            if len(b.in_shape) == 3 and a.out_shape != b.in_shape:
                raise EdgeFFError(f"layer {i + 1} takes activities of shape {b.in_shape}, but layer {i} gives "
                                  f"{a.out_shape}: each layer's input must have the previous layer's shape")

    @classmethod
    def chain(cls, input_shape, entries, where: str = "layers") -> "ModelDescription":
        """The description of a config's layer list: entries {"kind": ..., parameters} without their input
        size, which each layer takes from the one before it (the first from input_shape, e.g. (1, 28, 28))."""
        shape, specs = tuple(input_shape), []
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict) or entry.get("kind") not in KINDS:
                got = entry.get("kind") if isinstance(entry, dict) else entry
                raise EdgeFFError(f"{where}: layer {i + 1} must be a table with a 'kind' of {', '.join(KINDS)}, "
                                  f"got {got!r}")
            params = {k: v for k, v in entry.items() if k != "kind"}
            try:
                spec = spec_class(entry["kind"]).after(shape, **params)
            except TypeError as exc:   # an unknown or missing parameter of the kind
                raise EdgeFFError(f"{where}: layer {i + 1} ({entry['kind']}): {exc}") from None
            except EdgeFFError as exc:
                raise EdgeFFError(f"{where}: layer {i + 1}: {exc}") from None
            specs.append(spec)
            shape = spec.out_shape
        return cls(tuple(specs))

    @classmethod
    def dense(cls, sizes, normalization: str = "rms") -> "ModelDescription":
        """An FF MLP: input width sizes[0], one dense layer per further width."""
        dense = spec_class("dense")
        return cls(tuple(dense(a, b, normalization) for a, b in zip(sizes[:-1], sizes[1:], strict=True)))

    @classmethod
    def from_header(cls, layers, where: str = "model") -> "ModelDescription":
        if not (isinstance(layers, list) and layers):
            raise EdgeFFError(f"{where}: the architecture's 'layers' must be a non-empty list of layer specs, "
                              f"got {layers!r}; the file is corrupt")
        specs = tuple(parse_layer(entry, f"{where}: layer {i}") for i, entry in enumerate(layers))
        try:
            return cls(specs)
        except EdgeFFError as exc:
            raise EdgeFFError(f"{where}: {exc}") from None

    def to_header(self) -> list:
        return [layer.to_header() for layer in self.layers]

    @property
    def sizes(self) -> list:
        """Input width, then each layer's width (format 1's `sizes`)."""
        return [self.layers[0].n_inputs, *(layer.n_outputs for layer in self.layers)]

    @property
    def input_shape(self) -> tuple:
        return self.layers[0].in_shape

    @property
    def normalization(self):
        """The one normalization every normalizing layer shares (the FF networks of today have one); None
        for a network of conv blocks only (their BatchNorm is not this input normalization)."""
        kinds = {layer.normalization for layer in self.layers if hasattr(layer, "normalization")}
        if not kinds:
            return None
        if len(kinds) != 1:
            raise EdgeFFError(f"the layers normalize differently ({sorted(kinds)}); this EdgeFF runs one "
                              "normalization for the whole network")
        return kinds.pop()


def migrate_v1_architecture(arch: dict, where: str = "model") -> dict:
    """A format-1 architecture (sizes + one normalization, "rms" when absent) as format 2 (layers)."""
    sizes = arch.get("sizes")
    if not (isinstance(sizes, list) and len(sizes) >= 2 and all(_is_int(s) and s > 0 for s in sizes)):
        raise EdgeFFError(f"{where}: the architecture's 'sizes' must list the input width and the hidden widths "
                          f"as positive integers, got {sizes!r}; the file is corrupt")
    normalization = arch.get("normalization", "rms")
    normalizations = facet("dense", "spec").NORMALIZATIONS
    if not isinstance(normalization, str) or normalization not in normalizations:
        raise EdgeFFError(f"{where}: the architecture's 'normalization' must be one of {', '.join(normalizations)}, "
                          f"got {normalization!r}; the file is corrupt")
    rest = {k: v for k, v in arch.items() if k not in DERIVED_KEYS}
    return {**rest, "layers": ModelDescription.dense(sizes, normalization).to_header()}


def with_derived_keys(arch: dict, description: ModelDescription) -> dict:
    """The architecture as code reads it in memory: the stored one plus `sizes` and `normalization`."""
    return {**arch, "sizes": description.sizes, "normalization": description.normalization}


def stored_architecture(arch: dict, where: str = "model") -> dict:
    """The architecture as format 2 stores it: the layers, without the derived keys. An in-memory
    architecture that only has sizes (built from a board image, say) gets its layers from them."""
    if "layers" not in arch:
        return migrate_v1_architecture(arch, where)
    description = ModelDescription.from_header(arch["layers"], where)
    for key in DERIVED_KEYS:
        if key in arch and arch[key] != getattr(description, key):
            raise EdgeFFError(f"{where}: the architecture's {key!r} {arch[key]!r} disagrees with its layers "
                              f"({getattr(description, key)!r})")
    return {k: v for k, v in arch.items() if k not in DERIVED_KEYS}
