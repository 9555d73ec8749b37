"""``python -m zhichao`` is the same as the ``zhichao`` console script."""

from zhichao.cli import main

raise SystemExit(main())
