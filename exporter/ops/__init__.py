"""Operations: the local stack (`up`), config rendering for Prometheus, Alertmanager and
compose, bootstrap, the traffic simulator and the local notification sinks."""
