"""The business rules every room shares: the Telco schema, the positive class and
label encoding, metric names and their edge cases, scenario names, the model reference."""
