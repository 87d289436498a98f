"""Optional dependencies: what needs PyTorch, and one line saying how to get it.

Public names: ``MissingExtra``, ``TORCH_HINT``, ``require_torch``, ``missing_extra``.

``pip install edgesim`` runs the registry models from their shipped traces, TFLite and ONNX
files, sweeps and plots without torch; tracing a PyTorch model, ``--weights``, ``--data``,
``--eval`` and ``finetune`` need the ``torch`` extra. Where torch is needed and missing, the
error names the step and the extra to install (the CLI prints it in one line, exit code 2).

>>> str(missing_extra("tracing a PyTorch model")).split(";")[0]
'tracing a PyTorch model needs PyTorch, which is not installed'
"""

from __future__ import annotations

from types import ModuleType

from edgesim.errors import EdgesimError

__all__ = ["TORCH_HINT", "MissingExtra", "missing_extra", "require_torch"]

#: How to install the extra, said by every ``MissingExtra``.
TORCH_HINT = ("pip install 'edgesim[torch]' (on Linux, pip install torch --index-url "
              "https://download.pytorch.org/whl/cpu first gets the CPU-only wheel instead of "
              "the multi-GB CUDA build)")


class MissingExtra(EdgesimError):
    """A step needs an optional dependency that is not installed."""


def missing_extra(what: str) -> MissingExtra:
    """The error for ``what`` (a step: "tracing a PyTorch model") without torch."""
    return MissingExtra(f"{what} needs PyTorch, which is not installed; {TORCH_HINT}")


def require_torch(what: str) -> ModuleType:
    """``torch``, imported; or ``MissingExtra`` naming ``what`` when it is not installed."""
    try:
        import torch
    except ImportError as exc:
        if exc.name not in (None, "torch") and not str(exc.name).startswith("torch."):
            raise
        raise missing_extra(what) from None
    return torch
