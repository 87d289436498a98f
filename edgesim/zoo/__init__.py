"""Model definitions, deployment preparation and the model registry.

Modules: ``resnet`` (ResNet-50 v1.5, v1 and the CIFAR variant), ``mobilenetv2``, ``deploy``
(BatchNorm folding), ``init`` (heavy-tailed Laplace weights a spec can ask for), ``registry``
(named model specs; imports torch only when a model is built).
"""
