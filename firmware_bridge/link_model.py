"""What a real serial link does to bytes, emulated on the virtual board's side of it.

A baud rate (each byte takes 10 bit times: start, 8 data, stop) and faults, in both directions: each byte
corrupted, lost or delivered twice with a probability (what a noisy UART or an overrun does), whole frames
lost or delivered twice (what a retransmitting layer in between does). Seeded, so a faulty run can be
repeated.
"""
import time
from dataclasses import dataclass, fields

import numpy as np

from edgeff.errors import EdgeFFError

BITS_PER_BYTE = 10


@dataclass
class Faults:
    corrupt: float = 0.0          # probability that a byte is replaced by another value
    byte_drop: float = 0.0        # probability that a byte is lost
    byte_duplicate: float = 0.0   # probability that a byte arrives twice
    drop: float = 0.0             # probability that a frame is lost
    duplicate: float = 0.0        # probability that a frame arrives twice
    seed: int = 0

    @classmethod
    def parse(cls, text: str) -> "Faults":
        """'corrupt=0.01,byte_drop=0.01,byte_duplicate=0.01,drop=0.02,duplicate=0.02,seed=3' (any subset)."""
        faults, names = cls(), [f.name for f in fields(cls)]
        for item in filter(None, text.split(",")):
            key, _, value = item.partition("=")
            if key not in names:
                raise EdgeFFError(f"--faults: unknown fault '{key}'; use {', '.join(names)}")
            try:
                number = int(value) if key == "seed" else float(value)
            except ValueError:
                raise EdgeFFError(f"--faults: '{item}' needs a number after '='") from None
            if key != "seed" and not 0.0 <= number < 1.0:
                raise EdgeFFError(f"--faults: {key} is a probability in [0, 1); got {number}")
            setattr(faults, key, number)
        if faults.byte_drop + faults.byte_duplicate >= 1.0 or faults.drop + faults.duplicate >= 1.0:
            raise EdgeFFError("--faults: a byte (or frame) is lost or doubled with probabilities that sum to 1 or more")
        return faults


class LinkModel:
    def __init__(self, baud: int | None = None, faults: Faults | None = None):
        if baud is not None and baud <= 0:
            raise EdgeFFError(f"--baud must be positive; got {baud}")
        self.baud, self.faults = baud, faults or Faults()
        self.rng = np.random.default_rng(self.faults.seed)
        self.uniforms, self.used = np.empty(0), 0      # the seeded stream, drawn ahead in blocks
        self.busy_until = {"in": 0.0, "out": 0.0}      # a UART is full duplex: a clock each way

    def wait_for_wire(self, n_bytes: int, direction: str, sent_at: float | None = None):
        """Sleep until n_bytes more could have crossed a link of this baud rate in `direction` ("in" to the
        board, "out" from it), the first of them sent at `sent_at` (default now); no-op when unthrottled.
        Bytes come in while the board computes (a UART receives by interrupt), so received bytes are
        timed from when they reached the board's side, not from when it got round to them."""
        if self.baud is None:
            return
        now = time.monotonic()
        start = max(self.busy_until[direction], now if sent_at is None else sent_at)
        self.busy_until[direction] = start + n_bytes * BITS_PER_BYTE / self.baud
        if self.busy_until[direction] > now:
            time.sleep(self.busy_until[direction] - now)

    def _next_uniforms(self, n: int) -> np.ndarray:
        """The next n numbers of the seeded uniform stream. Drawn ahead in blocks: the line model runs on
        every frame in both directions, and a draw per frame cost more than a real line's bytes do."""
        if self.used + n > len(self.uniforms):
            self.uniforms = np.concatenate([self.uniforms[self.used:], self.rng.random(max(n, 1 << 16))])
            self.used = 0
        self.used += n
        return self.uniforms[self.used - n:self.used]

    def damage(self, data: bytes) -> bytes:
        """The bytes as they arrive: some replaced, lost or doubled."""
        f = self.faults
        if not (f.corrupt or f.byte_drop or f.byte_duplicate):
            return data
        u = self._next_uniforms(2 * len(data))
        hit, r = u[:len(data)] < f.corrupt, u[len(data):]
        lost_or_twice = r < f.byte_drop + f.byte_duplicate
        if not (hit.any() or lost_or_twice.any()):
            return data
        out = np.frombuffer(data, np.uint8).copy()
        out[hit] ^= (1 + self._next_uniforms(int(hit.sum())) * 255).astype(np.uint8)     # 1..255: a change
        copies = np.where(r < f.byte_drop, 0, np.where(lost_or_twice, 2, 1))
        return np.repeat(out, copies).tobytes()

    def copies(self) -> int:
        """How many times the next frame is delivered: 0 (dropped), 1, or 2 (duplicated)."""
        r = self._next_uniforms(1)[0]
        if r < self.faults.drop:
            return 0
        return 2 if r < self.faults.drop + self.faults.duplicate else 1
