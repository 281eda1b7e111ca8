"""Column declarations the models share, as SQLAlchemy ``Annotated`` types.

A kind of column (a uuid key, a Discord id, a creation time) is declared once here, so two
tables cannot drift apart on its type or default, and ``created_at: Mapped[DefaultNow]`` says
what the column is.  ``Mapped[X | None]`` makes any of them nullable; a local
``mapped_column(...)`` adds what is particular to one table (an index, a primary key).

The ``...InDb`` variants also carry the database's own default (``now()``), for the tables
whose migrations gave them one; the DDL of every table is what the migrations create.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from sqlalchemy import String, Uuid, func
from sqlalchemy.orm import mapped_column

from schema.base import UTCDateTime, utcnow

__all__ = [
    "DefaultNow",
    "DefaultNowInDb",
    "Snowflake",
    "Timestamp",
    "UpdatedAt",
    "UpdatedAtInDb",
    "UuidPk",
]

#: A random uuid primary key, made by Python.
UuidPk = Annotated[uuid.UUID, mapped_column(Uuid, primary_key=True, default=uuid.uuid4)]
#: A Discord id (guild, channel, user): a snowflake of at most 20 digits, kept as text.
Snowflake = Annotated[str, mapped_column(String(32))]
#: A moment, stored with its zone and read back as aware UTC.
Timestamp = Annotated[datetime, mapped_column(UTCDateTime)]
#: A moment that defaults to when the row is inserted.
DefaultNow = Annotated[datetime, mapped_column(UTCDateTime, default=utcnow)]
DefaultNowInDb = Annotated[
    datetime, mapped_column(UTCDateTime, default=utcnow, server_default=func.now())
]
#: When the row was last written (by the ORM).
UpdatedAt = Annotated[datetime, mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)]
UpdatedAtInDb = Annotated[
    datetime,
    mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow, server_default=func.now()),
]
