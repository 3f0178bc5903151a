"""The model as the services use it: the preprocessing pipeline, the MLflow registry
(champion alias, baseline) and Optuna study progress."""
