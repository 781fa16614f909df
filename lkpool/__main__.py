"""`python -m lkpool ...` is the `lkpool` command."""

from .cli import main

raise SystemExit(main())
