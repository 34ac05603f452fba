# CI only (docker-compose.ci.yml): moto's S3 server standing in for MinIO, which cannot be
# pulled here. Same port (9000), any keys accepted.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}
COPY infra/docker/extras/ /tmp/build/
COPY constraints.txt /tmp/constraints.txt
RUN set -eu; \
    if [ -s /tmp/build/ca-certificates.crt ]; then export PIP_CERT=/tmp/build/ca-certificates.crt; fi; \
    python3 -m venv /opt/moto; \
    /opt/moto/bin/pip install --quiet --no-cache-dir --find-links /tmp/build/wheels \
        -c /tmp/constraints.txt "moto[server]"; \
    rm -rf /tmp/build /tmp/constraints.txt; \
    useradd --system --uid 10002 moto
USER moto
EXPOSE 9000
ENTRYPOINT ["/opt/moto/bin/moto_server"]
CMD ["-H", "0.0.0.0", "-p", "9000"]
