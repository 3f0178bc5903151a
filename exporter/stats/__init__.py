"""Pure statistics: drift profiles and tests, decisions, classification metrics and
the label-free estimate. No I/O; nothing of the project but the domain."""
