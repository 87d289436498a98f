"""Front-ends: what turns a model request into a Workload.

Public names (modules): ``graph`` (the framework-neutral network a file states, and its
Workload), ``tflite`` (TFLite flatbuffers), ``onnx`` (ONNX protobufs).
"""
