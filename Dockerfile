# syntax=docker/dockerfile:1
# streamer: real-time fraud scoring on Kafka, Redis and ONNX Runtime.
#
#   docker build -t streamer .
#   docker run --rm streamer version
#
# Two stages: the builder installs streamer and its runtime dependencies (no test, dev or
# train extras) into a virtual environment; the runtime stage copies that environment,
# the Avro schemas and the model registry's files, and runs as an unprivileged user.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
# A C compiler for the C parts (the Avro codec, the velocity fold, TreeSHAP); only this stage has it.
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# pyproject.toml and README.md (its readme) first: dependency changes rebuild this layer.
COPY pyproject.toml setup.py README.md ./
COPY streamer/ streamer/
RUN pip install --upgrade pip \
 && pip install ".[serve,mlflow]" \
 && pip check \
 && streamer version | tee /dev/stderr | grep -q "Avro codec C)"

FROM ${PYTHON_IMAGE} AS runtime
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="streamer" \
      org.opencontainers.image.description="Real-time card-payment fraud scoring: Kafka in, Redis features, ONNX Runtime, scored Kafka out" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"

# libgomp1: LightGBM's OpenMP runtime (the reason codes' explainer, streamer.model.explainer);
# slim images do not ship it and LightGBM's wheel does not bundle it.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 streamer \
 && useradd --system --uid 10001 --gid streamer --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin streamer

COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
# The package is installed into site-packages, so it cannot find schemas/ beside itself:
# STREAMER_SCHEMAS_DIR points it here. Models resolve against STREAMER_MODELS_DIR.
# Both stay owned by root: the service only reads them (readOnlyRootFilesystem on k8s).
COPY schemas/ /app/schemas/
# .dockerignore lets only models/<name>/<version>/ in (not the training script).
COPY models/ /app/models/

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    STREAMER_SCHEMAS_DIR=/app/schemas \
    STREAMER_MODELS_DIR=/app/models \
    STREAMER_METRICS_PORT=9464 \
    OTEL_SERVICE_NAME=streamer

USER 10001:10001
EXPOSE 9464
# slim has no curl: python's urllib asks /healthz on the metrics port (a 5xx or a refused
# connection raises, so the exit code is non-zero).
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('STREAMER_METRICS_PORT', '9464'), timeout=2)"]

ENTRYPOINT ["streamer"]
CMD ["run"]
