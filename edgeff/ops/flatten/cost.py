"""Flatten's cost for the profiler: nothing but a view. No parameters, no arithmetic, no copy (torch and an
int8 runtime alike read the previous layer's buffer in place), so every figure is zero."""


def float32_memory(spec, method: str, batch: int) -> dict:
    return {"weights": 0, "update_state": 0, "gradients": 0, "activations": 0, "scratch": 0}


def float32_saved(spec, batch: int, input_grad: bool, input_saved: bool) -> tuple[dict, bool]:
    """Nothing saved; the output is a view of the input, so it is saved exactly when the input is."""
    return {}, input_saved


def float32_backward(spec, batch: int, input_grad: bool) -> int:
    return 0


def gradient_elements(spec) -> tuple[int, int]:
    return 0, 0


def int8_backprop_memory(spec, batch: int) -> dict:
    return {"activations": 0, "gradients": 0}


def int8_ff_memory(spec, batch: int) -> dict:
    return {"activations": 0, "scratch": 0, "gradients": 0}


def int8_parameters(spec) -> dict:
    return {"weights": 0, "update_state": 0, "constants": 0}


def inference_memory(spec) -> dict:
    return {"flash": 0, "sram": 0}


def operation_counts(spec, workload: str, first: bool, n_classes: int, precision: str) -> dict:
    return {"macs": 0, "updates": 0, "neuron_updates": 0, "sram_bytes": 0, "flash_bytes": 0}
