"""`edgeff finetune`: continue training an int8 model with the integer-only FF rule (edgeff/runtime/finetune.py):
an MLP with its FF rule (edgeff.runtime.int_training), a layered CwC (conv) model with the conv blocks' CwC rule
on its last --last-k trainable blocks (edgeff.runtime.int_layered_training)."""
from edgeff.app.options import (
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
from edgeff.model_description import ModelKind


def register(sub):
    sp = add_command(sub, "finetune", "Continue training an int8 model with the integer-only FF rule, exactly as a "
                                      "board would (batch size 1 is the board's rule).", run,
                     interrupted="interrupted; --out holds the model after the last finished epoch, if one "
                                 "finished (finetune does not resume: the same command starts again from MODEL)")
    sp.add_argument("model", help="int8 model file (from `edgeff quantize` or an earlier finetune)")
    sp.add_argument("--out", required=True, help="int8 model file to write (with master weights)")
    sp.add_argument("--epochs", type=at_least(1), default=1, help="passes over the samples")
    sp.add_argument("--samples", type=at_least(1), help="training samples per epoch (default: all)")
    sp.add_argument("--batch-size", type=at_least(1), default=1, help="samples per update (default: 1, as a board)")
    # a plain int: a bad K is refused by the trainer in one line that names the model's trainable layers
    sp.add_argument("--last-k", type=int, help="layered (conv) models: train the last K trainable blocks, the "
                                               "earlier ones frozen (default: every block; the step is 2^-lr-shift "
                                               "of SGD on the folded block)")
    training_options(sp)
    data_dir_option(sp)
    json_flag(sp)


def run(args):
    from tqdm import tqdm

    from edgeff.model_file import is_layered, load_model, save_model
    from edgeff.runtime.finetune import finetune
    from edgeff.runtime.int_training import load_trainer, trainer_tensors

    check_out_path(args.out, inputs=[args.model])
    _, header = load_model(args.model)
    if (header.get("architecture") or {}).get("kind") != ModelKind.INT8:
        raise EdgeFFError(f"{args.model}: finetune continues training an int8 model; make one with "
                          "`edgeff quantize MODEL --out MODEL_INT8`")
    data = dataset_of(header, args.data_dir)
    layered = is_layered(header["architecture"])
    if layered:
        from edgeff.runtime.int_layered_training import load_layered_trainer

        trainer = load_layered_trainer(args.model, training_config(args), args.last_k)
    elif args.last_k is not None:
        raise EdgeFFError(f"{args.model}: --last-k takes a layered (conv) int8 model; an FF MLP trains every layer")
    else:
        trainer = load_trainer(args.model, training_config(args))
    n = min(args.samples or len(data.train), len(data.train))
    bar = tqdm(total=args.epochs * n, unit="sample", desc="finetune int8", disable=progress_off(args))

    def save(history):
        bar.set_postfix(val=f"{history[-1]['val_multi_pass']:.4f}")
        config = trainer.training_record() if layered else vars(trainer.config)
        save_model(args.out, trainer.tensors() if layered else trainer_tensors(trainer),
                   {**header, "int_training": {"config": config, "step": trainer.step_count,
                                               "history": history, "source_model": str(args.model)}})

    history = finetune(trainer, data.train, data.val, args.epochs, n, args.batch_size, args.seed,
                       header["architecture"]["eval_layers"], on_samples=bar.update, on_epoch=save)
    bar.close()
    print_result(args, {"model": str(args.out), "history": history},
                 "\n".join(f"epoch {h['epoch']}: validation multi-pass {h['val_multi_pass']:.4f}" for h in history)
                 + f"\nwrote {args.out}")

