"""Front-ends: what turns a model request (``edgesim.request``) into a Workload.

Public names (modules): ``pytorch`` (registry and ``package.module:factory`` models: build,
trace, route), ``files`` (model files by content hash), ``graph`` (the framework-neutral network
a file states, and its Workload), ``tflite`` (TFLite flatbuffers), ``onnx`` (ONNX protobufs,
with ``onnx_values``, ``onnx_shapes``, ``onnx_consts``, ``onnx_macs``, ``onnx_ops``). A new file
format is one module with ``load(path, *, name=None) -> graph.Graph`` and one suffix in
``edgesim.request.FILE_FORMATS``.
"""
