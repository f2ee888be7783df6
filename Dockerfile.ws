# The ws service: the WebSocket-only Channels application over Daphne on
# 0.0.0.0:8001 (/ws/, plus /healthz and /readyz over HTTP).
# Build: docker build -f Dockerfile.ws .
# Same dependencies as Dockerfile.web: uv.lock has one dependency set and
# nothing in it is specific to either service (docs/containers.md).

# ---------------------------------------------------------------------------
# Build stage: the locked dependencies in /opt/venv, nothing else.
# ---------------------------------------------------------------------------
FROM python:3.13-slim AS build

RUN pip install --no-cache-dir uv==0.13.9

# /usr/local/bin/python3 is the image's own interpreter in the official image
# and in the local stand-in alike; uv must never download another one.
ENV UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_PYTHON=/usr/local/bin/python3 \
    UV_PYTHON_DOWNLOADS=never \
    UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1

WORKDIR /src
COPY pyproject.toml uv.lock .python-version ./
# --locked fails the build when uv.lock is out of date with pyproject.toml;
# --no-install-project: the code is copied into the run stage, not installed.
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-install-project

# ---------------------------------------------------------------------------
# Run stage: the environment, the code, an unprivileged user.
# ---------------------------------------------------------------------------
FROM python:3.13-slim AS run

RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin app

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DJANGO_SETTINGS_MODULE=shared.settings \
    SERVICE_NAME=ws \
    METRICS_PORT=9100

WORKDIR /app
COPY --from=build /opt/venv /opt/venv
COPY shared/ shared/
COPY web_service/ web_service/
COPY ws_service/ ws_service/
COPY clients/js/src/ clients/js/src/
# STATIC_ROOT (shared settings): the ws service serves no static files and
# does not build Django's HTTP handler (WhiteNoise), so an empty directory is
# all it needs, kept so that both images agree on the settings' paths.
RUN python -m compileall -q shared web_service ws_service \
 && mkdir staticfiles

USER 10001:10001
# 8001: WebSockets and /healthz, /readyz (what the proxy routes to);
# 9100: Prometheus /metrics, internal only (never routed by the proxy).
EXPOSE 8001 9100
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-m", "shared.probe", "http://127.0.0.1:8001/healthz"]
# The ws launcher: Daphne (or Uvicorn with WS_SERVER=uvicorn) for
# ws_service.asgi:application on 0.0.0.0:8001, in this process (signals reach
# the server directly) or as WS_WORKERS processes on one shared socket, with
# timeouts from WS_* variables instead of the servers' defaults (README: configuration).
CMD ["python", "-m", "ws_service"]
