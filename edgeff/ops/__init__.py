"""One folder per layer kind, each holding that kind's code for every backend (see edgeff.op_registry)."""
