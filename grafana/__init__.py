"""Grafana dashboards as code: ``python -m grafana.generate`` writes ``grafana/dashboards``.

Not part of the installed ``exporter`` package; it runs from a source checkout (a dev
dependency, ``grafana-foundation-sdk``, builds the JSON Grafana provisions).
"""
