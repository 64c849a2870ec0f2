"""The fixed-point runtime: EdgeFF's executable specification of what a board computes.

NumPy only (PyTorch is an optional fast backend). Integer semantics follow TensorFlow Lite Micro /
CMSIS-NN exactly, so that "bit-exact with the runtime" means "bit-exact with the board". Float appears
only when a model is prepared (scales become integer multiplier/shift pairs), never in a kernel.
"""
