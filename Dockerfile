# ReleaseBits: `docker build -t releasebits .`, then
# `docker run -p 8080:8080 -v releasebits-data:/data releasebits` (or `docker compose up -d`).
# The build needs BuildKit (RUN --mount): the default from Docker 23, else DOCKER_BUILDKIT=1.
# No `# syntax=` line: BuildKit's built-in frontend does all this file needs, and naming a
# frontend image would make every build pull it from Docker Hub.
# tests/e2e/test_docker.py builds and runs this image in CI.
# tests/test_dockerfile.py lints this file with hadolint and runs its build steps, ENTRYPOINT/CMD
# and HEALTHCHECK directly in a clean virtualenv.
ARG PYTHON_VERSION=3.11

# Builder: wheels of ReleaseBits and of every dependency, so the runtime stage installs offline
# and carries no build tools or sources.
FROM python:${PYTHON_VERSION}-slim-bookworm AS builder
WORKDIR /src
COPY pyproject.toml README.md ./
COPY exporter ./exporter
COPY storage ./storage
RUN python -m pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:${PYTHON_VERSION}-slim-bookworm
LABEL org.opencontainers.image.title="ReleaseBits" \
      org.opencontainers.image.description="CI/CD deployments, builds and release health as Prometheus metrics" \
      org.opencontainers.image.licenses="MIT"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# Only the wheels built above (--no-index); the bind mount keeps them out of the image layers.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    python -m pip install --no-cache-dir --no-index --find-links=/wheels /wheels/releasebits-*.whl \
    && useradd --system --no-log-init --uid 10001 --user-group --home-dir /data --no-create-home \
       --shell /usr/sbin/nologin releasebits \
    && mkdir /data \
    && chown 10001:10001 /data

# The SQLite database (plus its -wal and -shm files) lives on the /data volume. The server
# listens on all interfaces inside the container; publish the port to choose who reaches it.
ENV RELEASEBITS_DB=/data/releasebits.db \
    RELEASEBITS_HOST=0.0.0.0 \
    RELEASEBITS_PORT=8080
WORKDIR /data
VOLUME ["/data"]
USER 10001:10001
EXPOSE 8080

# The slim image has no curl: Python's urllib asks /healthz (503 when the database is unreadable;
# urlopen raises on any non-2xx answer, which exits 1).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('RELEASEBITS_PORT', '8080') + '/healthz', timeout=4)"]

# Exec form: `releasebits serve` is PID 1 and gets SIGTERM from `docker stop` directly; it
# forwards it to the web server (Granian) and the worker, lets in-flight requests finish and exits 0.
ENTRYPOINT ["releasebits"]
CMD ["serve"]
