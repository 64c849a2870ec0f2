"""`edgeff train`: train an FF / F-CFF / A-CFF network from a TOML config."""
from pathlib import Path

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


def register(sub):
    sp = add_command(sub, "train", "Train an FF / F-CFF / A-CFF network from a TOML config (resumes from its "
                                   "last checkpoint if one is in --out).", run, interrupted=TRAINING_RESUMES)
    sp.add_argument("config", help="config file, or a name from edgeff/models/ such as ff-784-500-500-fast")
    sp.add_argument("--out", help="output directory (default: runs/<config name>)")
    sp.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint and start over")
    sp.add_argument("--seed", type=at_least(0), help="override [train] seed")
    sp.add_argument("--epochs", type=at_least(1), help="override [train] epochs (per layer for the paper protocol)")
    val_fraction_option(sp)
    sp.add_argument("--quiet", action="store_true", help="no progress bar")
    data_dir_option(sp)
    json_flag(sp)


def run(args):
    from edgeff.data.datasets import load_dataset
    from edgeff.train import conv_trainer, trainer
    from edgeff.train.config import load_config

    cfg = load_config(model_config(args.config))
    train = conv_trainer.train if cfg.layered else trainer.train
    out = check_out_path(args.out or Path("runs") / cfg.name, directory=True)
    for key in ("seed", "epochs"):
        if getattr(args, key) is not None:
            setattr(cfg.train, key, getattr(args, key))
    if args.val_fraction is not None:
        cfg.train.val_fraction, cfg.train.val_size = args.val_fraction, 0
    data = load_dataset(args.data_dir, val_size=cfg.train.val_size, val_fraction=cfg.train.val_fraction)
    metrics = train(cfg, data, out, fresh=args.fresh, quiet=progress_off(args))
    val = metrics["val"]
    accuracy = ", ".join(f"{name} {val[key]:.4f}" for key, name in (("multi_pass", "multi-pass"),
                                                                     ("one_pass", "one-pass")) if key in val)
    print_result(args, {k: v for k, v in metrics.items() if k != "history"},
                 f"{cfg.name}: {metrics['epochs_run']} epochs in {metrics['train_seconds']:.1f} s; validation "
                 f"{accuracy}\n"
                 f"model: {metrics['model_file']}\nplots: {', '.join(metrics['plots'])}")
