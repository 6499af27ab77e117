"""``python -m privguard``: see :mod:`privguard._cli`."""

from ._cli import main

raise SystemExit(main())
