"""The one compiled part, optional: Belady's byte pass (``edgesim/sim/_kernel.c``).

Everything else is in pyproject.toml. Where it cannot be built (no C compiler or no Python
headers), the install goes on without it and ``edgesim.sim.residency`` takes the same pass in
Python (the reference the tests hold the compiled one to).
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("edgesim.sim._kernel", ["edgesim/sim/_kernel.c"], optional=True)])
