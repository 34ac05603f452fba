-- Run once by PostgreSQL's image when its data volume is new (/docker-entrypoint-initdb.d):
-- the feature store is POSTGRES_DB (features); MLflow's registry and the gateway's jobs,
-- tokens and prediction log get databases of their own on the same server.
CREATE DATABASE mlflow;
CREATE DATABASE gateway;
