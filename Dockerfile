# syntax=docker/dockerfile:1
# Images of the postmarket CLI, one per side of the pipeline:
#   docker build --target central   -t postmarket:central .    # workers, evidence sink, registry, reports, dashboards
#   docker build --target collector -t postmarket:collector .  # the hospital collector: no Faust, no SQLAlchemy
# Both run as an unprivileged user with ENTRYPOINT ["postmarket"], so `docker run IMAGE worker`
# is `postmarket worker`; tests/deploy checks every command below is a real CLI command.
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# --- build: one virtual environment per image, pinned by constraints.txt ------------------
FROM base AS source
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY postmarket ./postmarket
COPY collectors ./collectors
COPY streams ./streams
COPY detectors ./detectors
COPY dashboards ./dashboards
COPY simulator ./simulator
COPY evidence ./evidence
COPY launcher ./launcher

FROM source AS build-central
RUN python -m venv /opt/postmarket \
 && /opt/postmarket/bin/pip install -c constraints.txt '.[worker,dashboards]'

FROM source AS build-collector
RUN python -m venv /opt/postmarket \
 && /opt/postmarket/bin/pip install -c constraints.txt '.[collector]'

# --- runtime: no compilers, no source tree, a fixed non-root uid ----------------------------
FROM base AS runtime
# A fixed uid/gid lets hosts and Kubernetes (runAsUser, fsGroup) grant file access to it.
RUN groupadd --system --gid 10001 postmarket \
 && useradd --system --uid 10001 --gid postmarket --home-dir /var/lib/postmarket \
        --shell /usr/sbin/nologin postmarket \
 && install -d -o postmarket -g postmarket -m 0750 \
        /var/lib/postmarket /var/lib/postmarket/state /var/lib/postmarket/inbox
ENV PATH=/opt/postmarket/bin:$PATH \
    POSTMARKET_HOME=/var/lib/postmarket
WORKDIR /var/lib/postmarket
USER 10001:10001
ENTRYPOINT ["postmarket"]
CMD ["--help"]

# The hospital side: inbox, C-STORE SCP and outbox; the key comes in as a file at run time.
FROM runtime AS collector
COPY --from=build-collector /opt/postmarket /opt/postmarket
VOLUME ["/var/lib/postmarket/state"]
EXPOSE 9465 11112
CMD ["collector", "run", "--config", "/etc/postmarket/collector.toml"]

# The manufacturer side (last, so a plain `docker build .` gives it): workers by default;
# `evidence sink`, `registry ...`, `report ...`, `dashboards publish ...` as the command.
FROM runtime AS central
COPY --from=build-central /opt/postmarket /opt/postmarket
EXPOSE 9464
CMD ["worker"]
