"""`python -m exporter` is the `churn-monitor` command line."""

import sys

from .cli import main

sys.exit(main())
