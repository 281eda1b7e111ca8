"""Stored uploads: conversations a client sent, kept in PostgreSQL for the workers to read.

:class:`UploadWriter` stores a body as it arrives, one ``upload_chunks`` row per
:data:`~schema.models.uploads.CHUNK_BYTES` (one chunk in memory at a time);
:class:`UploadReader` reads it back as a seekable binary stream, one chunk at a time, for the
streaming export reader (:func:`shared.sources.export_file.open_stream`).  Workers on other
hosts read the same rows: nothing lives on one machine's disk.

Life: an upload is written by the API, attached to the job that summarizes it when the job is
recorded (:func:`shared.services.jobs.submit_job`), and deleted with that job by retention
(foreign-key cascade).  :func:`purge_orphans` removes uploads whose request never produced a
job; :func:`erase_member_uploads` deletes every upload that holds a member's id (the honest
way to erase them from a document we cannot rewrite safely).
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import IO

import structlog
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from schema.models.tenancy import ALL_GUILDS
from schema.models.uploads import CHUNK_BYTES, Upload, UploadChunk
from shared.db.locks import lock_guild
from shared.errors import ConflictError, InvalidInputError, PermanentError
from shared.sources.export_file import ExportFile, count_stream, open_stream

__all__ = [
    "GUILD_UPLOAD_BYTES",
    "UPLOAD_NAME",
    "UploadQuotaExceeded",
    "UploadReader",
    "UploadWriter",
    "count_upload",
    "delete_upload",
    "erase_member_uploads",
    "open_upload",
    "purge_orphans",
]

log = structlog.get_logger(__name__)

#: How errors about an upload's content name it (they start ``upload: message at index …``).
UPLOAD_NAME = "upload"

#: What one guild may keep stored in uploads at once, by default (they live as long as their
#: job, so up to the guild's retention): without a ceiling one API key fills PostgreSQL.
GUILD_UPLOAD_BYTES = 1024 * 1024 * 1024


class UploadQuotaExceeded(ConflictError):
    """The guild's stored uploads would exceed its quota."""


#: An upload without a job older than this is a request that died: retention removes it.
ORPHAN_AGE = timedelta(hours=1)


class UploadWriter:
    """Writes one new upload chunk by chunk; :meth:`finish` records its size.

    The ``uploads`` row is committed at once (so an abandoned upload can be found and purged);
    each full chunk is written in its own short transaction as soon as it is complete.
    """

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        *,
        guild_id: str | None,
        now: datetime,
        upload_id: uuid.UUID | None = None,
        max_guild_bytes: int | None = None,
    ) -> None:
        self._factory = session_factory
        self.upload_id = upload_id or uuid.uuid4()
        self.size = 0
        self._seq = 0
        self._buffer = bytearray()
        self._room: int | None = None
        self._quota = max_guild_bytes
        self._guild = guild_id if max_guild_bytes is not None else None
        with session_factory() as session, session.begin():
            if max_guild_bytes is not None and guild_id is not None:
                # Sizes grow chunk by chunk (see _store): uploads still streaming count too.
                used = session.scalar(
                    select(func.coalesce(func.sum(Upload.size), 0)).where(
                        Upload.guild_id == guild_id
                    )
                )
                self._room = max_guild_bytes - int(used or 0)
                if self._room <= 0:
                    raise self._over()
            session.execute(
                insert(Upload).values(id=self.upload_id, guild_id=guild_id, size=0, created_at=now)
            )

    def _over(self) -> UploadQuotaExceeded:
        quota = self._quota or 0
        return UploadQuotaExceeded(
            f"upload: this server's stored uploads would exceed its quota of "
            f"{quota // (1024 * 1024)} MiB; they are kept with their jobs (until retention "
            "removes them): wait for that, or ask the operator for more"
        )

    def write(self, data: bytes) -> None:
        """Append ``data``; every completed chunk is stored before this returns.

        Raises :class:`UploadQuotaExceeded` when the guild's uploads would pass its quota.
        """
        if self._room is not None and self.size + len(data) > self._room:
            raise self._over()
        self._buffer += data
        self.size += len(data)
        while len(self._buffer) >= CHUNK_BYTES:
            self._store(bytes(self._buffer[:CHUNK_BYTES]))
            del self._buffer[:CHUNK_BYTES]

    def _store(self, chunk: bytes) -> None:
        with self._factory() as session, session.begin():
            if self._guild is not None:
                lock_guild(session, "uploads", self._guild)
            session.execute(
                insert(UploadChunk).values(upload_id=self.upload_id, seq=self._seq, data=chunk)
            )
            # The stored size so far, for the quota of uploads streaming at the same time.
            session.execute(
                update(Upload)
                .where(Upload.id == self.upload_id)
                .values(size=Upload.size + len(chunk))
            )
            if self._guild is not None:
                # The room measured at the start is not enough: uploads streaming at the same
                # time each saw all of it.  The guild's total, chunks of the others included,
                # is checked with every chunk (the transaction is rolled back when over).
                used = session.scalar(
                    select(func.coalesce(func.sum(Upload.size), 0)).where(
                        Upload.guild_id == self._guild
                    )
                )
                if int(used or 0) > (self._quota or 0):
                    raise self._over()
        self._seq += 1

    def finish(self) -> uuid.UUID:
        """Store the last partial chunk and the size; the upload's id."""
        if self._buffer:
            self._store(bytes(self._buffer))
            self._buffer.clear()
        with self._factory() as session, session.begin():
            session.execute(
                update(Upload).where(Upload.id == self.upload_id).values(size=self.size)
            )
        return self.upload_id


class UploadReader(io.RawIOBase):
    """A read-only, seekable binary stream over a stored upload (one chunk in memory)."""

    name = UPLOAD_NAME

    def __init__(self, session_factory: sessionmaker[Session], upload_id: uuid.UUID) -> None:
        super().__init__()
        self._factory = session_factory
        self._id = upload_id
        self._pos = 0
        self._chunk = b""
        self._chunk_seq = -1

    def readable(self) -> bool:
        """Always readable."""
        return True

    def seekable(self) -> bool:
        """Seeking is by chunk arithmetic: every chunk but the last is CHUNK_BYTES long."""
        return True

    def tell(self) -> int:
        """The current offset."""
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Move to ``offset`` (from the start, or from the current position)."""
        if whence == io.SEEK_CUR:
            offset += self._pos
        elif whence != io.SEEK_SET:
            raise OSError("an upload is seekable from its start or the current position only")
        if offset < 0:
            raise OSError("negative seek position")
        self._pos = offset
        return offset

    def _load(self, seq: int) -> None:
        with self._factory() as session:
            data = session.scalar(
                select(UploadChunk.data).where(
                    UploadChunk.upload_id == self._id, UploadChunk.seq == seq
                )
            )
        self._chunk = bytes(data) if data is not None else b""
        self._chunk_seq = seq

    def read(self, size: int | None = -1) -> bytes:
        """Up to ``size`` bytes (the rest of the current chunk at most); ``b""`` at the end."""
        self._checkClosed()
        seq, within = divmod(self._pos, CHUNK_BYTES)
        if seq != self._chunk_seq:
            self._load(seq)
        end = len(self._chunk) if size is None or size < 0 else within + size
        data = self._chunk[within:end]
        self._pos += len(data)
        return data

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        """Read into ``buffer``; the number of bytes read."""
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _opener(
    session_factory: sessionmaker[Session], upload_id: uuid.UUID
) -> Callable[[], IO[bytes]]:
    def open_reader() -> IO[bytes]:
        return UploadReader(session_factory, upload_id)  # type: ignore[return-value]

    return open_reader


def _require(
    session_factory: sessionmaker[Session], upload_id: uuid.UUID, guild_id: str | None
) -> None:
    """Refuse an upload that is gone, or that another guild stored (``guild_id`` None: the
    operator, who may read any)."""
    with session_factory() as session:
        found = session.execute(
            select(Upload.id, Upload.guild_id).where(Upload.id == upload_id)
        ).first()
    if found is None:
        raise PermanentError(
            f"upload {upload_id} is gone (erased or purged)",
            user_message="the uploaded conversation is no longer stored (it was erased); "
            "upload it again",
        )
    if guild_id is not None and found.guild_id != guild_id:
        log.warning("uploads.cross_guild", upload_guild=found.guild_id, reader_guild=guild_id)
        raise PermanentError(
            f"upload {upload_id} belongs to guild {found.guild_id}, not to guild {guild_id}",
            user_message="upload is not in this server",
        )


def open_upload(
    session_factory: sessionmaker[Session], upload_id: uuid.UUID, *, guild_id: str | None
) -> ExportFile:
    """Open a stored upload with the streaming export reader (DCE export or message array),
    for a reader acting for ``guild_id`` (None: the operator).

    Raises :class:`PermanentError` when it is no longer stored or another guild stored it
    (nothing is read then), and :class:`InvalidInputError` (naming the message at fault) for
    content that cannot be read.
    """
    _require(session_factory, upload_id, guild_id)
    return open_stream(UPLOAD_NAME, _opener(session_factory, upload_id))


def count_upload(
    session_factory: sessionmaker[Session], upload_id: uuid.UUID, *, guild_id: str | None
) -> int:
    """How many messages a stored upload holds (one streaming pass, nothing built); refused
    like :func:`open_upload`."""
    _require(session_factory, upload_id, guild_id)
    return count_stream(UPLOAD_NAME, _opener(session_factory, upload_id))


def delete_upload(session_factory: sessionmaker[Session], upload_id: uuid.UUID) -> None:
    """Delete an upload and its chunks (nothing happens when it is already gone)."""
    with session_factory() as session, session.begin():
        session.execute(delete(UploadChunk).where(UploadChunk.upload_id == upload_id))
        session.execute(delete(Upload).where(Upload.id == upload_id))


def purge_orphans(session_factory: sessionmaker[Session], *, now: datetime) -> int:
    """Delete uploads that no job claimed within :data:`ORPHAN_AGE` (their request died)."""
    with session_factory() as session:
        ids = session.scalars(
            select(Upload.id).where(Upload.job_id.is_(None), Upload.created_at < now - ORPHAN_AGE)
        ).all()
    for upload_id in ids:
        delete_upload(session_factory, upload_id)
    return len(ids)


def erase_member_uploads(
    session_factory: sessionmaker[Session], *, guild_id: str, user_id: str
) -> int:
    """Delete every stored upload of ``guild_id`` (``"*"``: every guild) holding ``user_id``.

    A match anywhere (author, mention,
    reply) counts: removing one member's messages from a document a client wrote, in whatever
    shape, cannot be done reliably, so the whole upload goes; the summary made from it was
    already scrubbed like any other.  Chunks are scanned one at a time, the end of each kept to
    find an id split across two chunks.
    """
    if not user_id:
        raise InvalidInputError("give the member's id to erase")
    needle = user_id.encode()
    keep = len(needle) - 1
    with session_factory() as session:
        query = select(Upload.id).where(Upload.guild_id.is_not(None))
        if guild_id != ALL_GUILDS:
            query = query.where(Upload.guild_id == guild_id)
        candidates = session.scalars(query).all()
    erased = 0
    for upload_id in candidates:
        reader = UploadReader(session_factory, upload_id)
        tail = b""
        while chunk := reader.read(CHUNK_BYTES):
            if needle in tail + chunk:
                delete_upload(session_factory, upload_id)
                erased += 1
                break
            tail = chunk[-keep:] if keep else b""
    return erased
