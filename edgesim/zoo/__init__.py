"""Model definitions, deployment preparation and the model registry.

Modules: ``resnet`` (ResNet-50 v1.5 and the CIFAR variant), ``deploy`` (BatchNorm folding),
``registry`` (named model specs; imports torch only when a model is built).
"""
