"""`edgeff memory-plan`: every buffer of on-device integer training with its exact size."""
from edgeff.app.options import add_command, json_flag, print_result


def register(sub):
    sp = add_command(sub, "memory-plan", "Every buffer of on-device integer training with its exact size.", run)
    sp.add_argument("model", help="float or int8 model file")
    json_flag(sp)


def run(args):
    from edgeff.errors import EdgeFFError
    from edgeff.op_registry import trains_in_integers
    from edgeff.profiler.memory_model import planned
    from edgeff.profiler.profile_report import model_architecture
    from edgeff.runtime.memory_plan import plan_summary, training_plan

    arch = model_architecture(args.model)
    if not planned(arch["layers"]):
        kinds = sorted({spec.kind for spec in arch["layers"].layers if not trains_in_integers(spec.kind)})
        raise EdgeFFError(f"{args.model}: the memory plan lays out on-device integer training, which "
                          f"{', '.join(kinds)} layers do not have yet; `edgeff profile` estimates this model's memory")
    summary = plan_summary(training_plan(arch["sizes"], arch["n_classes"], arch["head_layers"], arch["norm_bits"]))
    lines = [f"{'buffer':42s} {'region':6s} {'dtype':6s} {'shape':>12s} {'bytes':>9s}"]
    lines += [f"{b['name']:42s} {b['region']:6s} {b['dtype']:6s} {tuple(b['shape'])!s:>12s} {b['bytes']:9d}"
              for b in summary["buffers"]]
    lines.append(f"SRAM {summary['sram_bytes']} bytes, flash {summary['flash_bytes']} bytes "
                 "(integer training, batch size 1)")
    print_result(args, summary, "\n".join(lines))
