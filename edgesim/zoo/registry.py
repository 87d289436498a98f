"""Named model specs, and building a model from one (torch is imported only to build).

Public names: ``FAMILIES``, ``ModelSpec``, ``REGISTRY``, ``register``, ``get_spec``,
``build_model``, ``load_weights``, ``register_family``, ``get_family``.

A ``ModelSpec`` names a factory by string (``"edgesim.zoo.resnet:resnet50"``), so listing and
looking up models costs no torch import; ``build_model`` imports the factory, seeds torch and
builds it
(the same name and seed give the same weights), then optionally loads a checkpoint. A name of the
form ``package.module:factory`` is a user model: an ad-hoc dense spec whose input shape is the
factory's ``input_shape`` attribute, or (3, 224, 224).

The one kwarg a spec may give that its factory does not see is ``init`` (one of ``INITS``):
``"laplace"`` redraws the built model's conv and linear weights heavy-tailed, as trained ones are
(``edgesim.zoo.init``), seeded by the build seed; absent or ``"default"``, the factory's own init
is kept.

Each family (``FAMILIES``: name -> ``"module:Class"`` of its ``edgesim.zoo.family.Family``
subclass) is imported only by ``get_family``, when a model is built.

>>> get_spec("dense_r50").input_shape
(3, 224, 224)
>>> get_spec("dense_mb2")
Traceback (most recent call last):
...
edgesim.errors.ModelError: unknown model 'dense_mb2'; did you mean dense_mbv2, dense_pn2, dense_r50?
"""

from __future__ import annotations

import difflib
import importlib
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from edgesim.errors import ModelError

if TYPE_CHECKING:
    from torch import nn

__all__ = ["FAMILIES", "INITS", "REGISTRY", "ModelSpec", "build_model", "get_family", "get_spec",
           "load_weights", "register", "register_family"]

#: Model families (see DESIGN.md): name -> the ``Family`` class implementing its hooks.
FAMILIES: dict[str, str] = {
    "dense": "edgesim.zoo.family:Family",
    "sigmab": "edgesim.zoo.sigmab:SigmaBranchFamily",
    "sparse": "edgesim.zoo.pruning:SparseFamily",
    "nested": "edgesim.zoo.nested:NestedFamily",
    "signed_binary": "edgesim.zoo.signed_binary:SignedBinaryFamily",
}
_FAMILY_OBJECTS: dict[str, Any] = {}
#: Values of a spec's ``init`` kwarg (applied by ``edgesim.zoo.init.apply_init`` after the factory).
INITS = ("default", "laplace")
_DEFAULT_INPUT = (3, 224, 224)


@dataclass(frozen=True)
class ModelSpec:
    """How to build one named model and what input it takes.

    ``input_shape`` is one example without the batch dimension: ``(C, H, W)`` for images,
    ``(points, 3)`` for point clouds. ``dynamic`` is True for models whose execution path depends
    on the input (routed trees).
    """

    name: str
    family: str
    factory: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    input_shape: tuple[int, ...] = _DEFAULT_INPUT
    description: str = ""
    dynamic: bool = False
    encodings: tuple[str, ...] = ("dense",)

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ModelError(f"model '{self.name}': family {self.family!r} is not one of "
                             f"{', '.join(FAMILIES)}")
        module, sep, attr = self.factory.partition(":")
        if not (module and sep and attr):
            raise ModelError(f"model '{self.name}': factory {self.factory!r} must look like "
                             "'package.module:function'")
        object.__setattr__(self, "kwargs", dict(self.kwargs))
        init = self.kwargs.get("init", "default")
        if init not in INITS:
            raise ModelError(f"model '{self.name}': init {init!r} is not one of "
                             f"{', '.join(INITS)}")
        object.__setattr__(self, "input_shape", tuple(int(d) for d in self.input_shape))
        object.__setattr__(self, "encodings", tuple(self.encodings))


#: name -> spec of every known model.
REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    """Add ``spec`` to ``REGISTRY`` (again with the same spec is a no-op; a different one errs)."""
    old = REGISTRY.get(spec.name)
    if old is not None and old != spec:
        raise ModelError(f"model '{spec.name}' is already registered with factory "
                         f"{old.factory!r}; pick another name")
    REGISTRY[spec.name] = spec
    return spec


register(ModelSpec("dense_r50", "dense", "edgesim.zoo.resnet:resnet50", {"num_classes": 1000},
                   (3, 224, 224), "ResNet-50 v1.5, ImageNet-1K, 224x224 (25.56 M params)",
                   encodings=("dense", "mlw")))
register(ModelSpec("dense_r50_c100", "dense", "edgesim.zoo.resnet:resnet50_cifar",
                   {"num_classes": 100}, (3, 32, 32),
                   "ResNet-50 v1.5, CIFAR-100, 32x32, 3x3 stem (23.71 M params)"))
register(ModelSpec("dense_r50v1", "dense", "edgesim.zoo.resnet:resnet50_v1",
                   {"num_classes": 1000}, (3, 224, 224),
                   "ResNet-50 v1 (Keras layout: stride in the first 1x1), ImageNet-1K, 224x224 "
                   "(25.56 M params)", encodings=("dense", "mlw")))
register(ModelSpec("dense_r50v1_laplace", "dense", "edgesim.zoo.resnet:resnet50_v1",
                   {"num_classes": 1000, "init": "laplace"}, (3, 224, 224),
                   "ResNet-50 v1 with Laplace weights of He std (trained-like int8 histogram): "
                   "Vela's calibration model", encodings=("dense", "mlw")))
register(ModelSpec("dense_mbv2", "dense", "edgesim.zoo.mobilenetv2:mobilenet_v2",
                   {"num_classes": 1000}, (3, 224, 224),
                   "MobileNetV2 1.0, ImageNet-1K, 224x224 (3.50 M params)"))
register(ModelSpec("dense_pn2", "dense", "edgesim.zoo.pointnet2:pointnet2_ssg",
                   {"num_classes": 40, "in_points": 1024}, (1024, 3),
                   "PointNet++ SSG, ModelNet40, 1024 points (1.47 M params)"))

# Routed trees (Sigma-Branch, REFERENCE.md A1): one root-to-leaf path per input. ``levels`` are
# the split points (``edgesim.zoo.sigmab.DEFAULT_LEVELS``), named here so that the structure is
# part of the spec (and of every cache key).
register(ModelSpec("sigmab_r50", "sigmab", "edgesim.zoo.sigmab:sigmab_resnet50",
                   {"num_classes": 1000, "image_size": 224,
                    "levels": {"layer3_2": 1, "layer4": 2}}, (3, 224, 224),
                   "Sigma-Branch tree of ResNet-50 (ImageNet): backbone to layer3 block 1, "
                   "layer3 blocks 2-5 in 2 nodes, layer4+fc in 4 leaves", dynamic=True))
register(ModelSpec("sigmab_r50_c100", "sigmab", "edgesim.zoo.sigmab:sigmab_resnet50_cifar",
                   {"num_classes": 100, "image_size": 32,
                    "levels": {"layer3_1": 1, "layer4": 2}}, (3, 32, 32),
                   "Sigma-Branch tree of the CIFAR-100 ResNet-50: layer3 blocks 1-5 in 2 "
                   "nodes, layer4+fc in 4 leaves", dynamic=True))
register(ModelSpec("sigmab_pn2", "sigmab", "edgesim.zoo.sigmab:sigmab_pointnet2",
                   {"num_classes": 40, "in_points": 1024, "levels": {"sa3": 1, "head": 2}},
                   (1024, 3), "Sigma-Branch tree of PointNet++: sa3 in 2 nodes, head in 4 leaves",
                   dynamic=True))

# Sparse, nested and signed-binary weights (REFERENCE.md A2-A4).
_SPARSE_ENCODINGS = ("dense", "bitmap", "csr", "csc", "rle")
register(ModelSpec("sparse_r50", "sparse", "edgesim.zoo.pruning:sparse_resnet50",
                   {"num_classes": 1000}, (3, 224, 224),
                   "Mix-and-Match pruned ResNet-50 (magnitude, parameter-proportional)",
                   encodings=_SPARSE_ENCODINGS))
register(ModelSpec("sparse_swint", "sparse", "edgesim.zoo.pruning:sparse_swin_tiny",
                   {"num_classes": 1000, "img_size": 224}, (3, 224, 224),
                   "Mix-and-Match pruned Swin-Tiny (magnitude, 70th percentile)",
                   encodings=_SPARSE_ENCODINGS))
register(ModelSpec("nested_r50", "nested", "edgesim.zoo.nested:nested_resnet50",
                   {"levels": 3, "num_classes": 1000}, (3, 224, 224),
                   "ResNet-50 with 3 nested sparse sub-networks in one stream; level via "
                   "@K or --set model.level=K",
                   encodings=("dense", "nested", "bitmap", "csr", "csc", "rle")))
register(ModelSpec("sb_r50", "signed_binary", "edgesim.zoo.signed_binary:sb_resnet50",
                   {"num_classes": 1000}, (3, 224, 224),
                   "Signed-binary ResNet-50 ({0,+a}/{0,-a} per filter), first conv int8",
                   encodings=("dense", "signed_binary")))


def register_family(name: str, target: str) -> None:
    """Add family ``name`` whose hooks are the ``Family`` subclass ``target`` (``module:Class``,
    imported when a model of the family is first built)."""
    module, sep, attr = target.partition(":")
    if not (name and module and sep and attr):
        raise ModelError(f"family {name!r}: {target!r} must look like 'package.module:Class'")
    if FAMILIES.get(name, target) != target:
        raise ModelError(f"family {name!r} is already registered as {FAMILIES[name]!r}")
    FAMILIES[name] = target


def get_family(name: str) -> Any:
    """The ``Family`` object of family ``name`` (imported on first use, then kept)."""
    family = _FAMILY_OBJECTS.get(name)
    if family is None:
        if name not in FAMILIES:
            raise ModelError(f"unknown model family {name!r}; known: {', '.join(FAMILIES)}")
        family = _import_factory(f"family {name}", FAMILIES[name])()
        _FAMILY_OBJECTS[name] = family
    return family


def _import_factory(name: str, target: str) -> Callable[..., Any]:
    module_name, _, attr = target.partition(":")
    _with_cwd()
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == "torch" or str(exc.name).startswith("torch."):
            from edgesim.extras import missing_extra
            raise missing_extra(f"model '{name}' (a PyTorch model)") from None
        raise ModelError(f"model '{name}': cannot import module '{module_name}': "
                         f"{type(exc).__name__}: {exc}") from exc
    except Exception as exc:
        raise ModelError(f"model '{name}': cannot import module '{module_name}': "
                         f"{type(exc).__name__}: {exc}") from exc
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ModelError(f"model '{name}': module '{module_name}' has no callable '{attr}'")
    return factory


def _with_cwd() -> None:
    """The current directory on ``sys.path``, so ``--model mymodel:factory`` finds
    ``mymodel.py`` where the command runs, as under ``python -m`` (the ``edgesim`` script puts
    only its own folder there). It goes last, not first as ``python -m`` puts it: a file of
    the current directory never shadows a module edgesim or torch imports later."""
    try:
        cwd = os.getcwd()
    except OSError:        # the current directory was removed
        return
    if "" not in sys.path and cwd not in sys.path:
        sys.path.append(cwd)


def get_spec(name: str) -> ModelSpec:
    """The spec registered as ``name``, or an ad-hoc dense spec for ``package.module:factory``."""
    spec = REGISTRY.get(name)
    if spec is not None:
        return spec
    if ":" in name:
        factory = _import_factory(name, name)
        shape = getattr(factory, "input_shape", _DEFAULT_INPUT)
        if not (isinstance(shape, (tuple, list)) and shape and len(shape) <= 6 and all(
                isinstance(d, int) and not isinstance(d, bool) and 0 < d <= 1 << 20
                for d in shape)):
            shown = repr(shape) if len(repr(shape)) <= 40 else repr(shape)[:37] + "..."
            raise ModelError(f"model '{name}': the factory's input_shape {shown} is not a "
                             "shape; expected a tuple of positive sizes without the batch, "
                             "like (3, 32, 32) (or pass --input-shape 3x32x32)")
        return ModelSpec(name, "dense", name, {}, tuple(shape),
                         getattr(factory, "__doc__", None) or "user model")
    known = sorted(REGISTRY)
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    if close:
        raise ModelError(f"unknown model '{name}'; did you mean {', '.join(sorted(close))}?")
    raise ModelError(f"unknown model '{name}'; known models: {', '.join(known)} "
                     "(or give package.module:factory)")


def _state_dict(path: str) -> Mapping[str, Any]:
    import torch

    if not os.path.isfile(path):
        raise ModelError(f"checkpoint file '{path}' does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelError(_unreadable(path, exc)) from exc
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not (isinstance(obj, Mapping) and obj
            and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())):
        raise ModelError(f"checkpoint file '{path}' is not a state_dict (expected a mapping of "
                         f"parameter names to tensors, got {type(obj).__name__})")
    for key, value in obj.items():   # what load_state_dict would take with a warning, or mangle
        if value.layout != torch.strided:
            raise ModelError(f"checkpoint file '{path}': key '{key}' is a {value.layout} tensor; "
                             "expected a dense (strided) tensor")
        if value.is_complex() or not (value.is_floating_point() or value.dtype in (
                torch.int64, torch.int32, torch.bool, torch.uint8, torch.int8, torch.int16)):
            raise ModelError(f"checkpoint file '{path}': key '{key}' has dtype {value.dtype}; "
                             "expected real floating-point weights (or integer buffers)")
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise ModelError(f"checkpoint file '{path}': key '{key}' holds NaN or infinite "
                             "values; expected finite weights")
    return obj


def _unreadable(path: str, exc: Exception) -> str:
    """One line for a checkpoint ``torch.load(weights_only=True)`` refused: a pickled object
    (a whole model saved with ``torch.save(model)``) names the class and says what to save;
    anything else is the error's first line, without terminal colour codes."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if found is not None or "Weights only load failed" in text:
        what = f" (a {found.group(1).rsplit('.', 1)[-1]} object)" if found else ""
        return (f"checkpoint file '{path}' holds a pickled Python object{what}, not a "
                "state_dict; edgesim does not unpickle code: save the weights with "
                "torch.save(model.state_dict(), PATH) and pass that file")
    first = (text.strip().splitlines() or [""])[0][:300]
    return f"checkpoint file '{path}' cannot be read: {type(exc).__name__}: {first}"


def load_weights(model: nn.Module, path: str | os.PathLike) -> None:
    """Load the state_dict file ``path`` into ``model``: keys and shapes must match exactly
    (read with ``weights_only=True``); otherwise one ``ModelError`` line naming the file and
    the first key that does not fit."""
    _load(model, os.fspath(path))


def _load(model: nn.Module, path: str) -> None:
    state = _state_dict(path)
    expected = model.state_dict()
    for key, value in expected.items():
        if key not in state:
            raise ModelError(f"checkpoint file '{path}': missing key '{key}' "
                             f"(expected shape {tuple(value.shape)})")
        if tuple(state[key].shape) != tuple(value.shape):
            raise ModelError(f"checkpoint file '{path}': key '{key}' has shape "
                             f"{tuple(state[key].shape)}, expected {tuple(value.shape)}")
    extra = [k for k in state if k not in expected]
    if extra:
        raise ModelError(f"checkpoint file '{path}': unexpected key '{extra[0]}' "
                         f"({len(extra)} keys the model does not have)")
    model.load_state_dict(state)


def build_model(spec: ModelSpec, weights: str | None = None, seed: int = 0) -> nn.Module:
    """Build ``spec``'s model with seeded init (``torch.manual_seed(seed)`` first), in eval mode.

    A spec's ``init`` kwarg (see ``INITS``) is not passed to the factory; a non-default one is
    applied to the built model, seeded by ``seed``, before any checkpoint is loaded.

    ``weights`` is an optional checkpoint file holding a state_dict (or ``{"state_dict": ...}``)
    whose keys and shapes must match the model exactly.
    """
    import torch

    factory = _import_factory(spec.name, spec.factory)
    kwargs = dict(spec.kwargs)
    init = kwargs.pop("init", "default")
    torch.manual_seed(seed)
    try:
        model = factory(**kwargs)
    except Exception as exc:
        raise ModelError(f"model '{spec.name}': factory '{spec.factory}' raised "
                         f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(model, torch.nn.Module):
        raise ModelError(f"model '{spec.name}': factory '{spec.factory}' returned "
                         f"{type(model).__name__}, expected a torch.nn.Module")
    if init != "default":
        from edgesim.zoo.init import apply_init
        apply_init(model, init, seed)
    if weights is not None:
        _load(model, os.fspath(weights))
    return model.eval()
