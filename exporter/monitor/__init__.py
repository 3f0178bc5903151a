"""The monitoring exporter: scheduled jobs, snapshots, the Prometheus collector, the
HTTP server, reports and the run summary, and the wiring of all of them."""
