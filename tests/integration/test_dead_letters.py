"""Dead letters on PostgreSQL: two copies of a task recording theirs at once make one row."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime

from sqlalchemy import select

from schema.models.jobs import DeadLetter
from shared.db.engine import make_engine, make_sessionmaker
from shared.db.migrate import upgrade
from shared.pipeline.deadletters import record_dead_letter


def test_concurrent_records_of_one_task_make_one_row(postgres_url: str) -> None:
    upgrade(postgres_url)
    engine = make_engine(postgres_url, pool_size=8, max_overflow=0)
    factory = make_sessionmaker(engine)
    task_id = str(uuid.uuid4())
    start = threading.Barrier(8)
    errors: list[BaseException] = []
    # Copies commit in any order, not in the order of their clocks.
    seen = [datetime(2026, 1, 1, 12, 0, copy, tzinfo=UTC) for copy in range(8)]

    def record(copy: int) -> None:
        start.wait()
        try:
            record_dead_letter(
                factory,
                task_id=task_id,
                task_name="summarybot.fetch",
                job_id=None,
                args=[],
                error=f"copy {copy}",
                traceback=None,
                retries=copy,
                now=seen[copy],
            )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=record, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with factory() as session:
        (row,) = session.scalars(select(DeadLetter).where(DeadLetter.task_id == task_id)).all()
        assert row.error.startswith("copy ")
        assert (row.first_seen, row.last_seen) == (min(seen), max(seen))
    engine.dispose()
