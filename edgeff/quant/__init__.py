"""Quantization: float FF model file -> int8 model file (post-training quantization)."""
