"""Energy per spiking inference on a neuromorphic profile, from the counts a simulation measured, next to the
MCU energy per inference of the same model from the analytic model (energy_model.py).

A neuromorphic chip pays per event: each synaptic operation (a spike reaching one synapse) e_synop_pj, each
neuron update (every neuron, every time step: the integrate-and-fire neurons integrate a constant input current
at every step) e_neuron_update_pj. The counts come from EdgeFF's NIR simulator (edgeff/export/nir_simulator.py)."""
from edgeff.errors import EdgeFFError
from edgeff.profiler.energy_model import layer_costs, total, with_energy
from edgeff.profiler.hw_profile import load_profile, profile_names


def neuromorphic_profiles() -> list:
    """Every shipped profile of kind neuromorphic (edgeff/hw_profiles/*.toml), by name."""
    return [p for p in map(load_profile, profile_names()) if p.kind == "neuromorphic"]


def spiking_energy_uj(profile, synaptic_ops: float, neuron_updates: float) -> float:
    if profile.kind != "neuromorphic":
        raise EdgeFFError(f"profile '{profile.name}' is a {profile.kind} profile; spiking energy needs a neuromorphic "
                          f"one ({', '.join(p.name for p in neuromorphic_profiles())})")
    return 1e-6 * (synaptic_ops * profile.e_synop_pj + neuron_updates * profile.e_neuron_update_pj)


def mcu_inference_energy(board: str, layers, n_classes: int, head_inputs: int) -> dict:
    """One int8 one-pass inference of the model on an MCU profile: its MACs and its board and op energies, and the
    first layer's board energy alone (what a host pays to turn an input into the spiking graph's input current)."""
    profile = load_profile(board)
    if profile.kind != "mcu":
        raise EdgeFFError(f"profile '{profile.name}' is a {profile.kind} profile; the MCU comparison needs an mcu one")
    rows = with_energy(layer_costs("inference_one_pass", layers, n_classes, head_inputs, "int8"), profile, "int8")
    return {"board": profile.name, "macs": int(total(rows, "macs")), "energy_board_uj": total(rows, "energy_board_uj"),
            "energy_op_uj": total(rows, "energy_op_uj"), "first_layer_energy_board_uj": rows[0].energy_board_uj,
            "sources": {k: profile.sources[k] for k in
                                                                     ("cycles_per_int8_mac", "run_current_ua_per_mhz")}}
