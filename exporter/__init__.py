"""churn-monitor: drift and model-quality monitoring for a churn classifier."""

__version__ = "0.1.0"
