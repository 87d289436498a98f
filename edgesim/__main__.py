"""``python -m edgesim``: the command line (see ``edgesim.cli``)."""

from edgesim.cli import main

raise SystemExit(main())
