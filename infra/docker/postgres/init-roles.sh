#!/bin/sh
# Run once by PostgreSQL's image when its data volume is new (/docker-entrypoint-initdb.d),
# as the server's superuser (POSTGRES_USER), which no platform component uses afterwards.
# One login role per database, owning only its own: mlflow (the registry and MLflow's
# accounts), gateway (jobs, tokens), features (labelled training data and the prediction
# log). Their passwords come from the environment (secrets) and reach psql through \getenv:
# never a command line, never a file. The same file is infra/k8s/base/postgres/ (a test
# keeps the two equal).
set -eu
for variable in MLFLOW_DB_PASSWORD GATEWAY_DB_PASSWORD FEATURES_DB_PASSWORD; do
  if [ -z "$(printenv "$variable" || true)" ]; then
    echo "init-roles: $variable is not set (one password per database role)" >&2
    exit 1
  fi
done
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "${POSTGRES_DB:-postgres}" <<'SQL'
\getenv mlflow_password MLFLOW_DB_PASSWORD
\getenv gateway_password GATEWAY_DB_PASSWORD
\getenv features_password FEATURES_DB_PASSWORD
CREATE ROLE mlflow LOGIN PASSWORD :'mlflow_password';
CREATE ROLE gateway LOGIN PASSWORD :'gateway_password';
CREATE ROLE features LOGIN PASSWORD :'features_password';
CREATE DATABASE mlflow OWNER mlflow;
CREATE DATABASE mlflow_auth OWNER mlflow;
CREATE DATABASE gateway OWNER gateway;
CREATE DATABASE features OWNER features;
REVOKE ALL ON DATABASE mlflow, mlflow_auth, gateway, features FROM PUBLIC;
SQL
