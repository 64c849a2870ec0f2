"""The virtual board: BoardCore behind a real pty or TCP socket, in its own process.

`edgeff board virtual` runs serve_virtual_board in the foreground and prints the pyserial URL the host
opens (`socket://127.0.0.1:PORT` or `/dev/pts/N`) as its first line of output. VirtualBoard starts one in
a child process, as the pipeline and the tests do, and can kill and restart it to play a board reset.
The link model on the board's side of the connection emulates a baud rate and line faults.
"""
import os
import queue
import socket
import subprocess
import sys
import threading
import time
import tty
from pathlib import Path

from edgeff.errors import EdgeFFError
from edgeff.profiler.hw_profile import load_profile
from firmware_bridge.board import BoardCore
from firmware_bridge.framing import FrameDecoder
from firmware_bridge.link_model import Faults, LinkModel

READ_BYTES = 65536


def serve_link(core: BoardCore, read, write, link: LinkModel):
    """Answer frames until read() reports the end of the connection (b""). A thread receives while the
    core computes, as a UART's interrupt does, and stamps each piece with when it came."""
    received = queue.Queue()

    def receive():
        try:
            while data := read():
                received.put((data, time.monotonic()))
            received.put((b"", 0.0))
        except OSError as exc:       # a pty whose other side closed: raised where the board serves
            received.put((exc, 0.0))

    threading.Thread(target=receive, daemon=True).start()
    decoder = FrameDecoder(core.max_payload)
    while True:
        data, came_at = received.get()
        if isinstance(data, OSError):
            raise data
        if not data:
            return
        link.wait_for_wire(len(data), "in", came_at)
        for item in decoder.feed(link.damage(data)):
            for _ in range(link.copies()):
                reply = core.handle(item)
                for _ in range(link.copies()):
                    link.wait_for_wire(len(reply), "out")
                    write(link.damage(reply))


def _socket_reader(conn):
    def read():
        try:
            return conn.recv(READ_BYTES)
        except OSError:              # reset by the peer: the same as a closed connection
            return b""
    return read


def _socket_writer(conn):
    def write(data):
        try:
            conn.sendall(data)
        except OSError:              # the host went away mid-reply; its next connection starts clean
            pass
    return write


def serve_virtual_board(profile_name: str, storage, listen: str | None = "127.0.0.1:0", use_pty=False,
                        baud=None, faults: Faults | None = None, max_payload=4096, announce=print):
    """Run a virtual board until killed; announce(url) once it can be opened."""
    core = BoardCore(load_profile(profile_name), storage, max_payload=max_payload)
    link = LinkModel(baud, faults)
    if core.boot_error:
        print(f"edgeff board virtual: {core.boot_error}", file=sys.stderr)
    if use_pty:
        master, slave = os.openpty()
        tty.setraw(slave)            # no echo, no line discipline: bytes pass unchanged
        announce(os.ttyname(slave))
        serve_link(core, lambda: os.read(master, READ_BYTES), lambda data: os.write(master, data), link)
        return
    host, port = _host_port(listen)
    with socket.create_server((host, port)) as server:
        announce(f"socket://{host}:{server.getsockname()[1]}")
        while True:
            conn, _ = server.accept()
            with conn:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                serve_link(core, _socket_reader(conn), _socket_writer(conn), link)


def _host_port(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit() or int(port) > 65535:
        raise EdgeFFError(f"--listen {listen!r}: give HOST:PORT, e.g. 127.0.0.1:5555 (port 0 picks a free one)")
    return host, int(port)


class VirtualBoard:
    """A virtual board in a child process: `with VirtualBoard(storage) as board: use(board.url)`.
    restart() kills it (a power cut: what was not checkpointed is lost) and starts it again on the same
    URL with the same storage."""

    START_TIMEOUT_S = 60

    def __init__(self, storage, profile="nrf52840", use_pty=False, baud=None, faults: str = "",
                 max_payload=4096, listen="127.0.0.1:0"):
        self.storage = Path(storage)
        self.storage.mkdir(parents=True, exist_ok=True)
        self.options = ["--profile", profile, "--storage", str(self.storage), "--max-payload", str(max_payload)]
        self.options += ["--pty"] if use_pty else ["--listen", listen]
        self.options += (["--baud", str(baud)] if baud else []) + (["--faults", faults] if faults else [])
        self.process, self.url = None, None
        self.start()

    def start(self):
        options = list(self.options)
        if self.url and self.url.startswith("socket://"):      # come back on the same port
            options[options.index("--listen") + 1] = self.url.removeprefix("socket://")
        log = open(self.storage / "board.log", "ab")  # noqa: SIM115 (the child keeps it open)
        self.process = subprocess.Popen([sys.executable, "-m", "edgeff", "board", "virtual", *options],
                                        stdout=subprocess.PIPE, stderr=log, text=True)
        log.close()
        deadline = time.monotonic() + self.START_TIMEOUT_S
        line = self.process.stdout.readline().strip()
        while not line and self.process.poll() is None and time.monotonic() < deadline:
            line = self.process.stdout.readline().strip()
        if not line:
            self.stop()
            tail = (self.storage / "board.log").read_text(errors="replace").strip().splitlines()[-3:]
            raise EdgeFFError("the virtual board did not start: " + (" / ".join(tail) or "no output"))
        self.url = line

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def restart(self):
        self.stop()
        self.start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
