"""The business rules every room shares: the Telco schema, the positive class and
label encoding, metric names and their edge cases, scenario names, which drift test
applies to which kind of feature, the model reference, the alert types."""
