"""Job state and access tokens, in one SQLAlchemy database (SQLite by default).

Any SQLAlchemy URL works (``MLPLATFORM_GATEWAY_DATABASE_URL``), so a gateway
restart — or several gateways on one PostgreSQL — loses no job and runs none
twice: a gateway *leases* the job it runs (``owner`` + ``lease_until``, renewed
by a heartbeat while the job runs).  A Running job goes back to work only when
its lease has expired — its gateway died — never because another gateway started.  Tokens are
stored as SHA-256 hashes only; the token itself is shown once, at creation.
"""
from __future__ import annotations

import hashlib
import secrets
import uuid
import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import List, Optional

from sqlalchemy import (
    Boolean,
    DateTime,
    Integer,
    String,
    Text,
    and_,
    create_engine,
    event,
    func,
    inspect,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from .scopes import Grant, stored

REQUESTED, RUNNING, SUCCEEDED, FAILED = "Requested", "Running", "Succeeded", "Failed"
log = logging.getLogger("mlplatform.gateway")
TOKEN_PREFIX = "mlp_"


def now() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    group: Mapped[str] = mapped_column(String(200), index=True)
    model: Mapped[str] = mapped_column(String(200))
    target: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), index=True, default=REQUESTED)
    input_name: Mapped[str] = mapped_column(String(500))
    input_key: Mapped[str] = mapped_column(String(1000))
    output_name: Mapped[Optional[str]] = mapped_column(String(500), nullable=True)
    output_key: Mapped[Optional[str]] = mapped_column(String(1000), nullable=True)
    error: Mapped[Optional[str]] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    started_at: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True), nullable=True)
    # The gateway running it and until when its claim holds (renewed by its heartbeat).
    owner: Mapped[Optional[str]] = mapped_column(String(64), nullable=True)
    lease_until: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True),
                                                            nullable=True)

    def public(self) -> dict:
        def stamp(value: Optional[datetime]) -> Optional[str]:
            if value is None:
                return None
            if value.tzinfo is None:  # SQLite keeps no time zone; we store UTC
                value = value.replace(tzinfo=timezone.utc)
            return value.isoformat()

        return {"id": self.id, "model": self.model, "target": self.target, "status": self.status,
                "input": self.input_name, "output": self.output_name, "error": self.error,
                "created_at": stamp(self.created_at), "started_at": stamp(self.started_at),
                "finished_at": stamp(self.finished_at)}


class Token(Base):
    __tablename__ = "tokens"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    group: Mapped[str] = mapped_column(String(200), index=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    # Space-separated (scopes.py); NULL: made before scopes existed, so admin.
    scopes: Mapped[Optional[str]] = mapped_column(Text, nullable=True)

    @property
    def grant(self) -> Grant:
        return Grant.of(self.id, self.group, self.scopes)


def _naive(moment: datetime) -> datetime:
    """Leases are compared in UTC without a time zone: SQLite stores none."""
    return moment.astimezone(timezone.utc).replace(tzinfo=None)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


PIPELINE_TARGET = "mlplatform:pipeline"  # a job that runs the training pipeline


class Training(Base):
    """A retraining started with ``PUT /retrain``: its integer id (the seed's
    ``experiment_id``) leads to its job, its MLflow parent run and its new version."""

    __tablename__ = "trainings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(String(32), index=True)
    group: Mapped[str] = mapped_column(String(200), index=True)
    model: Mapped[str] = mapped_column(String(200), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    run_id: Mapped[Optional[str]] = mapped_column(String(64), nullable=True)
    experiment_id: Mapped[Optional[str]] = mapped_column(String(64), nullable=True)
    version: Mapped[Optional[str]] = mapped_column(String(32), nullable=True)


def open_engine(url: str):
    """An engine for any SQLAlchemy URL; a SQLite file's folder is created, and its
    connections may be used from the worker threads the gateway writes from."""
    options: dict = {}
    if url.startswith("sqlite"):
        options["connect_args"] = {"check_same_thread": False}
    elif url.startswith("postgresql"):
        options["connect_args"] = {"connect_timeout": 5}  # an outage fails fast, no hang
    if url.startswith("sqlite:///") and len(url) > len("sqlite:///"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, pool_pre_ping=True, **options)
    if url.startswith("sqlite:///") and len(url) > len("sqlite:///"):
        event.listen(engine, "connect", _sqlite_write_ahead)
    return engine


def _sqlite_write_ahead(connection, _record) -> None:
    # A write-ahead log: readers (the pipeline, /predictions) never block the writers, and
    # a commit appends to the log instead of syncing the database file: the prediction
    # log's writer spent ~3/4 of its time in COMMIT's fsync (py-spy, bench_monitoring).
    # NORMAL stays consistent after a crash; a power cut may lose the last commits.
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


class Store:
    def __init__(self, url: str):
        self.engine = open_engine(url)
        Base.metadata.create_all(self.engine)
        self._add_lease_columns()

    def _add_lease_columns(self) -> None:
        """Tables made by earlier versions get their new columns: a job table its lease,
        a token table its scopes (NULL for the tokens already there: admin, flagged)."""
        for table, columns in (("jobs", (("owner", "VARCHAR(64)"), ("lease_until", "TIMESTAMP"))),
                               ("tokens", (("scopes", "TEXT"),))):
            present = {column["name"] for column in inspect(self.engine).get_columns(table)}
            with self.engine.begin() as connection:
                for name, kind in columns:
                    if name not in present:
                        connection.execute(text(f"ALTER TABLE {table} ADD COLUMN {name} {kind}"))

    def job_counts(self) -> dict:
        """Jobs by state (every state present, 0 when none)."""
        counts = dict.fromkeys((REQUESTED, RUNNING, SUCCEEDED, FAILED), 0)
        with Session(self.engine) as session:
            for status, count in session.execute(
                    select(Job.status, func.count()).group_by(Job.status)):
                counts[status] = count
        return counts

    # -------------------------------------------------------- tokens

    def create_token(self, group: str, scopes) -> tuple:
        """A new token for ``group`` allowed ``scopes`` (scopes.py; ScopeError for an
        unknown one): (id, token). Only the token's hash is stored."""
        allowed = stored(scopes)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        token_id = secrets.token_hex(6)
        with Session(self.engine) as session, session.begin():
            session.add(Token(id=token_id, group=group, digest=digest(token), created_at=now(),
                              scopes=allowed))
        return token_id, token

    def grant_of(self, token: str) -> Optional[Grant]:
        """What a valid token may do; None for an unknown or revoked one."""
        with Session(self.engine) as session:
            row = session.scalar(select(Token).where(Token.digest == digest(token)))
            return row.grant if row is not None and not row.revoked else None

    def tokens(self) -> List[Token]:
        with Session(self.engine, expire_on_commit=False) as session:
            return list(session.scalars(select(Token).order_by(Token.created_at)))

    def revoke(self, token_id: str) -> bool:
        with Session(self.engine) as session, session.begin():
            return session.execute(update(Token).where(Token.id == token_id)
                                   .values(revoked=True)).rowcount == 1

    # -------------------------------------------------------- jobs

    def add_job(self, group: str, model: str, target: str, input_name: str,
                input_key: str, job_id: Optional[str] = None) -> Job:
        job = Job(id=job_id or uuid.uuid4().hex, group=group, model=model, target=target,
                  input_name=input_name, input_key=input_key, status=REQUESTED, created_at=now())
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            session.add(job)
        return job

    def job(self, job_id: str) -> Optional[Job]:
        with Session(self.engine, expire_on_commit=False) as session:
            return session.get(Job, job_id)

    def claim_next(self, owner: str, lease_seconds: float,
                   at: Optional[datetime] = None) -> Optional[Job]:
        """Lease the oldest job that is Requested, or Running with an expired lease (its
        gateway died): one transaction, one claimer wins."""
        at = at or now()
        claimable = or_(Job.status == REQUESTED,
                        and_(Job.status == RUNNING, Job.lease_until < _naive(at)))
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            job = session.scalar(select(Job).where(claimable).order_by(Job.created_at).limit(1))
            if job is None:
                return None
            previous = (job.status, job.owner, job.lease_until)
            claimed = session.execute(
                update(Job).where(Job.id == job.id, claimable)
                .values(status=RUNNING, started_at=at, owner=owner,
                        lease_until=_naive(at + timedelta(seconds=lease_seconds)))).rowcount
            if not claimed:
                return None
            if previous[0] == RUNNING:
                log.warning("job %s re-queued: the lease of %s expired at %s; now run by %s",
                            job.id, previous[1], previous[2], owner)
            return session.get(Job, job.id)

    def heartbeat(self, job_id: str, owner: str, lease_seconds: float) -> bool:
        """Renew the lease; False if the job is no longer this owner's."""
        with Session(self.engine) as session, session.begin():
            return bool(session.execute(
                update(Job).where(Job.id == job_id, Job.owner == owner, Job.status == RUNNING)
                .values(lease_until=_naive(now() + timedelta(seconds=lease_seconds)))).rowcount)

    def release(self, job_id: str, owner: str) -> bool:
        """Give a job back (its gateway is stopping): Requested again at once."""
        with Session(self.engine) as session, session.begin():
            return bool(session.execute(
                update(Job).where(Job.id == job_id, Job.owner == owner, Job.status == RUNNING)
                .values(status=REQUESTED, owner=None, lease_until=None,
                        started_at=None)).rowcount)

    def finish(self, job_id: str, *, output_name: Optional[str] = None,
               output_key: Optional[str] = None, error: Optional[str] = None,
               owner: Optional[str] = None) -> bool:
        """Record the outcome; with ``owner``, only while the job is still that owner's (a
        runner whose lease was taken over must not overwrite the new run)."""
        values = {"status": FAILED if error else SUCCEEDED, "finished_at": now(),
                  "output_name": output_name, "output_key": output_key, "error": error,
                  "lease_until": None}
        condition = [Job.id == job_id] + ([Job.owner == owner] if owner else [])
        with Session(self.engine) as session, session.begin():
            return bool(session.execute(update(Job).where(*condition).values(**values)).rowcount)

    # -------------------------------------------------------- trainings

    def add_training(self, group: str, model: str) -> Optional[Training]:
        """A pipeline job for ``model`` and its training id, in one transaction; None if one
        is already Requested or Running for the model."""
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            busy = session.scalar(select(Training).join(Job, Job.id == Training.job_id).where(
                Training.model == model, Job.status.in_((REQUESTED, RUNNING))).limit(1))
            if busy is not None:
                return None
            job = Job(id=uuid.uuid4().hex, group=group, model=model, target=PIPELINE_TARGET,
                      input_name="", input_key="", status=REQUESTED, created_at=now())
            training = Training(job_id=job.id, group=group, model=model, created_at=now())
            session.add_all([job, training])
        return training

    def training(self, training_id: int) -> Optional[Training]:
        with Session(self.engine, expire_on_commit=False) as session:
            return session.get(Training, training_id)

    def training_of_job(self, job_id: str) -> Optional[Training]:
        with Session(self.engine, expire_on_commit=False) as session:
            return session.scalar(select(Training).where(Training.job_id == job_id))

    def busy_training(self, model: str) -> Optional[Training]:
        with Session(self.engine, expire_on_commit=False) as session:
            return session.scalar(select(Training).join(Job, Job.id == Training.job_id).where(
                Training.model == model, Job.status.in_((REQUESTED, RUNNING))).limit(1))

    def record_training(self, job_id: str, **values) -> None:
        """The run and version ids as the pipeline learns them."""
        with Session(self.engine) as session, session.begin():
            session.execute(update(Training).where(Training.job_id == job_id).values(**values))

    def trainings_by_version(self, model: str) -> dict:
        """Version -> the id of the training that registered it (the latest, if retried)."""
        with Session(self.engine) as session:
            rows = session.execute(select(Training.version, Training.id).where(
                Training.model == model, Training.version.is_not(None)).order_by(Training.id))
            return {version: training_id for version, training_id in rows}
