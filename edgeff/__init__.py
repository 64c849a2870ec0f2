"""EdgeFF: Forward-Forward networks from a host trainer to microcontrollers."""

__version__ = "0.1.0"
