"""What a real serial link does to bytes, emulated on the virtual board's side of it.

A baud rate (each byte takes 10 bit times: start, 8 data, stop) and faults: each byte corrupted with a
probability, whole frames dropped or delivered twice. Seeded, so a faulty run can be repeated.
"""
import random
import time
from dataclasses import dataclass

from edgeff.errors import EdgeFFError

BITS_PER_BYTE = 10


@dataclass
class Faults:
    corrupt: float = 0.0       # probability that a byte is replaced by another value
    drop: float = 0.0          # probability that a frame is lost
    duplicate: float = 0.0     # probability that a frame arrives twice
    seed: int = 0

    @classmethod
    def parse(cls, text: str) -> "Faults":
        """'corrupt=0.01,drop=0.02,duplicate=0.02,seed=3' (any subset)."""
        faults = cls()
        for item in filter(None, text.split(",")):
            key, _, value = item.partition("=")
            if key not in ("corrupt", "drop", "duplicate", "seed"):
                raise EdgeFFError(f"--faults: unknown fault '{key}'; use corrupt, drop, duplicate and seed")
            try:
                number = int(value) if key == "seed" else float(value)
            except ValueError:
                raise EdgeFFError(f"--faults: '{item}' needs a number after '='") from None
            if key != "seed" and not 0.0 <= number < 1.0:
                raise EdgeFFError(f"--faults: {key} is a probability in [0, 1); got {number}")
            setattr(faults, key, number)
        return faults


class LinkModel:
    def __init__(self, baud: int | None = None, faults: Faults | None = None):
        if baud is not None and baud <= 0:
            raise EdgeFFError(f"--baud must be positive; got {baud}")
        self.baud, self.faults = baud, faults or Faults()
        self.rng = random.Random(self.faults.seed)
        self.busy_until = 0.0

    def wait_for_wire(self, n_bytes: int):
        """Sleep until n_bytes more could have crossed a link of this baud rate (no-op when unthrottled)."""
        if self.baud is None:
            return
        now = time.monotonic()
        self.busy_until = max(self.busy_until, now) + n_bytes * BITS_PER_BYTE / self.baud
        if self.busy_until > now:
            time.sleep(self.busy_until - now)

    def corrupt(self, data: bytes) -> bytes:
        p = self.faults.corrupt
        if p == 0.0:
            return data
        out = bytearray(data)
        for i in range(len(out)):
            if self.rng.random() < p:
                out[i] ^= self.rng.randrange(1, 256)
        return bytes(out)

    def copies(self) -> int:
        """How many times the next frame is delivered: 0 (dropped), 1, or 2 (duplicated)."""
        r = self.rng.random()
        if r < self.faults.drop:
            return 0
        return 2 if r < self.faults.drop + self.faults.duplicate else 1
