"""`edgeff board ...`: talk to a board over serial (info, on-device training, pulling the model back), or run a
virtual or emulated board. Boards are reached by URL (firmware_bridge/ports.py)."""
import json
import signal
import sys
from pathlib import Path

from edgeff.app.options import (
    NOTHING_WRITTEN,
    HelpWithDefaults,
    add_command,
    at_least,
    data_dir_option,
    dataset_of,
    json_flag,
    print_result,
    progress_off,
    training_config,
    training_options,
)
from edgeff.atomic_write import check_out_path
from edgeff.errors import EdgeFFError


def _train_interrupted(args) -> str:
    if args.port.startswith("qemu://"):
        return ("interrupted; the emulated board's checkpoints lived in QEMU's memory and are gone with it: running "
                "the same command again starts from sample 0 (to keep a board between runs, start one with "
                "`edgeff board emulate` and pass its URL to --port)")
    return ("interrupted; the board keeps its last checkpoint (taken every --checkpoint-every samples) if it has "
            "storage: running the same command again goes on from there")


def register(sub):
    sp = add_command(sub, "board", "Talk to a board over serial: info, on-device training, pulling the model back; "
                                   "or run a virtual board.", run=None)   # each BOARD_COMMAND sets its own
    board = sp.add_subparsers(dest="board_command", required=True, metavar="BOARD_COMMAND")

    def board_sub(name, help_text, link=True, virtual=True, interrupted=NOTHING_WRITTEN):
        bp = board.add_parser(name, help=help_text, description=help_text, formatter_class=HelpWithDefaults)
        bp.set_defaults(interrupted=interrupted)
        if virtual:   # what a virtual board (started by --port virtual://, or `board virtual`) is made of
            bp.add_argument("--profile", default="nrf52840",
                            help="hardware profile (memory budget) of a virtual board (default: %(default)s)")
            bp.add_argument("--storage", default="runs/virtual-board",
                            help="a virtual board's flash: where its checkpoint lives (default: %(default)s)")
            bp.add_argument("--baud", type=at_least(1), help="emulate (virtual board) or expect this baud rate; "
                                                             "default: unthrottled virtual board, 115200 for timeouts")
            bp.add_argument("--max-payload", type=at_least(1),
                            help="largest frame payload in bytes (default: the board's)")
        if link:
            bp.add_argument("--port", default="virtual://",
                            help="board URL: virtual:// (default; a virtual board for this command, options in "
                                 "its query: virtual://?profile=rp2040&faults=drop=0.02), qemu://[BOARD] (the "
                                 "board firmware on an emulated board: mps2-an386, the default, mps2-an500 or "
                                 "netduinoplus2), faults://SPEC@URL (bytes damaged on the host's "
                                 "side), or a pyserial URL or device: /dev/ttyACM0, socket://HOST:PORT")
            bp.add_argument("--timeout", type=float, default=0.5,
                            help="seconds to wait for a request type's first reply before resending; later "
                                 "waits follow the round trips measured (default: %(default)s)")
        json_flag(bp)
        return bp

    bp = board_sub("info", "What the board is, its memory, the model and run it holds, its counters.")
    bp.set_defaults(func=run_info)
    bp = board_sub("train", "Stream training samples to the board, which trains with the integer rule; "
                            "resumes a run the board holds; pulls the trained model into --out.",
                   interrupted=_train_interrupted)
    bp.set_defaults(func=run_train)
    bp.add_argument("--model", required=True, help="int8 model file to load onto the board: an FF MLP, or a layered "
                                                   "(conv) CwC model for a board whose INFO lists model format 2")
    bp.add_argument("--out", required=True, help="int8 model file to write with the board's trained weights")
    # a plain int: a bad K is refused by the trainer in one line that names the model's trainable layers
    bp.add_argument("--last-k", type=int, help="layered (conv) models: train the last K trainable blocks, the "
                                               "earlier ones frozen (default: every block)")
    bp.add_argument("--samples", type=at_least(1), help="training samples per epoch (default: all)")
    bp.add_argument("--epochs", type=at_least(1), default=1, help="passes over the samples")
    bp.add_argument("--host-negatives", action="store_true",
                    help="send a random wrong label with each sample (default: the board draws negatives; FF "
                         "MLPs only: a layered CwC model trains without negatives)")
    bp.add_argument("--checkpoint-every", type=at_least(1), default=1000,
                    help="samples between board checkpoints (default: %(default)s)")
    bp.add_argument("--one-at-a-time", action="store_true",
                    help="wait for each reply before the next request (default: several in flight, up to the "
                         "board's max payload of bytes; for a board that cannot buffer that much while it trains)")
    training_options(bp)
    data_dir_option(bp)
    bp = board_sub("scenario", "On-device learning a user can see: the host trains the board-sized network on "
                               "part of the data, the board learns what the host never saw from a stream "
                               "(new-classes: two classes it never had; drift: a shifted sensor), and the "
                               "report shows accuracy before, along and after (docs/on_device_learning.md).",
                   interrupted=_train_interrupted)
    bp.set_defaults(func=run_scenario)
    bp.add_argument("name", choices=["new-classes", "drift"], help="the scenario")
    bp.add_argument("--out", required=True, help="folder for the host's model, the trained one, the report "
                                                 "(scenario.json) and the curve (scenario.png)")
    bp.add_argument("--samples", type=at_least(1), default=6000, help="samples streamed to the board")
    bp.add_argument("--host-epochs", type=at_least(1), default=5, help="epochs of the host's training")
    bp.add_argument("--new", default="8,9", help="new-classes: the classes the host never sees (comma-separated)")
    bp.add_argument("--replay", type=at_least(0), default=600,
                    help="new-classes: images of the earlier classes in the replay buffer (0: none)")
    bp.add_argument("--replay-ratio", type=at_least(1), default=3,
                    help="new-classes: replayed images per new one in the stream")
    bp.add_argument("--shift", choices=["exposure", "mount"], default="exposure",
                    help="drift: exposure (gain 0.6, offset +60) or mount (12 degrees off, read noise 20/255)")
    data_dir_option(bp)
    bp = board_sub("pull", "Read the board's current model (weights, master weights, step) into a model file.")
    bp.set_defaults(func=run_pull)
    bp.add_argument("--out", required=True, help="int8 model file to write")
    bp.add_argument("--model", help="the model file the board was loaded from: its header (data split, scales, "
                                    "history) is carried over (needed for a layered CwC model, whose image has "
                                    "no float scales)")
    bp = board_sub("virtual", "Run a virtual board (the integer runtime behind the serial protocol) until "
                              "killed; prints the URL to open.", link=False,
                   interrupted="virtual board stopped; its flash (the last checkpoint) stays in --storage")
    bp.set_defaults(func=run_virtual)
    bp.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT of its socket (default: %(default)s, a "
                                                            "free port)")
    bp.add_argument("--pty", action="store_true", help="speak over a pseudo-terminal instead of a socket")
    bp.add_argument("--faults", default="", help="line faults to emulate, e.g. corrupt=0.01,drop=0.02,"
                                                 "duplicate=0.02,seed=1")
    bp = board_sub("emulate", "Build the board firmware if needed and run it on a QEMU-emulated board until "
                              "killed; prints the pyserial URL of its UART.", link=False, virtual=False)
    bp.set_defaults(func=run_emulate)
    bp.add_argument("--board", default="mps2-an386",
                    help="the emulated board: a hardware profile with a [firmware] table (mps2-an386: Cortex-M4, "
                         "mps2-an500: Cortex-M7, netduinoplus2: STM32F405; default: %(default)s)")
    bp.add_argument("--listen", type=int, help="TCP port of its UART on 127.0.0.1 (default: a free one)")
    bp.add_argument("--model-header", help="compile this model in (`edgeff export MODEL_INT8 --format board-header`): "
                                           "the board starts with it loaded")


def _open_board(args):
    from firmware_bridge.ports import VirtualDefaults, open_board

    return open_board(args.port, VirtualDefaults(args.profile, args.storage, args.baud), timeout=args.timeout,
                      baud=args.baud or 115200, max_payload=args.max_payload)


def run_info(args):
    from firmware_bridge.driver import formats_text
    from firmware_bridge.messages import formats_in

    with _open_board(args) as link:
        info, metrics = link.info, link.metrics()
    payload = {**vars(info), "board_versions": list(info.board_versions),
               "model_formats": formats_in(info.model_format), "metrics": metrics}
    model = (f"a model of {info.image_bytes} bytes, run {info.run_id:#010x}, {info.applied} samples applied "
             f"({info.checkpoint_applied} checkpointed)" if info.model_loaded else "no model")
    print_result(args, payload, f"{info.name} ({info.firmware}), protocol v{info.version}, frames up to "
                                f"{info.max_payload} B, takes {formats_text(info.model_format)}\nmemory: "
                                f"{info.sram_budget} B SRAM for models ({info.sram_free} B free), "
                                f"{info.flash_budget} B flash\nholds {model}")


def run_train(args):
    from edgeff.model_file import is_layered
    from firmware_bridge.board_training import (
        SampleStream,
        load_board_trainer,
        save_pulled_model,
        train_on_board,
    )
    from firmware_bridge.ports import check_url, checkpoints_outlive

    check_url(args.port)
    check_out_path(args.out, inputs=[args.model])
    config = training_config(args)
    # refuses what no board trains (a float model, --last-k on an MLP, a bad K) before the data is read
    trainer, header = load_board_trainer(args.model, config, args.last_k)
    record = trainer.training_record() if is_layered(header.get("architecture")) else vars(config)
    data = dataset_of(header, args.data_dir)
    stream = SampleStream(data.train.images, data.train.labels, min(args.samples or len(data.train),
                          len(data.train)), args.epochs, args.seed, args.host_negatives,
                          header["architecture"]["n_classes"])
    with _open_board(args) as link:
        result = train_on_board(link, args.model, stream, config, args.checkpoint_every,
                                quiet=progress_off(args), checkpoints_outlive=checkpoints_outlive(args.port),
                                window=not args.one_at_a_time, last_k=args.last_k)
    save_pulled_model(result.pop("image"), args.out, args.model,
                      {"config": record, "on_board": {"samples": len(stream), "port": args.port}})
    result["model"] = str(args.out)
    compute = result["board_compute_us_per_sample"]
    compute = "none: the board already held the finished run" if compute is None else f"{compute:.0f} us per sample"
    print_result(args, result, f"trained {result['samples']} samples in {result['seconds']:.1f} s "
                               f"({result['samples_per_s']:.1f} samples/s; board compute {compute}); "
                               f"wrote {args.out}")


def run_scenario(args):
    from edgeff.app.report.on_device import scenario_run_to
    from edgeff.data.datasets import load_dataset
    from firmware_bridge.ports import check_url
    from firmware_bridge.scenarios import drift, new_classes

    check_url(args.port)
    check_out_path(args.out, directory=True)
    try:
        new = tuple(int(c) for c in args.new.split(","))
    except ValueError:
        raise EdgeFFError(f"--new {args.new!r}: give class numbers separated by commas, e.g. 8,9") from None
    data = load_dataset(args.data_dir)
    scenario = (new_classes(data, new, args.replay, args.replay_ratio) if args.name == "new-classes"
                else drift(data, args.shift))
    result = scenario_run_to(args.out, scenario, lambda: _open_board(args), args.samples, args.host_epochs,
                             quiet=progress_off(args))
    lines = [f"{name}: {result['before'][name]:.4f} -> {result['after'][name]:.4f}" for name in result["before"]]
    same = "bit-identical to" if result["runtime_identical"] else "NOT identical to"
    print_result(args, result, f"{result['what']}; {result['samples']} samples on {result['board']} "
                               f"({result['samples_per_s']:.1f} samples/s), image {same} the runtime's\n"
                               + "\n".join(lines) + f"\nwrote {result['report']} and {result['plot']}")


def run_pull(args):
    from firmware_bridge.board_training import save_pulled_model

    check_out_path(args.out, inputs=[args.model])
    with _open_board(args) as link:
        if not link.info.model_loaded:
            raise EdgeFFError(f"{link.info.name} holds no model; load one with `edgeff board train`")
        image = link.read_image()
    save_pulled_model(image, args.out, args.model)
    print_result(args, {"model": str(args.out), "bytes": len(image)},
                 f"wrote {args.out} ({len(image)} bytes from the board)")


def run_virtual(args):
    from firmware_bridge.link_model import Faults
    from firmware_bridge.virtual_board import serve_virtual_board

    if args.max_payload is not None and not 64 <= args.max_payload <= 65535:
        raise EdgeFFError("--max-payload must be between 64 and 65535 bytes")
    serve_virtual_board(args.profile, args.storage, None if args.pty else args.listen, args.pty, args.baud,
                        Faults.parse(args.faults), args.max_payload or 4096,
                        announce=lambda url: _announce(args, url))


def _announce(args, url: str):
    """The URL a running board listens on: a line, or with --json one JSON document (stdout stays open)."""
    print(json.dumps({"url": url}) if args.json else url, flush=True)


def run_emulate(args):
    from firmware_bridge.driver import BoardLink
    from firmware_bridge.emulator import EmulatedBoard, target_of

    target = target_of(args.board)
    header = None
    if args.model_header:
        try:
            header = Path(args.model_header).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise EdgeFFError(f"--model-header {args.model_header}: cannot read it ({exc})") from None
        if "board_model[]" not in header:
            raise EdgeFFError(f"--model-header {args.model_header}: not a board header; write one with "
                              "`edgeff export MODEL_INT8 --format board-header --out board_model.h`")
    with EmulatedBoard(args.listen, header, target) as board:
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
