"""`faults://SPEC@URL`: the serial port at URL with bytes damaged on the host's side, both directions; what a
noisy UART does to a real board's line, for testing that a run survives it (as pyserial's spy:// wraps a port
to log it, this one wraps any pyserial URL to damage it).

SPEC is firmware_bridge.link_model.Faults' byte faults: corrupt, byte_drop, byte_duplicate, seed, e.g.
`faults://corrupt=0.003,byte_drop=0.001,seed=1@socket://127.0.0.1:5000`. Whole-frame faults (drop,
duplicate) are the virtual board's (`virtual://?faults=...`): a host-side wrapper sees bytes, not frames.
"""
import serial

from edgeff.errors import EdgeFFError
from firmware_bridge.link_model import Faults, LinkModel

SCHEME = "faults://"
FRAME_FAULTS = ("drop", "duplicate")


def split_url(url: str) -> tuple[Faults, str]:
    """(the byte faults, the URL they wrap) of a faults:// URL; EdgeFFError naming what is wrong."""
    spec, at, inner = url.removeprefix(SCHEME).partition("@")
    if not url.startswith(SCHEME) or not at or not inner:
        raise EdgeFFError(f"{url!r}: write a fault-injecting port as faults://SPEC@URL, e.g. "
                          "faults://corrupt=0.003,seed=1@socket://127.0.0.1:5000")
    faults = Faults.parse(spec)
    frame = [name for name in FRAME_FAULTS if getattr(faults, name)]
    if frame:
        raise EdgeFFError(f"{url!r}: {', '.join(frame)} are frame faults, which only a virtual board emulates "
                          "(virtual://?faults=...); faults:// damages bytes: corrupt, byte_drop, byte_duplicate")
    return faults, inner


class Serial(serial.SerialBase):
    """The wrapped port; each direction has its own seeded fault stream."""

    def open(self):
        if self._port is None:
            raise serial.SerialException("the port must be configured before it is opened")
        try:
            faults, inner_url = split_url(self._port)
        except EdgeFFError as exc:
            raise ValueError(str(exc)) from None     # what pyserial raises for a URL it cannot parse
        self._rx = LinkModel(faults=faults)
        self._tx = LinkModel(faults=Faults(**{**vars(faults), "seed": faults.seed + 1}))
        self._inner = serial.serial_for_url(inner_url, baudrate=self._baudrate, timeout=self._timeout)
        self.is_open = True

    def close(self):
        if self.is_open:
            self._inner.close()
            self.is_open = False

    def _reconfigure_port(self, force_update=False):
        """Baud rate and timeouts are the wrapped port's, set when it opens."""

    def read(self, size=1) -> bytes:
        if not self.is_open:
            raise serial.PortNotOpenError()
        return self._rx.damage(self._inner.read(size))

    def write(self, data) -> int:
        if not self.is_open:
            raise serial.PortNotOpenError()
        self._inner.write(self._tx.damage(bytes(data)))
        return len(data)

    @property
    def in_waiting(self) -> int:
        return self._inner.in_waiting

    def reset_input_buffer(self):
        self._inner.reset_input_buffer()

    def reset_output_buffer(self):
        self._inner.reset_output_buffer()
