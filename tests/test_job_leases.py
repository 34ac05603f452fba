"""Job leases (gateway/store.py): two gateways on one database never run a job twice,
and a job of a gateway that died is taken over once its lease expires.  Time is
passed in explicitly: nothing here waits for a clock."""
from __future__ import annotations

from datetime import timedelta

import pytest

from mlplatform.gateway.store import REQUESTED, RUNNING, SUCCEEDED, Store, now


@pytest.fixture
def gateways(tmp_path):
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    return Store(url), Store(url)  # two gateways, one database


def test_a_leased_job_is_not_claimed_by_another_gateway(gateways):
    first, second = gateways
    job = first.add_job("team", "m", "t", "in.csv", "k")
    claimed = first.claim_next("gateway-a", lease_seconds=30)
    assert claimed.id == job.id and claimed.owner == "gateway-a"
    assert second.claim_next("gateway-b", lease_seconds=30) is None
    assert second.claim_next("gateway-b", 30, at=now() + timedelta(seconds=29)) is None


def test_an_expired_lease_is_taken_over_and_the_old_owner_cannot_finish(gateways, caplog):
    first, second = gateways
    job = first.add_job("team", "m", "t", "in.csv", "k")
    first.claim_next("gateway-a", lease_seconds=30)
    later = now() + timedelta(seconds=31)  # gateway-a died: no heartbeat for 31 s
    with caplog.at_level("WARNING", logger="mlplatform.gateway"):
        taken = second.claim_next("gateway-b", 30, at=later)
    assert taken.id == job.id and taken.owner == "gateway-b" and taken.status == RUNNING
    assert f"job {job.id} re-queued: the lease of gateway-a expired" in caplog.text
    assert not first.heartbeat(job.id, "gateway-a", 30)
    assert not first.finish(job.id, owner="gateway-a", error="stale runner")
    assert second.finish(job.id, owner="gateway-b", output_name="out", output_key="k2")
    assert first.job(job.id).status == SUCCEEDED


def test_a_heartbeat_keeps_the_lease(gateways):
    first, second = gateways
    job = first.add_job("team", "m", "t", "in.csv", "k")
    first.claim_next("gateway-a", lease_seconds=30)
    assert first.heartbeat(job.id, "gateway-a", lease_seconds=300)
    assert second.claim_next("gateway-b", 30, at=now() + timedelta(seconds=200)) is None


def test_a_released_job_is_requested_again_at_once(gateways):
    first, second = gateways
    job = first.add_job("team", "m", "t", "in.csv", "k")
    first.claim_next("gateway-a", lease_seconds=30)
    assert first.release(job.id, "gateway-a")
    assert first.job(job.id).status == REQUESTED
    assert second.claim_next("gateway-b", lease_seconds=30).id == job.id


def test_a_database_made_before_leases_gets_the_columns(tmp_path):
    import sqlite3

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:  # the job table as the previous release made it
        db.execute("CREATE TABLE jobs (id VARCHAR(32) PRIMARY KEY, \"group\" VARCHAR(200), "
                   "model VARCHAR(200), target VARCHAR(200), status VARCHAR(16), "
                   "input_name VARCHAR(500), input_key VARCHAR(1000), output_name VARCHAR(500), "
                   "output_key VARCHAR(1000), error TEXT, created_at DATETIME, "
                   "started_at DATETIME, finished_at DATETIME)")
    store = Store(f"sqlite:///{path}")
    job = store.add_job("team", "m", "t", "in.csv", "k")
    assert store.claim_next("gateway-a", lease_seconds=30).id == job.id
