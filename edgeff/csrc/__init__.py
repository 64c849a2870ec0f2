"""The C99 sources both builds take: the runtime's host build (runtime/c_kernels.py) and the board
firmware (firmware_bridge/emulator.py). They sit below every Python layer and belong to neither side.

kernels/   the integer kernels (one file per kernel family) and the FF layer, training and inference steps
protocol/  the board side of the serial protocol (framing, board image, request handling) and the host
           harnesses that test it (host_board.c, fuzz_protocol.c)
"""
from pathlib import Path

KERNELS = Path(__file__).resolve().parent / "kernels"
PROTOCOL = Path(__file__).resolve().parent / "protocol"
