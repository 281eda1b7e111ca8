"""Smaller parts of the bot: settings, destinations, feedback ids, emoji, limits texts, CLI
checks, the held enqueuer, intents."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any
from unittest.mock import MagicMock

import discord
import pytest
from pydantic import SecretStr, ValidationError

from producers.bot.client import bot_intents
from producers.bot.cogs.common import pick_channel
from producers.bot.cogs.reactions import same_emoji
from producers.bot.cogs.settings import parse_emoji
from producers.bot.destinations import ReplyPlan, to_destinations
from producers.bot.feedback import (
    FeedbackButton,
    feedback_custom_id,
    feedback_row,
    parse_feedback_id,
)
from producers.bot.limits import LimitDecision
from producers.cli.bot_commands import check_bot_settings, llm_model_of
from shared.crypto import SecretBox, generate_key
from shared.discord.config import DiscordSettings
from shared.errors import ConfigError, InvalidInputError
from shared.jobs import (
    ChannelTarget,
    DirectMessageTarget,
    HeldEnqueuer,
    InteractionFollowupTarget,
    JobParams,
    parse_params,
)
from shared.llm.config import LLMSettings
from shared.settings import BotSettings, load_settings

CHANNEL = 1102565102059520001
USER = 606910130683904000
APP = 812590628339712000
INTERACTION = 1482395238940147715


def test_bot_settings_validate_shards() -> None:
    assert BotSettings().shard_ids is None
    assert BotSettings(shard_count=4, shard_ids=[3, 2]).shard_ids == [2, 3]
    with pytest.raises(
        ValidationError, match="BOT_SHARD_COUNT: not set, and BOT_SHARD_IDS needs it"
    ):
        BotSettings(shard_ids=[0])
    with pytest.raises(ValidationError, match="not below BOT_SHARD_COUNT"):
        BotSettings(shard_count=2, shard_ids=[0, 2])
    with pytest.raises(ValidationError, match="distinct"):
        BotSettings(shard_count=4, shard_ids=[1, 1])
    with pytest.raises(ValidationError, match="empty"):
        BotSettings(shard_count=4, shard_ids=[])


def test_intents_are_exactly_what_the_bot_needs() -> None:
    intents = bot_intents()
    assert intents.guilds and intents.guild_messages and intents.message_content
    assert intents.guild_reactions
    assert not intents.members and not intents.presences and not intents.dm_messages


def test_destinations_of_each_reply_plan() -> None:
    box = SecretBox([generate_key()])
    channel = to_destinations(ReplyPlan(kind="channel", channel_id=CHANNEL, reply_to=CHANNEL), box)
    assert channel == [ChannelTarget(channel_id=str(CHANNEL), reply_to=str(CHANNEL))]
    dm = to_destinations(ReplyPlan(kind="dm", user_id=USER), box)
    assert dm == [DirectMessageTarget(user_id=str(USER))]
    plan = ReplyPlan(
        kind="interaction",
        channel_id=CHANNEL,
        application_id=APP,
        interaction_id=INTERACTION,
        token="aW50ZXJhY3Rpb246secret",
    )
    [followup] = to_destinations(plan, box)
    assert isinstance(followup, InteractionFollowupTarget)
    assert "secret" not in followup.model_dump_json()
    assert box.decrypt(followup.token_encrypted) == "aW50ZXJhY3Rpb246secret"
    assert followup.fallback == {
        "kind": "channel",
        "channel_id": str(CHANNEL),
        "reply_to": None,
        "fallback": None,
    }
    params = JobParams.model_validate(
        {
            "source": {"kind": "discord_channel", "channel_id": str(CHANNEL), "limit": 5},
            "destinations": [followup.model_dump(mode="json")],
        }
    )
    assert parse_params(params.model_dump(mode="json")) == params
    assert plan.describe() == "this reply" and plan.edits_original and not plan.private
    assert ReplyPlan(kind="dm", user_id=USER).describe() == "your DMs"
    assert ReplyPlan(kind="channel", channel_id=CHANNEL).describe() == f"<#{CHANNEL}>"
    with pytest.raises(ValueError, match="needs token"):
        to_destinations(ReplyPlan(kind="interaction", application_id=APP, interaction_id=1), box)


def test_feedback_custom_ids_round_trip() -> None:
    summary = uuid.uuid4()
    up = feedback_custom_id(summary, helpful=True)
    down = feedback_custom_id(summary, helpful=False)
    assert len(up) <= 100
    assert parse_feedback_id(up) == (summary, True)
    assert parse_feedback_id(down) == (summary, False)
    assert parse_feedback_id("something-else") is None
    row = feedback_row(summary)
    assert [c["custom_id"] for c in row["components"]] == [up, down]
    assert FeedbackButton.__discord_ui_compiled_template__.fullmatch(up)
    button = FeedbackButton(summary, True)
    assert button.item.custom_id == up and button.item.label == "Helpful"


def test_reaction_emoji_settings() -> None:
    assert parse_emoji("🧾") == "🧾"
    assert parse_emoji("<:summ:123456789012345678>") == "<:summ:123456789012345678>"
    assert parse_emoji(" off ") is None
    for bad in ("hello", "a b", ""):
        with pytest.raises(InvalidInputError, match="not an emoji"):
            parse_emoji(bad)
    assert same_emoji("🧾", discord.PartialEmoji(name="🧾"))
    assert not same_emoji("🧾", discord.PartialEmoji(name="👍"))
    assert same_emoji(
        "<:summ:123456789012345678>", discord.PartialEmoji(name="renamed", id=123456789012345678)
    )
    assert not same_emoji("<:summ:123456789012345678>", discord.PartialEmoji(name="summ", id=124))
    assert not same_emoji("🧾", discord.PartialEmoji(name="🧾", id=5))


def test_limit_messages() -> None:
    kwargs = {"user_quota": 25, "guild_quota": 500}
    assert "try again in 42 s" in LimitDecision(False, "user_cooldown", 42.0).message(**kwargs)
    assert "this server just asked" in LimitDecision(False, "guild_cooldown", 3).message(**kwargs)
    text = LimitDecision(False, "user_quota", 3 * 3600 + 120).message(**kwargs)
    assert "your 25 summaries" in text and "3 h 02 min" in text
    assert "its 500 summaries" in LimitDecision(False, "guild_quota", 600).message(**kwargs)
    assert "10 min" in LimitDecision(False, "guild_quota", 600).message(**kwargs)
    assert LimitDecision(True).message(**kwargs) == "allowed"


class _Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[str, ...]]] = []

    def enqueue(self, task_name: str, *args: str) -> None:
        self.calls.append((task_name, args))


def test_held_enqueuer_publishes_once_on_release() -> None:
    target = _Recorder()
    held = HeldEnqueuer(target)
    held.enqueue("summarybot.fetch", "job-1")
    assert target.calls == []
    held.release()
    held.release()
    assert target.calls == [("summarybot.fetch", ("job-1",))]


def test_cli_checks_what_the_bot_needs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="DISCORD_TOKEN is not set"):
        check_bot_settings(load_settings())
    with pytest.raises(ConfigError, match="REDIS_URL is not set"):
        check_bot_settings(load_settings(discord=DiscordSettings(token=SecretStr("t0ken"))))
    services = {"redis_url": "redis://127.0.0.1:6379/15", "database_url": "postgresql://db/sb"}
    ready = load_settings(discord=DiscordSettings(token=SecretStr(" t0ken ")), **services)
    assert check_bot_settings(ready) == "t0ken"
    secret = tmp_path / "token"
    secret.write_text("from-file\n")
    from_file = load_settings(discord=DiscordSettings(token_file=secret), **services)
    assert check_bot_settings(from_file) == "from-file"
    assert load_settings().bot == BotSettings()
    monkeypatch.setenv("BOT_SHARD_COUNT", "4")
    monkeypatch.setenv("BOT_SHARD_IDS", "2, 3")
    monkeypatch.setenv("BOT_SYNC_COMMANDS", "false")
    tuned = load_settings().bot
    assert (tuned.shard_count, tuned.shard_ids, tuned.sync_commands) == (4, [2, 3], False)
    monkeypatch.setenv("BOT_SHARD_COUNT", "many")
    with pytest.raises(ConfigError, match="BOT_SHARD_COUNT"):
        load_settings()


def test_llm_model_follows_the_settings() -> None:
    assert llm_model_of(load_settings()) == (None, 0)
    model, output = llm_model_of(load_settings(llm=LLMSettings(api_key=SecretStr("sk-test"))))
    assert model is not None and model.name == "gpt-4o-mini" and output == 2000
    local, _ = llm_model_of(load_settings(llm=LLMSettings(base_url="http://127.0.0.1:11434/v1")))
    assert local is not None


def test_channel_options_are_checked_alike_in_every_command() -> None:
    text = MagicMock(spec=discord.TextChannel, type=discord.ChannelType.text)
    forum = MagicMock(spec=discord.ForumChannel, type=discord.ChannelType.forum)
    found = {1: text, 2: forum}
    guild = MagicMock(spec=discord.Guild)
    guild.get_channel_or_thread.side_effect = found.get

    def option(ident: int) -> Any:
        return MagicMock(id=ident, mention=f"<#{ident}>")

    assert pick_channel(guild, None, "the place to post") is None
    assert pick_channel(guild, option(1), "the place to post") is text
    with pytest.raises(InvalidInputError, match=r"cannot see <#3>; give me View Channel there"):
        pick_channel(guild, option(3), "the place to post")
    with pytest.raises(InvalidInputError) as refused:
        pick_channel(guild, option(2), "the digest's destination")
    assert refused.value.user_message == (
        "<#2> cannot be used as the digest's destination: pick a text channel or a thread "
        "(for a forum, pick one of its posts)"
    )
