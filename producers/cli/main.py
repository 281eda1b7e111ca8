"""``summarybot``: one console script whose sub-commands start every process and run jobs.

Exit codes: 0 success, 1 the job failed, 2 bad input or settings (one line saying what is
wrong and how to fix it, never a traceback).
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from enum import StrEnum
from importlib import resources as package_files
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from celeryconfig import QUEUES
from producers.cli.common import command_app, fail, load_cli_settings
from shared.errors import ConfigError, PermanentError
from shared.summarize.content import SummaryFormat

if TYPE_CHECKING:
    from producers.cli.jobrun import RunOptions
    from shared.settings import Settings

__all__ = ["cli", "main"]

cli = command_app("summarybot", "Summary Bot NG: summarize Discord conversations.")


def demo_export() -> Path:
    """Path of the bundled demo conversation (real Ubuntu IRC support chat, CC BY 4.0)."""
    return Path(str(package_files.files("shared") / "data" / "demo" / "ubuntu-support.json"))


FormatOpt = Annotated[SummaryFormat, typer.Option("--format", "-f", help="Summary format.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document instead of text.")]
OutputOpt = Annotated[
    Path | None, typer.Option("--output", "-o", help="Also write the summary to this file.")
]
LanguageOpt = Annotated[str | None, typer.Option("--language", help="Summary language (LLM).")]
MaxOpt = Annotated[
    int | None, typer.Option("--max-messages", min=1, help="Only the most recent N messages.")
]


def _run(options: RunOptions) -> None:
    from producers.cli.jobrun import JobFailed, run_summary_job

    settings = load_cli_settings(quiet=True)
    try:
        run_summary_job(settings, options)
    except ConfigError as exc:
        fail(str(exc))  # the operator runs this command: the operator's wording
    except PermanentError as exc:
        fail(exc.user_message)
    except JobFailed as exc:
        fail(f"the job failed: {exc}", code=1)


def _remote(url: str, key: str, options: RunOptions) -> None:
    from producers.cli.jobrun import JobFailed
    from producers.cli.remote import RemoteApi, run_remote_summary

    settings = load_cli_settings(quiet=True)
    try:
        run_remote_summary(RemoteApi(url, key, timeout=settings.job_wait_timeout), options)
    except PermanentError as exc:
        fail(exc.user_message)
    except JobFailed as exc:
        fail(f"the job failed: {exc}", code=1)


@cli.command()
def demo(
    fmt: FormatOpt = SummaryFormat.STRUCTURED, as_json: JsonOpt = False, output: OutputOpt = None
) -> None:
    """Summarize the bundled demo conversation through the whole pipeline."""
    from producers.cli.jobrun import RunOptions

    _run(RunOptions(export=demo_export(), format=fmt, as_json=as_json, output=output))


@cli.command()
def summarize(
    export: Annotated[
        Path | None, typer.Argument(help="A DiscordChatExporter JSON export file.")
    ] = None,
    fmt: FormatOpt = SummaryFormat.STRUCTURED,
    as_json: JsonOpt = False,
    output: OutputOpt = None,
    language: LanguageOpt = None,
    max_messages: MaxOpt = None,
    channel: Annotated[
        str | None,
        typer.Option("--channel", help="Summarize this Discord channel instead (needs --guild)."),
    ] = None,
    guild: Annotated[
        str | None, typer.Option("--guild", help="The guild (server) id of --channel.")
    ] = None,
    hours: Annotated[
        float | None,
        typer.Option("--hours", min=0.01, max=24 * 365, help="With --channel: the last N hours."),
    ] = None,
    post_to: Annotated[
        str | None,
        typer.Option("--post-to", help="With --channel: also post the summary in this channel."),
    ] = None,
    api: Annotated[
        str | None,
        typer.Option(
            "--api", help="Summarize on this remote deployment (its API's base URL) instead."
        ),
    ] = None,
    key: Annotated[
        str | None,
        typer.Option(
            "--key",
            envvar="SUMMARYBOT_API_KEY",
            help="With --api: an API key with jobs:write and summaries:read.",
        ),
    ] = None,
) -> None:
    """Summarize a channel export file (DiscordChatExporter JSON, or a message array), or a
    Discord channel; with --api, upload the file to a remote deployment."""
    from producers.cli.jobrun import ChannelWindow, RunOptions

    if (export is None) == (channel is None):
        fail("give an export file, or --channel and --guild to read a Discord channel")
    window = None
    if channel is not None:
        if guild is None:
            fail("--channel needs --guild: the id of the server the channel belongs to")
        window = ChannelWindow(guild_id=guild, channel_id=channel, hours=hours, post_to=post_to)
    elif hours is not None or post_to is not None or guild is not None:
        fail("--guild, --hours and --post-to go with --channel, not with an export file")
    options = RunOptions(
        export=export,
        format=fmt,
        as_json=as_json,
        output=output,
        language=language,
        max_messages=max_messages,
        channel=window,
    )
    if api is not None or key is not None:
        if export is None or api is None or key is None:
            fail("--api and --key go together, with an export file to upload")
        _remote(api, key, options)
        return
    _run(options)


def _check_services(settings: Settings, *, database: bool) -> None:
    """Stop a long-running process at start on what its retries cannot fix: Redis refusing
    the URL's credentials or database, and (``database``) a database that refuses us or is
    not migrated.  A service that is merely down is left to the process's reconnecting."""
    from shared.dependencies import check_redis, check_schema_at_start

    try:
        if settings.redis_url is not None:
            check_redis(settings.redis_url, allow_unreachable=True)
        if database:
            check_schema_at_start(settings.effective_database_url)
    except ConfigError as exc:
        fail(exc.user_message)


def _check_llm(settings: Settings) -> None:
    """Stop a summarizing worker whose LLM key the endpoint says does not exist (raised as
    :class:`ConfigError`); log what may pass (an endpoint down now, a model not listed)."""
    import structlog

    from shared.dependencies import check_llm_at_start

    problem = check_llm_at_start(settings.llm)
    if problem is not None:
        structlog.get_logger("summarybot.worker").warning("worker.llm_check", problem=problem)


class WorkerPool(StrEnum):
    """Celery's worker pools ``summarybot worker`` runs."""

    PREFORK = "prefork"
    THREADS = "threads"
    SOLO = "solo"


@cli.command()
def worker(
    queues: Annotated[str, typer.Option("--queues", "-Q", help="Comma-separated queues.")] = (
        "fetch,summarize,deliver,maintenance"
    ),
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", min=1)] = 2,
    pool: Annotated[WorkerPool, typer.Option("--pool", "-P", help="The worker pool.")] = (
        WorkerPool.PREFORK
    ),
    hostname: Annotated[str | None, typer.Option("--hostname", "-n")] = None,
) -> None:
    """Start a Celery worker (needs REDIS_URL; the embedded mode runs its own)."""
    from producers.cli.processes import run_worker

    settings = load_cli_settings()
    if settings.embedded:
        fail(
            "REDIS_URL is not set: a separate worker needs Redis as its broker; set REDIS_URL "
            "(and DATABASE_URL) or use `summarybot summarize`, which runs its own worker"
        )
    names = [q.strip() for q in queues.split(",") if q.strip()]
    unknown = sorted(set(names) - set(QUEUES))
    if unknown or not names:
        fail(
            f"--queues: unknown queue(s) {', '.join(unknown) or '(none given)'}; the queues are "
            f"{', '.join(QUEUES)}"
        )
    try:
        _check_services(settings, database=True)
        if "summarize" in names and settings.llm.configured:
            _check_llm(settings)
        # Every process of a deployment needs the same SECRET_KEYS: webhook secrets are sealed
        # with them, and log pseudonyms of members are keyed by them.
        from shared.crypto import secret_box

        secret_box(settings)
        run_worker(
            settings, queues=names, concurrency=concurrency, pool=pool.value, hostname=hostname
        )
    except ConfigError as exc:
        fail(exc.user_message)


@cli.command()
def beat() -> None:
    """Start Celery beat (the periodic maintenance clock; run exactly one)."""
    from producers.cli.processes import run_beat

    settings = load_cli_settings()
    if settings.embedded:
        fail("REDIS_URL is not set: beat publishes to Redis; set REDIS_URL")
    try:
        from shared.crypto import secret_box

        secret_box(settings)  # the same keys in every process (see `summarybot worker`)
    except ConfigError as exc:
        fail(exc.user_message)
    _check_services(settings, database=False)
    run_beat(settings)


@cli.command()
def flower(
    port: Annotated[int, typer.Option("--port")] = 5555,
    address: Annotated[str, typer.Option("--address")] = "127.0.0.1",
    basic_auth: Annotated[
        str | None,
        typer.Option(
            "--basic-auth",
            envvar="FLOWER_BASIC_AUTH",
            help="user:password (comma-separated for several).",
        ),
    ] = None,
) -> None:
    """Start Flower, the Celery monitoring UI, behind basic auth."""
    from producers.cli.processes import run_flower

    settings = load_cli_settings()
    if settings.embedded:
        fail("REDIS_URL is not set: Flower watches the Redis broker; set REDIS_URL")
    if not basic_auth or ":" not in basic_auth:
        fail(
            "Flower needs --basic-auth user:password (or FLOWER_BASIC_AUTH); it shows task "
            "arguments and must not be open"
        )
    _check_services(settings, database=False)
    run_flower(settings, port=port, address=address, basic_auth=basic_auth)


@cli.command()
def migrate(
    revision: Annotated[str, typer.Option("--revision", help="Target revision.")] = "head",
    downgrade: Annotated[bool, typer.Option("--downgrade", help="Downgrade to --revision.")] = (
        False
    ),
) -> None:
    """Upgrade (or downgrade) the database schema."""
    from shared.db import migrate as migrations

    if downgrade and revision == "head":
        fail("--downgrade needs --revision: the revision to go back to (e.g. 0006, or base)")
    settings = load_cli_settings()
    url = settings.effective_database_url
    if downgrade:
        migrations.downgrade(url, revision)
    else:
        migrations.upgrade(url, revision)
    print(f"database at revision {migrations.current(url) or 'base'}")


@cli.command()
def api(
    host: Annotated[str | None, typer.Option("--host", help="Default: API_HOST.")] = None,
    port: Annotated[int | None, typer.Option("--port", help="Default: API_PORT.")] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", min=1, help="Default: API_WORKERS.")
    ] = None,
    forwarded_allow_ips: Annotated[
        str | None,
        typer.Option(
            "--forwarded-allow-ips",
            help="Proxies whose X-Forwarded-For is believed, comma-separated. "
            "Default: FORWARDED_ALLOW_IPS (none).",
        ),
    ] = None,
) -> None:
    """Serve the inbound HTTP API (needs DATABASE_URL, REDIS_URL and SECRET_KEYS)."""
    from producers.cli.api_commands import run_api

    overrides: dict[str, object] = {
        "host": host,
        "port": port,
        "workers": workers,
        "forwarded_allow_ips": forwarded_allow_ips,
    }
    run_api(load_cli_settings(api={k: v for k, v in overrides.items() if v is not None}))


@cli.command()
def bot() -> None:
    """Run the Discord bot (one process per shard group; see the README)."""
    from producers.cli.bot_commands import run_bot

    run_bot(load_cli_settings())


@cli.command()
def replay(
    dead_letter: Annotated[
        list[int] | None, typer.Option("--dead-letter", help="Dead-letter id (repeatable).")
    ] = None,
    all_dead_letters: Annotated[bool, typer.Option("--all-dead-letters")] = False,
    delivery: Annotated[
        list[str] | None, typer.Option("--delivery", help="Failed delivery id (repeatable).")
    ] = None,
    failed_since: Annotated[
        datetime | None, typer.Option("--failed-since", help="Deliveries failed since (UTC).")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run")] = False,
) -> None:
    """Re-drive dead letters and failed deliveries (workers pick them up)."""
    from producers.cli.delivery_commands import replay as replay_items
    from shared.services.replay import ReplaySelection

    settings = load_cli_settings()
    since = (
        failed_since.replace(tzinfo=UTC)
        if failed_since and not failed_since.tzinfo
        else (failed_since)
    )
    try:
        replay_items(
            settings,
            ReplaySelection(
                dead_letter_ids=dead_letter or (),
                all_dead_letters=all_dead_letters,
                delivery_ids=delivery or (),
                failed_since=since,
                dry_run=dry_run,
            ),
        )
    except PermanentError as exc:
        fail(exc.user_message)


@cli.command("erase-member")
def erase_member(
    user: Annotated[str, typer.Option("--user", help="The member's Discord user id.")],
    guild: Annotated[
        str, typer.Option("--guild", help="The guild (server) id, or '*' for every guild.")
    ],
) -> None:
    """Erase a member's id and name from stored data (a data-protection request).

    In one guild, or in every guild with --guild '*'; DELETE /v1/users/{id}/data does the same
    in the guild of an API key."""
    from shared.db.engine import make_engine, make_sessionmaker
    from shared.retention import erase_member as erase

    settings = load_cli_settings(quiet=True)
    engine = make_engine(settings.effective_database_url)
    try:
        result = erase(make_sessionmaker(engine), guild_id=guild.strip(), user_id=user.strip())
    except PermanentError as exc:
        fail(exc.user_message)
    finally:
        engine.dispose()
    where = "every guild" if guild.strip() == "*" else f"guild {guild.strip()}"
    print(
        f"erased member {user.strip()} in {where}: {result.summaries} summaries, {result.jobs} "
        f"jobs, {result.schedules} schedules, {result.api_keys} API keys, {result.deliveries} "
        f"deliveries, {result.feedback} feedback entries, {result.uploads} uploads"
    )
    if result.opt_out_kept:
        print("their opt-out is kept: it keeps them out of future summaries")


@cli.command("rotate-keys")
def rotate_keys(
    generate: Annotated[bool, typer.Option("--generate", help="Print a new key and stop.")] = (
        False
    ),
) -> None:
    """Re-encrypt every stored secret under the newest SECRET_KEYS key."""
    from producers.cli.delivery_commands import new_key_message
    from producers.cli.delivery_commands import rotate_keys as rotate

    if generate:
        # Needs no setting: it is how a missing or broken SECRET_KEYS is fixed.
        new_key_message()
        return
    try:
        rotate(load_cli_settings(), generate=generate)
    except PermanentError as exc:
        fail(exc.user_message)


def _add_keys_app() -> None:
    from producers.cli.api_commands import keys_app

    cli.add_typer(keys_app, name="keys")


_add_keys_app()


def main() -> None:
    """Console-script entry point.

    A dependency that is down (PostgreSQL, Redis) or refuses us, and a setting found wrong
    only when it is used (a data directory that cannot be created, an unknown migration
    revision), end any command with one line saying which and how to fix it, exit code 2,
    instead of a traceback.
    """
    from shared.dependencies import UNREACHABLE, dependency_line

    try:
        cli()
    except ConfigError as exc:
        print(f"summarybot: {exc.user_message}", file=sys.stderr)
        raise SystemExit(2) from None
    except UNREACHABLE as exc:
        line = dependency_line(exc)
        if line is None:
            raise
        print(f"summarybot: {line}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
