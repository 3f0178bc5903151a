"""What the HTTP servers share: TLS and basic auth from a Prometheus-style web config."""
