# One image for every churn-monitor process of the compose stack: the trainer, the
# prediction API, the exporter, the Streamlit form, the Optuna dashboard and the traffic
# simulator. Each compose service picks its command; the entrypoint is the CLI:
#
#   docker build -t churn-monitor:0.1.0 .
#   docker run --rm churn-monitor:0.1.0 --help
#
# Layers, cheapest to rebuild last: the dependencies (pinned by constraints.txt) are
# installed from pyproject.toml alone, so editing the source only rebuilds the last
# layers.

FROM python:3.11.14-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MLFLOW_DISABLE_TELEMETRY=true \
    DO_NOT_TRACK=true

# An unprivileged user with a home (gunicorn, under the Optuna dashboard, keeps a
# control socket there) and the folders the named volumes are mounted on, owned by it:
# a new named volume takes the ownership of the folder it is mounted on. /app/run holds
# files rendered at start (the compose stack's alertmanager.yml).
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /home/app --create-home \
        --shell /usr/sbin/nologin app \
    && mkdir -p /app/data /app/reports /app/logs /app/run \
    && chown app:app /app/data /app/reports /app/logs /app/run

WORKDIR /app

# 1. Dependencies only: the [project] dependencies of pyproject.toml, at the versions
#    of constraints.txt. This layer is rebuilt only when one of these two files changes.
COPY pyproject.toml constraints.txt ./
RUN python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; open('/tmp/requirements.txt', 'w').write('\n'.join(deps) + '\n')" \
    && pip install --constraint constraints.txt --requirement /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# 2. The package itself (no dependency resolution: they are all in place).
COPY README.md ./
COPY exporter ./exporter
RUN pip install --no-deps . && rm -rf build *.egg-info

# 3. The default config (compose mounts configs/monitoring over it, read-only).
COPY configs ./configs

USER app

EXPOSE 8000 8080 8501 9108

# The API's health by default; compose sets each service's own check (and
# HEALTHCHECK_URL lets a plain `docker run` of another command point this one elsewhere).
HEALTHCHECK --interval=15s --timeout=5s --start-period=90s --retries=5 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ.get('HEALTHCHECK_URL', 'http://127.0.0.1:8000/health'), timeout=4)"]

ENTRYPOINT ["churn-monitor"]
CMD ["api", "--host", "0.0.0.0"]
