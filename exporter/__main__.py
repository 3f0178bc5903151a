"""`python -m exporter` is the `churn-monitor` command line."""

import sys

from exporter.cli.main import main

sys.exit(main())
