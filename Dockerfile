# Tokentrail's server image: `tokentrail collector`, `tokentrail web`, `tokentrail migrate` and the
# other commands, against a ClickHouse server (TOKENTRAIL_CLICKHOUSE_URL) or, with `tokentrail up`
# and nothing else set, the embedded database in the data volume.
#
#   docker build -t tokentrail .
#
# deploy/docker-compose.yml and deploy/kubernetes/ run it; docs/production.md explains them.
ARG PYTHON_IMAGE=python:3.11-slim
FROM ${PYTHON_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The servers run as this user, never as root; its home is the data directory.
RUN groupadd --system --gid 10001 tokentrail \
    && useradd --system --uid 10001 --gid tokentrail --home-dir /var/lib/tokentrail \
        --shell /usr/sbin/nologin tokentrail \
    && install -d -o tokentrail -g tokentrail -m 0750 /var/lib/tokentrail

# The package with its server extras, as `make install` installs it (without the dev extras):
# the collector, the web UI, the migrations and the embedded engine.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY migrations ./migrations
COPY instrumentation ./instrumentation
COPY collector ./collector
COPY web ./web
RUN pip install '.[server]' && cd / && rm -rf /src
COPY deploy/healthcheck.py /usr/local/lib/tokentrail/healthcheck.py

# The spool (collectors), the generated sign-in key (web, without TOKENTRAIL_SECRET_KEY) and the
# embedded database (`tokentrail up`) live here. Both servers listen on every address of the
# container; the web UI still refuses to serve without sign-in (TOKENTRAIL_AUTH) unless told to.
ENV TOKENTRAIL_DATA_DIR=/var/lib/tokentrail \
    TOKENTRAIL_HOST=0.0.0.0 \
    TOKENTRAIL_UI_HOST=0.0.0.0
VOLUME ["/var/lib/tokentrail"]
WORKDIR /var/lib/tokentrail
USER 10001:10001

# OTLP/gRPC, OTLP/HTTP (with /health, /metrics, /api/status) and the web UI
EXPOSE 4317 4318 4320

# Asks /health of a collector, or the web UI of a `web` container; a one-off command counts as
# healthy (deploy/healthcheck.py). Python, since the slim image has no curl.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "/usr/local/lib/tokentrail/healthcheck.py"]

# SIGTERM lets the collector's writer drain the spool first: give it time (`docker stop -t 60`,
# `stop_grace_period`, `terminationGracePeriodSeconds`).
STOPSIGNAL SIGTERM
ENTRYPOINT ["tokentrail"]
CMD ["up"]
