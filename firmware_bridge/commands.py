"""`edgeff board ...`: what each board subcommand does (the parser lives in edgeff/cli.py)."""
import json
import signal
import sys
from contextlib import contextmanager
from pathlib import Path

from edgeff.atomic_write import check_out_path
from edgeff.cli import print_result, progress_off
from edgeff.errors import EdgeFFError
from firmware_bridge.driver import BoardLink
from firmware_bridge.emulator import EmulatedBoard
from firmware_bridge.link_model import Faults
from firmware_bridge.virtual_board import VirtualBoard, serve_virtual_board

VIRTUAL = "virtual"
EMULATE = "emulate"


@contextmanager
def open_board(args):
    """A BoardLink to --port; `--port virtual` starts a virtual board and `--port emulate` the board firmware
    in QEMU for the duration of the command."""
    link_options = dict(timeout=args.timeout, baud=args.baud or 115200, max_payload=args.max_payload)
    if args.port == EMULATE:
        with EmulatedBoard() as board:
            try:
                with BoardLink(board.url, **link_options) as link:
                    yield link
            except EdgeFFError:
                if board.stopped():            # the link failed because QEMU is gone: say that
                    raise EdgeFFError(board.stopped()) from None
                raise
        return
    if args.port != VIRTUAL:
        with BoardLink(args.port, **link_options) as link:
            yield link
        return
    with VirtualBoard(args.storage, profile=args.profile, baud=args.baud) as board, \
            BoardLink(board.url, **link_options) as link:
        yield link


def cmd_info(args):
    with open_board(args) as link:
        info, metrics = link.info, link.metrics()
    payload = {**vars(info), "board_versions": list(info.board_versions), "metrics": metrics}
    model = (f"a model of {info.image_bytes} bytes, run {info.run_id:#010x}, {info.applied} samples applied "
             f"({info.checkpoint_applied} checkpointed)" if info.model_loaded else "no model")
    print_result(args, payload, f"{info.name} ({info.firmware}), protocol v{info.version}, frames up to "
                          f"{info.max_payload} B\nmemory: {info.sram_budget} B SRAM for models "
                          f"({info.sram_free} B free), {info.flash_budget} B flash\nholds {model}")


def cmd_train(args, training_config, dataset_of):
    from edgeff.model_file import load_model
    from firmware_bridge.board_training import SampleStream, save_pulled_model, train_on_board

    check_out_path(args.out, inputs=[args.model])
    _, header = load_model(args.model)
    data = dataset_of(header, args.data_dir)
    stream = SampleStream(data.train.images, data.train.labels, min(args.samples or len(data.train),
                          len(data.train)), args.epochs, args.seed, args.host_negatives,
                          header["architecture"]["n_classes"])
    with open_board(args) as link:
        result = train_on_board(link, args.model, stream, training_config, args.checkpoint_every,
                                quiet=progress_off(args), checkpoints_outlive=args.port != EMULATE)
    save_pulled_model(result.pop("image"), args.out, args.model,
                      {"config": vars(training_config), "on_board": {"samples": len(stream), "port": args.port}})
    result["model"] = str(args.out)
    compute = result["board_compute_us_per_sample"]
    compute = "none: the board already held the finished run" if compute is None else f"{compute:.0f} us per sample"
    print_result(args, result, f"trained {result['samples']} samples in {result['seconds']:.1f} s "
                         f"({result['samples_per_s']:.1f} samples/s; board compute {compute}); wrote {args.out}")


def cmd_pull(args):
    from firmware_bridge.board_training import save_pulled_model

    check_out_path(args.out, inputs=[args.model])
    with open_board(args) as link:
        if not link.info.model_loaded:
            raise EdgeFFError(f"{link.info.name} holds no model; load one with `edgeff board train`")
        image = link.read_image()
    save_pulled_model(image, args.out, args.model)
    print_result(args, {"model": str(args.out), "bytes": len(image)},
                 f"wrote {args.out} ({len(image)} bytes from the board)")


def cmd_virtual(args):
    if args.max_payload is not None and not 64 <= args.max_payload <= 65535:
        raise EdgeFFError("--max-payload must be between 64 and 65535 bytes")
    serve_virtual_board(args.profile, args.storage, None if args.pty else args.listen, args.pty, args.baud,
                        Faults.parse(args.faults), args.max_payload or 4096,
                        announce=lambda url: _announce(args, url))


def _announce(args, url: str):
    """The URL a running board listens on: a line, or with --json one JSON document (stdout stays open)."""
    print(json.dumps({"url": url}) if args.json else url, flush=True)


def cmd_emulate(args):
    header = None
    if args.model_header:
        try:
            header = Path(args.model_header).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise EdgeFFError(f"--model-header {args.model_header}: cannot read it ({exc})") from None
        if "board_model[]" not in header:
            raise EdgeFFError(f"--model-header {args.model_header}: not a board header; write one with "
                              "`edgeff export MODEL_INT8 --format board-header --out board_model.h`")
    with EmulatedBoard(args.listen, header) as board:
        if header:
            with BoardLink(board.url) as link:
                if not link.info.model_loaded:
                    raise EdgeFFError(f"the firmware refused the model in {args.model_header} (larger than its "
                                      f"{link.info.sram_budget} B of model RAM, or not a valid board image)")
        _announce(args, board.url)
        # stopped by SIGTERM too (a service manager, a test): leave through the `with`, which stops QEMU;
        # Python's default SIGTERM exit would leave QEMU running without its parent
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        try:
            board.process.wait()
        except KeyboardInterrupt:
            return
        raise EdgeFFError(board.stopped())
