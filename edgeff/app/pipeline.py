"""`edgeff pipeline`: the main job, from data to a report folder (edgeff/app/report/pipeline.py)."""
from edgeff.app.options import (
    TRAINING_RESUMES,
    add_command,
    at_least,
    data_dir_option,
    json_flag,
    print_result,
    progress_off,
    val_fraction_option,
)
from edgeff.atomic_write import check_out_path
from edgeff.package_data import model_config

DEFAULT_CONFIG = "acff-784-500-500-fast"


def register(sub):
    sp = add_command(sub, "pipeline", "The main job: train the default collaborative model, evaluate it on the "
                                      "test set and write a report folder (Markdown, PNG plots, model file).", run,
                     interrupted=TRAINING_RESUMES)
    sp.add_argument("--config", default=DEFAULT_CONFIG, help="model config (default: %(default)s)")
    sp.add_argument("--out", default="reports/pipeline", help="report folder (default: %(default)s)")
    sp.add_argument("--fresh", action="store_true", help="retrain even if a checkpoint exists")
    val_fraction_option(sp)
    sp.add_argument("--board-port", help="train the board-sized network on the board at this port URL "
                                         "(default: qemu:// when qemu-system-arm is installed, else virtual:// "
                                         "with the nRF52840's memory)")
    sp.add_argument("--board-samples", type=at_least(0), default=6000,
                    help="samples of on-device training (default: %(default)s; 0 skips the stage)")
    data_dir_option(sp)
    json_flag(sp)


def run(args):
    from edgeff.app.report.pipeline import run_pipeline

    check_out_path(args.out, directory=True)
    result = run_pipeline(model_config(args.config), args.out, args.data_dir, fresh=args.fresh,
                          quiet=progress_off(args), board_port=args.board_port, board_samples=args.board_samples,
                          val_fraction=args.val_fraction)
    print_result(args, result, f"report: {result['report']}")
