"""Board ports chosen by URL, as pyserial chooses its transports:

- `virtual://[?profile=NAME&storage=DIR&baud=N&faults=SPEC]`: a virtual board started for the command (the
  integer runtime behind the serial protocol; SPEC as `edgeff board virtual --faults`);
- `qemu://[BOARD]`: EdgeFF's board firmware on a QEMU-emulated board for the command (BOARD: a profile with a
  [firmware] table, mps2-an386 when left out; mps2-an500, netduinoplus2);
- `faults://SPEC@URL`: any port here with bytes damaged on the host's side (serial_handlers/protocol_faults.py);
- anything else: a pyserial URL or device (`/dev/ttyACM0`, `socket://HOST:PORT`, `rfc2217://...`).
"""
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from edgeff.errors import EdgeFFError
from edgeff.profiler.hw_profile import firmware_profile_names
from firmware_bridge.driver import BoardLink
from firmware_bridge.serial_handlers.protocol_faults import SCHEME as FAULTS
from firmware_bridge.serial_handlers.protocol_faults import split_url

VIRTUAL = "virtual://"
QEMU = "qemu://"
RENAMED = {"virtual": VIRTUAL, "emulate": QEMU}   # the special strings --port took before URLs
VIRTUAL_OPTIONS = ("profile", "storage", "baud", "faults")


@dataclass
class VirtualDefaults:
    """What a virtual:// board is made of where its URL does not say (the command's options)."""
    profile: str = "nrf52840"
    storage: str = "runs/virtual-board"
    baud: int | None = None


def checkpoints_outlive(url: str) -> bool:
    """Whether the board at url keeps its checkpoints after the command: not an emulated board started for
    the command, whose memory goes with its QEMU."""
    inner = split_url(url)[1] if url.startswith(FAULTS) else url
    return not inner.startswith(QEMU)


def check_url(url: str):
    """Refuse, with the new spelling, the special strings --port took before URLs."""
    if url in RENAMED:
        raise EdgeFFError(f"--port {url} is now spelled {RENAMED[url]} (board ports are URLs: virtual://, qemu://, "
                          "faults://SPEC@URL, or a pyserial URL or device)")


def _virtual_board(url: str, defaults: VirtualDefaults):
    from firmware_bridge.virtual_board import VirtualBoard

    parts = urlsplit(url)
    if parts.netloc or parts.path:
        raise EdgeFFError(f"{url!r}: a virtual board's options go in the query, e.g. virtual://?profile=rp2040")
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = sorted(set(options) - set(VIRTUAL_OPTIONS))
    if unknown:
        raise EdgeFFError(f"{url!r}: unknown option(s) {', '.join(unknown)}; a virtual:// URL takes "
                          f"{', '.join(VIRTUAL_OPTIONS)}")
    baud = options.get("baud", defaults.baud)
    try:
        baud = None if baud is None else int(baud)
    except ValueError:
        raise EdgeFFError(f"{url!r}: baud={baud!r} is not a whole number") from None
    return VirtualBoard(options.get("storage", defaults.storage), profile=options.get("profile", defaults.profile),
                        baud=baud, faults=options.get("faults", ""))


def _emulated_board(url: str):
    from firmware_bridge.emulator import DEFAULT_BOARD, EmulatedBoard, target_of

    boards = firmware_profile_names()
    board = urlsplit(url).netloc or DEFAULT_BOARD
    if board not in boards or urlsplit(url).path or urlsplit(url).query:
        raise EdgeFFError(f"{url!r}: the emulated boards are {', '.join(QEMU + b for b in boards)} "
                          f"({QEMU} alone is {QEMU}{DEFAULT_BOARD})")
    return EmulatedBoard(target=target_of(board))


@contextmanager
def open_board(url: str, defaults: VirtualDefaults | None = None, **link_options):
    """A BoardLink to the board at url for the `with` block, starting (and then stopping) the virtual or
    emulated board a virtual:// or qemu:// URL names. link_options go to BoardLink."""
    check_url(url)
    wrap = ""
    if url.startswith(FAULTS):
        wrap, url = url[:len(url) - len(split_url(url)[1])], split_url(url)[1]
        check_url(url)
    if url.startswith(QEMU):
        with _emulated_board(url) as board:
            try:
                with BoardLink(wrap + board.url, **link_options) as link:
                    yield link
            except EdgeFFError:
                if board.stopped():            # the link failed because QEMU is gone: say that
                    raise EdgeFFError(board.stopped()) from None
                raise
        return
    if url.startswith(VIRTUAL):
        with _virtual_board(url, defaults or VirtualDefaults()) as board, \
                BoardLink(wrap + board.url, **link_options) as link:
            yield link
        return
    with BoardLink(wrap + url, **link_options) as link:
        yield link
