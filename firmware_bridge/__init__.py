"""Host side of the board link (protocol, driver, virtual board, QEMU launcher) and its C firmware.

It depends on the runtime and the model file only, never on the torch trainer.
"""
