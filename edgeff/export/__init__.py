"""Exporters: the model file as ONNX (float and int8) and TFLite (int8) inference models, a C array of a
model for firmware, and `verify`, which runs an exported file in its own runtime against EdgeFF.

Every exporter reads a model file (never the trainer's objects) and refuses what it cannot express
exactly, naming the layer or option.
"""
