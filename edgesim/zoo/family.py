"""The family interface: what the tracing side asks of a model family, so that it knows none.

Public names: ``Family``.

``edgesim.build`` resolves the spec's family (``edgesim.zoo.registry.get_family``) and calls only
these hooks: ``build`` (the nn.Module of a spec, from an optional checkpoint), ``routed`` (is the
execution path chosen per input), ``select_level`` (a nested sub-network), ``annotate`` (what a
transform decided about traced weight blocks) and ``save_built`` / ``load_built`` (keep a built
model in the on-disk cache, as plain data: no pickled code). ``Family`` itself is the dense
behaviour; a family subclasses it and overrides what differs, in its own zoo module, and is
registered by name in ``registry.FAMILIES`` (resolved lazily: listing models imports no torch).

>>> Family().routed(type("Spec", (), {"dynamic": False})())
False
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgesim.errors import ModelError

__all__ = ["Family"]


class Family:
    """Hooks of one model family; the defaults are those of a dense model."""

    #: The family name a ``ModelSpec`` gives.
    name = "dense"

    def build(self, spec: Any, weights: str | None, seed: int, data: str | None = None) -> Any:
        """The model of ``spec`` (seeded), with ``weights`` (a checkpoint file) loaded if given.

        ``data`` (``--data``: a file or image folder, ``edgesim.zoo.data``) is what a family's
        transform may calibrate on (pruning sensitivity, tree construction); dense models
        ignore it."""
        from edgesim.zoo.registry import build_model
        return build_model(spec, weights=weights, seed=seed)

    def routed(self, spec: Any) -> bool:
        """True when each input runs one of several paths (``num_paths``, ``path_names()``,
        ``forward_path(x, i)``, ``route(x)``), chosen at run time."""
        return bool(spec.dynamic)

    def select_level(self, spec: Any, model: Any, level: int | None) -> Any:
        """``model`` with nested level ``level`` selected (None: as built). The model is one
        built for this call alone, so it may be changed in place."""
        if level is not None:
            raise ModelError(f"model {spec.name} has no nesting levels; model.level={level} "
                             "applies to nested models only")
        return model

    def annotate(self, blocks: Sequence[Any], model: Any) -> list[Any]:
        """Traced WeightBlocks with what a transform decided about them (default: as traced)."""
        return list(blocks)

    def save_built(self, model: Any, path: Path) -> bool:
        """Write a built model to the on-disk cache file ``path``; False when the family keeps
        no such cache (the default: building is cheap next to tracing)."""
        return False

    def load_built(self, path: Path) -> Any | None:
        """The model ``save_built`` wrote to ``path``; None for a missing, corrupt or foreign
        file (a cache miss: the caller rebuilds)."""
        return None
