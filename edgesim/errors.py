"""Errors edgesim raises on bad input: ``EdgesimError`` and its subclasses.

Every message names the file, key, layer or value at fault and what was expected, in one line.
The CLI prints ``edgesim: error: <message>`` and exits with code 2; a traceback is a bug.

Public names: ``EdgesimError``, ``ConfigError``, ``UnitError``, ``ModelError``, ``TraceError``,
``DataError``, ``CacheError``.
"""

from __future__ import annotations

__all__ = ["CacheError", "ConfigError", "DataError", "EdgesimError", "ModelError", "TraceError",
           "UnitError"]


class EdgesimError(Exception):
    """Base class: a user-facing error whose message is one self-contained line."""


class ConfigError(EdgesimError):
    """A hardware config (YAML file or ``--set`` override) is malformed or impossible."""


class UnitError(ConfigError):
    """A quantity has the wrong unit for its key, or cannot be parsed."""


class ModelError(EdgesimError):
    """An unknown model name, a factory that fails, or a checkpoint that does not fit."""


class TraceError(EdgesimError):
    """Tracing a model failed; the message names the layer."""


class DataError(EdgesimError):
    """Input data (``--data``) is missing or has the wrong shape."""


class CacheError(EdgesimError):
    """The trace cache folder is unsafe: another user owns it or can write to it."""
