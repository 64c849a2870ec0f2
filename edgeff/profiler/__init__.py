"""The profiler: memory and energy of FF training and inference per layer, on a chosen board, next to
backprop. `hw_profile` reads the boards, `memory_model` and `energy_model` compute from each layer's cost
facet (`layers` walks the model description), `memory_measure` measures the integer runtime's host training
peak (torch's is the trainer's: edgeff/train/torch_memory.py), `profile_report` puts it together for
`edgeff profile`."""
