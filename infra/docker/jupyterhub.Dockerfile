# JupyterHub for the compose stack: the platform image plus the hub, JupyterLab and the
# proxy (Debian's Node.js, `npm ci` of infra/jupyterhub's lock file), the hub's
# configuration (infra/jupyterhub/jupyterhub_config.py) and the notebooks every new user
# gets. Role: `jupyterhub` (scripts/container.py); the password from the environment only.
ARG PLATFORM_IMAGE=mlplatform/platform:0.1.0
FROM ${PLATFORM_IMAGE}
USER root
COPY infra/docker/extras/ /tmp/build/
COPY constraints.txt /tmp/constraints.txt
COPY infra/jupyterhub/package.json infra/jupyterhub/package-lock.json /opt/jupyterhub/
RUN set -eu; \
    if [ -s /tmp/build/ca-certificates.crt ]; then \
        export PIP_CERT=/tmp/build/ca-certificates.crt NODE_EXTRA_CA_CERTS=/tmp/build/ca-certificates.crt; fi; \
    apt-get update -q; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nodejs npm; \
    rm -rf /var/lib/apt/lists/*; \
    npm ci --prefix /opt/jupyterhub --no-audit --no-fund --loglevel=error; \
    DEBIAN_FRONTEND=noninteractive apt-get purge -y -q npm; \
    DEBIAN_FRONTEND=noninteractive apt-get autoremove -y -q; \
    pip install --quiet --find-links /tmp/build/wheels -c /tmp/constraints.txt \
        jupyterhub jupyterlab ipykernel nbformat; \
    rm -rf /tmp/build /tmp/constraints.txt /root/.npm; \
    # the hub's volume mount point: a new named volume takes this owner
    mkdir -p /var/lib/mlplatform/jupyterhub; \
    chown mlplatform:mlplatform /var/lib/mlplatform/jupyterhub
COPY infra/jupyterhub/jupyterhub_config.py /opt/jupyterhub/
COPY notebooks /opt/jupyterhub/notebooks
COPY examples /opt/jupyterhub/examples
# The hub runs as root: it gives every user an OS account of their own and runs their
# server as that account (compose drops every capability but the few this takes).
ENV MLPLATFORM_JUPYTERHUB_ACCOUNTS=per-user \
    MLPLATFORM_JUPYTERHUB_CONFIG=/opt/jupyterhub/jupyterhub_config.py \
    MLPLATFORM_JUPYTERHUB_PROXY=/opt/jupyterhub/node_modules/.bin/configurable-http-proxy \
    MLPLATFORM_JUPYTERHUB_NOTEBOOKS=/opt/jupyterhub/notebooks \
    MLPLATFORM_EXAMPLES=/opt/jupyterhub/examples
EXPOSE 6000
CMD ["jupyterhub"]
