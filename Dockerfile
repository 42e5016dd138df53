# The OptiInfra image: the exporter sidecar by default; the same image runs every `optiinfra` command
# (compose and Kubernetes manifests give the full command, e.g. ["optiinfra", "receiver", ...]).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY optiinfra ./optiinfra
COPY exporter ./exporter
COPY rules ./rules
COPY alertmanager ./alertmanager
COPY grafana ./grafana
COPY demo ./demo
COPY orchestrator ./orchestrator
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    OPTIINFRA_HEALTH_URL=http://127.0.0.1:9400/health
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl \
    && rm -rf /wheels \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin optiinfra
USER 10001
EXPOSE 9400
# No curl in the slim image: the health check is Python's urllib (non-2xx or no answer -> unhealthy).
# Other commands in this image set OPTIINFRA_HEALTH_URL to their own /health.
HEALTHCHECK --interval=15s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['OPTIINFRA_HEALTH_URL'], timeout=4)"]
CMD ["optiinfra", "exporter"]
