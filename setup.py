"""The one compiled part, optional: the engine's inner passes (``edgesim/sim/_kernel.c``).

Everything else is in pyproject.toml. Where it cannot be built (no C compiler or no Python
headers), the install goes on without it and ``edgesim.sim`` runs the same passes in Python
(the reference the tests hold the compiled ones to).
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("edgesim.sim._kernel", ["edgesim/sim/_kernel.c"], optional=True)])
