"""Conversations a client sent through the API, stored until their job is purged.

An upload is the raw JSON the client sent (a DiscordChatExporter export or a message array), kept
as ``upload_chunks`` rows of at most :data:`CHUNK_BYTES` each, written as the request body
arrives and read back as a stream by the fetch stage, so neither side ever holds a whole upload
in memory.  Workers on other hosts read it from here; nothing lives on one machine's disk.

``job_id`` is set when the job that summarizes it is recorded; deleting the job (retention)
deletes the upload and its chunks by foreign-key cascade.  An upload without a job is one whose
request never finished: the retention sweep removes it after an hour.
"""

from __future__ import annotations

import uuid

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, LargeBinary
from sqlalchemy.orm import Mapped, mapped_column

from schema.base import Base
from schema.models.columns import DefaultNow, Snowflake, UuidPk

__all__ = ["CHUNK_BYTES", "Upload", "UploadChunk"]

#: Size of every stored chunk but the last (the reader seeks by it).
CHUNK_BYTES = 1024 * 1024


class Upload(Base):
    """One stored upload: whose it is, how large, and the job that reads it."""

    __tablename__ = "uploads"
    __table_args__ = (Index("ix_uploads_guild_created", "guild_id", "created_at"),)

    id: Mapped[UuidPk]
    guild_id: Mapped[Snowflake | None]
    job_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), unique=True
    )
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[DefaultNow]


class UploadChunk(Base):
    """Bytes ``seq * CHUNK_BYTES`` onwards of an upload."""

    __tablename__ = "upload_chunks"

    upload_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("uploads.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
