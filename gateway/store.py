"""Job state and access tokens, in one SQLAlchemy database (SQLite by default).

Any SQLAlchemy URL works (``MLPLATFORM_GATEWAY_DATABASE_URL``), so a gateway
restart — or several gateways on one PostgreSQL — loses no job.  Tokens are
stored as SHA-256 hashes only; the token itself is shown once, at creation.
"""
from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import List, Optional

from sqlalchemy import Boolean, DateTime, String, Text, create_engine, select, update
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

REQUESTED, RUNNING, SUCCEEDED, FAILED = "Requested", "Running", "Succeeded", "Failed"
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


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Store:
    def __init__(self, url: str):
        options = {"connect_args": {"check_same_thread": False}} if url.startswith("sqlite") else {}
        if url.startswith("sqlite:///") and len(url) > len("sqlite:///"):
            Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        self.engine = create_engine(url, pool_pre_ping=True, **options)
        Base.metadata.create_all(self.engine)

    # -------------------------------------------------------- tokens

    def create_token(self, group: str) -> tuple:
        """A new token for ``group``: (id, token). Only the token's hash is stored."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        token_id = secrets.token_hex(6)
        with Session(self.engine) as session, session.begin():
            session.add(Token(id=token_id, group=group, digest=digest(token), created_at=now()))
        return token_id, token

    def group_of(self, token: str) -> Optional[str]:
        with Session(self.engine) as session:
            row = session.scalar(select(Token).where(Token.digest == digest(token)))
            return row.group if row is not None and not row.revoked else None

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

    def claim_next(self) -> Optional[Job]:
        """Move the oldest Requested job to Running (atomically: one claimer wins)."""
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            job = session.scalar(select(Job).where(Job.status == REQUESTED)
                                 .order_by(Job.created_at).limit(1))
            if job is None:
                return None
            claimed = session.execute(update(Job).where(Job.id == job.id, Job.status == REQUESTED)
                                      .values(status=RUNNING, started_at=now())).rowcount
            return session.get(Job, job.id) if claimed else None

    def finish(self, job_id: str, *, output_name: Optional[str] = None,
               output_key: Optional[str] = None, error: Optional[str] = None) -> None:
        values = {"status": FAILED if error else SUCCEEDED, "finished_at": now(),
                  "output_name": output_name, "output_key": output_key, "error": error}
        with Session(self.engine) as session, session.begin():
            session.execute(update(Job).where(Job.id == job_id).values(**values))

    def requeue_running(self) -> int:
        """Jobs left Running by a gateway that stopped: run them again."""
        with Session(self.engine) as session, session.begin():
            return session.execute(update(Job).where(Job.status == RUNNING)
                                   .values(status=REQUESTED, started_at=None)).rowcount
