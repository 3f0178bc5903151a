"""The prediction service: a FastAPI app over the MLflow champion and the prediction log.

``create_app(config)`` builds the app; ``serve_api(config, host, port)`` runs it with
uvicorn (``churn-monitor api``).
"""

from exporter.api.app import create_app, serve_api

__all__ = ["create_app", "serve_api"]
