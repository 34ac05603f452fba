# CI only (docker-compose.ci.yml): Prometheus from Debian's package, standing in for
# prom/prometheus, which cannot be pulled here: same entrypoint (the prometheus binary, flags
# as the command), data in /prometheus, wget for the health check.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
RUN set -eu; \
    apt-get update -q; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus wget; \
    rm -rf /var/lib/apt/lists/*; \
    mkdir -p /prometheus /etc/prometheus; \
    chown prometheus:prometheus /prometheus
USER prometheus
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
