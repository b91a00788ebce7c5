# syntax=docker/dockerfile:1
#
# modelhub: the hub and the serving layer in one image; the entrypoint is `modelhub serve`.
#
#   docker build -t modelhub:0.1.0 .                                # CPU TensorFlow (default)
#   docker build --build-arg VARIANT=gpu -t modelhub:0.1.0-gpu .    # CUDA TensorFlow
#   docker build --build-arg VARIANT=tpu -t modelhub:0.1.0-tpu .    # TensorFlow with libtpu
#
#   docker run -p 8080:8080 modelhub:0.1.0                          # role all, local store
#   docker run -p 8080:8080 -e MODELHUB_STORE=s3://bucket/prefix -e AWS_ENDPOINT_URL_S3=... \
#       modelhub:0.1.0 --role serving --device cpu                  # arguments go after the image
#
# The CUDA libraries of the GPU variant come as pip wheels (tensorflow[and-cuda]); only the NVIDIA
# driver comes from the host (NVIDIA container toolkit / device plugin), so both variants share
# the same slim base.

ARG PYTHON_VERSION=3.11

# --- builder: a virtual environment with modelhub and TensorFlow ------------------------------
FROM python:${PYTHON_VERSION}-slim AS builder
# cpu: tensorflow (its CPU kernels) · gpu: tensorflow[and-cuda] · tpu: tensorflow-tpu with libtpu
ARG VARIANT=cpu
# where tensorflow-tpu finds its libtpu wheel
ARG LIBTPU_INDEX=https://storage.googleapis.com/libtpu-tf-releases/index.html
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/modelhub \
 && /opt/modelhub/bin/pip install --upgrade pip
ENV PATH=/opt/modelhub/bin:$PATH
WORKDIR /src

# Dependencies first, from pyproject.toml alone (empty packages stand in for the source), so
# that editing the code does not download TensorFlow again.
COPY pyproject.toml README.md ./
RUN set -eu; \
    for package in modelhub hub serving storage schemas; do \
        mkdir -p "$package" && touch "$package/__init__.py"; \
    done; \
    case "$VARIANT" in \
        cpu) pip install . ;; \
        gpu) pip install ".[gpu]" ;; \
        tpu) pip install . \
             && pip install --force-reinstall --no-deps "tensorflow-tpu>=2.21,<2.22" \
                    --find-links "$LIBTPU_INDEX" \
             && pip install "tensorflow-tpu>=2.21,<2.22" --find-links "$LIBTPU_INDEX" ;; \
        *) echo "VARIANT must be cpu, gpu or tpu, not '$VARIANT'" >&2; exit 1 ;; \
    esac; \
    pip uninstall --yes modelhub; \
    rm -rf modelhub hub serving storage schemas build *.egg-info

# Then modelhub itself (a regular, non-editable install: the source stays behind in this stage).
COPY modelhub ./modelhub
COPY hub ./hub
COPY serving ./serving
COPY storage ./storage
COPY schemas ./schemas
RUN pip install --no-deps . \
 && modelhub --help >/dev/null

# --- runtime: the virtual environment, a non-root user, nothing else -----------------------
FROM python:${PYTHON_VERSION}-slim AS runtime
ARG VARIANT=cpu
LABEL org.opencontainers.image.title="modelhub" \
      org.opencontainers.image.description="TensorFlow model registry and serving (${VARIANT})" \
      org.opencontainers.image.licenses="Apache-2.0"

# A fixed numeric uid/gid, so Kubernetes' runAsNonRoot can check it (k8s/base uses 10001).
RUN groupadd --system --gid 10001 modelhub \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/modelhub --create-home \
        --shell /usr/sbin/nologin modelhub \
 && mkdir -p /var/lib/modelhub /var/cache/modelhub \
 && chown 10001:10001 /var/lib/modelhub /var/cache/modelhub

COPY --from=builder /opt/modelhub /opt/modelhub

# MODELHUB_STORE: a local folder by default (mount a volume there), or s3://bucket/prefix.
# The caches must be writable by the non-root user (an emptyDir on Kubernetes).
ENV PATH=/opt/modelhub/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TF_CPP_MIN_LOG_LEVEL=1 \
    HOME=/home/modelhub \
    MODELHUB_STORE=/var/lib/modelhub/store \
    MODELHUB_SERVING_CACHE=/var/cache/modelhub/serving \
    MODELHUB_CACHE=/var/cache/modelhub/client

USER 10001:10001
WORKDIR /home/modelhub
# 8080: REST (hub API, TF Serving /v1, KServe /v2, metrics) · 8500: gRPC (TF Serving, KServe V2)
EXPOSE 8080 8500

# gunicorn (in the `modelhub serve` process) is PID 1 and gets SIGTERM directly: in-flight
# requests, REST and gRPC, get --graceful-timeout seconds (30 by default) to finish.
# Arguments after the image name (Kubernetes `args`) replace CMD: e.g. `--role serving`.
ENTRYPOINT ["modelhub", "serve", "--host", "0.0.0.0"]
CMD ["--port", "8080"]
