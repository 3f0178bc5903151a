"""The `churn-monitor` command line."""
