"""Moved: ``edgesim.cli.finetune`` (the command) and ``edgesim.zoo.sigmab.train`` (the work).

Public names: ``register``, ``cmd_finetune`` (aliases of ``edgesim.cli.finetune``'s
``add_parser`` and ``main``, kept only until the CLI's command table names the new module).
"""

from edgesim.cli.finetune import add_parser as register
from edgesim.cli.finetune import main as cmd_finetune

__all__ = ["cmd_finetune", "register"]
