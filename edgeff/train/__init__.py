"""The PyTorch host trainer for Forward-Forward and Collaborative FF networks."""
