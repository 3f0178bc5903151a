"""The closed loop: Alertmanager's webhook into the history, and retraining."""
