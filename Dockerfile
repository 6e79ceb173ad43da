# Two images from one file:
#   --target adapters       the `adapters` CLI (the project, with CPU-only torch)
#   --target mlflow-server  an MLflow tracking server with the PostgreSQL and S3 clients
# docker-compose.yml builds both.

FROM python:3.11-slim AS python-base
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

FROM python-base AS mlflow-server
# the auth extra: the basic-auth app (--app-name basic-auth) needs Flask-WTF
RUN pip install "mlflow[auth]==3.17.*" "psycopg[binary]>=3.1" "boto3>=1.34"
RUN useradd --create-home --uid 10001 mlflow && mkdir /var/lib/mlflow-auth && chown mlflow /var/lib/mlflow-auth
USER mlflow
WORKDIR /home/mlflow
EXPOSE 5000
CMD ["mlflow", "server", "--host", "0.0.0.0", "--port", "5000"]

FROM python-base AS adapters
# torch first, from the CPU index: letting the project pull it in would fetch a multi-GB CUDA build.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
WORKDIR /src
# Metadata before code, so editing code does not re-resolve the dependencies' layer.
COPY pyproject.toml setup.py README.md ./
COPY adapterlab ./adapterlab
COPY registry ./registry
COPY training ./training
COPY cli ./cli
COPY migrations ./migrations
RUN pip install ".[quickstart]"
# /data is open to any user (sticky, like /tmp): compose runs the CLI as the caller's uid, so that
# files it writes into the caller's folder are theirs. HOME=/data keeps caches in the volume.
RUN useradd --create-home --uid 10001 adapterlab && mkdir /data && chown adapterlab /data && chmod 1777 /data
USER adapterlab
ENV ADAPTERLAB_HOME=/data HOME=/data
WORKDIR /data
ENTRYPOINT ["adapters"]
CMD ["--help"]
