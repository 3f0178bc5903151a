"""The training pipeline: tune with Optuna, evaluate, register in MLflow and promote."""
