"""`python -m cli ...`: the `specc` command without installing it."""
import sys

from .main import main

sys.exit(main())
