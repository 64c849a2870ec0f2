"""Sweeps of training runs (`edgeff sweep`): a spec of variants x seeds, trials run as Ray tasks, a resumable
results table, and the statistics and training-dynamics report of seeds 001 and 003."""
