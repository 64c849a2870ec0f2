"""`edgeff memory-plan`: every buffer of on-device integer training with its exact size; for an int8 layered
(conv) model, FF training of its last k blocks beside int8 backprop of the same blocks."""
from edgeff.app.options import add_command, at_least, json_flag, print_result


def register(sub):
    sp = add_command(sub, "memory-plan", "Every buffer of on-device integer training with its exact size.", run)
    sp.add_argument("model", help="float or int8 model file (a layered conv model: int8)")
    sp.add_argument("--last-k", type=at_least(1), default=None,
                    help="int8 conv models: plan training of the last K conv blocks (default: all of them)")
    sp.add_argument("--board", default=None,
                    help="also say whether the plan fits this board's SRAM and flash (a board name or a .toml path)")
    json_flag(sp)


def _table(summary: dict) -> list:
    w = max(42, *(len(b["name"]) for b in summary["buffers"]))
    lines = [f"{'buffer':{w}s} {'region':6s} {'dtype':6s} {'shape':>12s} {'bytes':>9s}"]
    lines += [f"{b['name']:{w}s} {b['region']:6s} {b['dtype']:6s} {tuple(b['shape'])!s:>12s} {b['bytes']:9d}"
              for b in summary["buffers"]]
    return lines


def _fit_line(fit: dict) -> str:
    return (f"{fit['board']}: {fit['sram_budget_bytes']} bytes of SRAM for the model, {fit['flash_budget_bytes']} of "
            f"flash: {'fits' if fit['fits'] else 'DOES NOT FIT'}")


def run(args):
    from edgeff.errors import EdgeFFError
    from edgeff.op_registry import trains_in_integers
    from edgeff.profiler.memory_model import cwc_plans, layered, planned
    from edgeff.profiler.profile_report import model_architecture, plan_fit
    from edgeff.runtime.memory_plan import plan_summary, training_plan

    arch = model_architecture(args.model)
    if layered(arch["layers"]):
        if not arch["int8"]:
            raise EdgeFFError(f"{args.model}: a conv model's memory plan follows its int8 model file (its padding); "
                              "quantize it first (edgeff quantize)")
        plans = cwc_plans(args.model, args.last_k)
        summaries = {m: plan_summary(plans[m]) for m in ("ff", "backprop")}
        if args.board:
            for summary in summaries.values():
                summary["fit"] = plan_fit(summary, args.board)
        ff, bp = summaries["ff"], summaries["backprop"]
        lines = [f"FF (CwC) training of layers {plans['trained_layers']}, batch size 1:", *_table(ff),
                 f"SRAM {ff['sram_bytes']} bytes, flash {ff['flash_bytes']} bytes", "",
                 "int8 backprop of the same layers through a classifier, batch size 1:", *_table(bp),
                 f"SRAM {bp['sram_bytes']} bytes, flash {bp['flash_bytes']} bytes", "",
                 f"backprop / FF: SRAM {bp['sram_bytes'] / ff['sram_bytes']:.2f}, "
                 f"flash {bp['flash_bytes'] / ff['flash_bytes']:.2f}"]
        if args.board:
            lines += [f"FF       {_fit_line(ff['fit'])}", f"backprop {_fit_line(bp['fit'])}"]
        print_result(args, {"trained_layers": plans["trained_layers"], **summaries}, "\n".join(lines))
        return
    if args.last_k is not None:
        raise EdgeFFError("--last-k picks the conv blocks a layered model trains; an MLP trains every layer")
    if not planned(arch["layers"]):
        kinds = sorted({spec.kind for spec in arch["layers"].layers if not trains_in_integers(spec.kind)})
        raise EdgeFFError(f"{args.model}: the memory plan lays out on-device integer training, which "
                          f"{', '.join(kinds)} layers do not have yet; `edgeff profile` estimates this model's memory")
    summary = plan_summary(training_plan(arch["sizes"], arch["n_classes"], arch["head_layers"], arch["norm_bits"]))
    lines = _table(summary)
    lines.append(f"SRAM {summary['sram_bytes']} bytes, flash {summary['flash_bytes']} bytes "
                 "(integer training, batch size 1)")
    if args.board:
        summary["fit"] = plan_fit(summary, args.board)
        lines.append(_fit_line(summary["fit"]))
    print_result(args, summary, "\n".join(lines))
