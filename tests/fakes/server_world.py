"""A whole small server for digest and audience tests: "Acme", 12 channels, 3 threads.

:func:`seed_server` builds it in a :class:`~tests.fakes.discord_api.FakeDiscord`::

    Acme (owner olivia)
    roles   @everyone  View Channel, Read Message History, Send Messages and the usual text
                       permissions (reactions, embeds, files, public threads, commands)
            Staff      Manage Messages          (sam)
            Mods       Manage Messages/Threads  (mia)
            SummaryBot the bot's usual permissions (DEFAULT_BOT_PERMISSIONS)
    members olivia (owner), alice, bob (no roles), sam (Staff), mia (Mods), ci-bot (another
            bot, no roles: an ordinary member; posts build results in #dev), and our bot
    Community (category)
        #general #announcements (type 5) #random #help #dev #design #music #events #offtopic
        #showcase, and the forum #ideas (type 15)
    Staff area (category; @everyone cannot view it)
        #staff-only  @everyone deny View Channel; Staff allow View + History
        #mods-room   @everyone deny View Channel; Mods and Staff allow View + History
        (the bot's role is allowed in both, so the bot reads every channel)
    threads (active)
        "4.2 release checklist" in #dev, the forum post "Dark mode for the dashboard" in #ideas
        (its first message has the thread's id, as on Discord), "Zanzibar evidence" in
        #staff-only (it follows #staff-only's overwrites)
    archived thread "meetup carpool" in #random, 10 days old (not in the active list)

Every message channel and thread gets ``messages_per_channel`` messages of conversation on its
own subject from people who can read it, spread over the 24 h before ``now_ms``; #music and
#events are quiet: their messages are 3 days old.  Confidential markers: "Zanzibar" (and
"CONFIDENTIAL") appears only in #staff-only and its thread, "Kilimanjaro" only in #mods-room.

For /catchup: alice's last message is in #general 6 h before ``now_ms`` (she writes nothing
later); after it she is mentioned (``<@alice>``, in ``mentions``) in #random, #dev and #help, and
in #help sam replies (type 19) to a question she asked earlier.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tests.fakes.discord_api import FakeDiscord
from tests.fakes.discord_state import (
    ADD_REACTIONS,
    CREATE_PUBLIC_THREADS,
    DEFAULT_BOT_PERMISSIONS,
    MANAGE_MESSAGES,
    MANAGE_THREADS,
    READ_MESSAGE_HISTORY,
    SEND_MESSAGES,
    SEND_MESSAGES_IN_THREADS,
    VIEW_CHANNEL,
    Channel,
    Guild,
    Message,
    User,
)

__all__ = [
    "COMMUNITY_CHANNELS",
    "MESSAGE_CHANNELS",
    "QUIET_CHANNELS",
    "STAFF_CHANNELS",
    "ServerWorld",
    "seed_server",
]

_EMBED_LINKS = 1 << 14
_ATTACH_FILES = 1 << 15
_USE_APPLICATION_COMMANDS = 1 << 31
_MODERATE_MEMBERS = 1 << 40
_HOUR_MS = 3600_000
_DAY_MS = 24 * _HOUR_MS
READ = VIEW_CHANNEL | READ_MESSAGE_HISTORY

COMMUNITY_CHANNELS = (
    "general",
    "announcements",
    "random",
    "help",
    "dev",
    "design",
    "music",
    "events",
    "offtopic",
    "showcase",
)
STAFF_CHANNELS = ("staff-only", "mods-room")
#: The 12 channels that hold messages (the forum #ideas holds posts, not messages).
MESSAGE_CHANNELS = COMMUNITY_CHANNELS + STAFF_CHANNELS
#: No messages in the last 24 h.
QUIET_CHANNELS = ("music", "events")

_TEMPLATES = (
    "Quick update on {topic}: it's moving, more details after lunch.",
    "Has anyone had time to look at {topic} yet?",
    "I left some notes about {topic} in the doc, comments welcome.",
    "+1 on {topic}, let's not let it slip again.",
    "Not sure I agree about {topic}, can we talk it through tomorrow?",
    "Thanks for pushing on {topic}, that helped a lot.",
    "Reminder: {topic} needs an owner before Friday.",
    "I can take {topic} if nobody else wants it.",
    "Did we decide anything about {topic} in the end?",
    "Let's keep {topic} in here so it's easy to find later.",
    "Small thing about {topic}: it looks better than last week.",
    "Ok, {topic} is done on my side.",
)


@dataclass(frozen=True)
class _Script:
    """What a channel talks about: opening lines (``(author, text)`` pins the author), topics."""

    authors: tuple[str, ...]
    lines: tuple[str | tuple[str, str], ...]
    topics: tuple[str, ...]


_COMMUNITY = ("alice", "bob", "sam", "mia", "olivia")
_SCRIPTS: dict[str, _Script] = {
    "general": _Script(
        _COMMUNITY,
        (
            "Morning all! Coffee's on, what's everyone working on today?",
            "Reminder that the community meetup is next Thursday at 18:00 CET.",
            "Welcome to the three new folks who joined yesterday 👋",
            "Could we move the weekly call to 16:00? The current slot clashes for the US side.",
            "Server rules got a small update, mostly about self-promotion in #showcase.",
        ),
        (
            "the community meetup",
            "the welcome post",
            "the server rules update",
            "the weekly call time",
            "the holiday schedule",
        ),
    ),
    "announcements": _Script(
        ("olivia", "mia"),
        (
            "📣 Release 4.2 ships on Monday; the changelog is pinned in #dev.",
            "Maintenance window: Saturday 02:00-04:00 UTC, the docs site will be read-only.",
            "The community survey is open until the end of the month, please fill it in!",
            "We opened the #ideas forum: one post per idea, vote with reactions.",
        ),
        (
            "release 4.2",
            "the maintenance window",
            "the community survey",
            "the ideas forum",
            "the public roadmap",
        ),
    ),
    "random": _Script(
        _COMMUNITY,
        (
            "Who's up for board game night on Friday?",
            "Hot take: pineapple on pizza is fine.",
            "My cat just walked over the keyboard and pushed to main. Again.",
            "Anyone tried the new ramen place near the station?",
        ),
        (
            "board game night",
            "the best pizza in town",
            "weekend plans",
            "that cat video",
            "mechanical keyboards",
        ),
    ),
    "help": _Script(
        _COMMUNITY,
        (
            "How do I change the default port in the config file?",
            "Set `port:` under `server:` in config.yaml and restart.",
            "The Docker image won't start on ARM, any ideas?",
            "There's a multi-arch tag now, try `:4.1-multi`.",
        ),
        (
            "the installer",
            "login problems",
            "the config file",
            "the Docker image",
            "password resets",
        ),
    ),
    "dev": _Script(
        _COMMUNITY,
        (
            "The release build for 4.2 failed again on the packaging step.",
            "It's the flaky test test_upload_resumes: it times out about one run in five.",
            ("ci-bot", "Build #1842 failed: test_upload_resumes (timeout after 30 s)"),
            "I'll quarantine the flaky test and open an issue so the release build goes green.",
            ("ci-bot", "Build #1845 passed: release build 4.2.0-rc1 is ready"),
            "Can we bump the CI cache key? It's restoring stale wheels.",
        ),
        (
            "the release build",
            "the flaky integration test",
            "the CI cache",
            "the 4.2 branch",
            "the code review backlog",
        ),
    ),
    "design": _Script(
        _COMMUNITY,
        (
            "Uploaded three logo variants to Figma, the rounded one is my favourite.",
            "The palette feels too saturated on dark backgrounds.",
            "Dark mode mockups for the settings page are ready for review.",
            "Icons at 16px lose the detail, we need simpler glyphs.",
        ),
        ("the new logo", "the color palette", "the mockups", "the icon set", "the landing page"),
    ),
    "music": _Script(
        _COMMUNITY,
        (
            "Added a few lo-fi tracks to the shared coding playlist.",
            "Anyone going to the Khruangbin concert next month?",
            "Found a first pressing at the flea market today!",
        ),
        (
            "the shared playlist",
            "lo-fi coding music",
            "the concert",
            "vinyl finds",
            "synthwave",
        ),
    ),
    "events": _Script(
        _COMMUNITY,
        (
            "Hackathon date is locked: 14-15 June, venue to be confirmed.",
            "We need two more volunteers for the registration desk.",
            "The conference accepted our talk proposal 🎉",
        ),
        (
            "the hackathon",
            "the meetup venue",
            "the conference talk",
            "the sponsor list",
            "the volunteer rota",
        ),
    ),
    "offtopic": _Script(
        _COMMUNITY,
        (
            "Did anyone watch the match last night? What a finish.",
            "My sourdough starter finally doubled overnight.",
            "Recommendations for trail running shoes?",
        ),
        (
            "the football match",
            "sourdough starters",
            "running shoes",
            "the new sci-fi series",
            "houseplants",
        ),
    ),
    "showcase": _Script(
        _COMMUNITY,
        (
            "Show and tell: I built a terminal dashboard for our CI status.",
            "My home automation now turns off the lights when the build breaks 😅",
            "Made a small plugin that posts release notes to our team chat.",
        ),
        (
            "the terminal dashboard",
            "the home automation setup",
            "the release notes plugin",
            "the 3D printed case",
            "the editor theme",
        ),
    ),
    "staff-only": _Script(
        ("sam", "olivia"),
        (
            "CONFIDENTIAL: opening a moderation case, codename Zanzibar. Keep it in this channel.",
            "Zanzibar: the reported account sent harassing DMs to at least four members.",
            "Screenshots for Zanzibar are in the staff drive; do not share outside staff.",
            "Decision on Zanzibar: a 7-day timeout now, a ban if it happens again.",
            "Staff rota for next week is posted, ping me if you need to swap.",
        ),
        (
            "the Zanzibar case",
            "the moderation log",
            "the report queue",
            "the CONFIDENTIAL Zanzibar notes",
            "the staff rota",
        ),
    ),
    "mods-room": _Script(
        ("mia", "sam", "olivia"),
        (
            "New ban appeal came in, codename Kilimanjaro.",
            "Kilimanjaro says the ban was a mix-up with a shared account.",
            "Checked the logs for Kilimanjaro: the messages came from the same IP both times.",
            "Vote on the Kilimanjaro appeal by Wednesday please.",
            "Let's tighten the automod link filter while we are at it.",
        ),
        (
            "the Kilimanjaro appeal",
            "the ban list",
            "the automod rules",
            "the Kilimanjaro timeline",
            "mod training",
        ),
    ),
    "dev-thread": _Script(
        ("sam", "mia", "bob", "olivia"),
        (
            "Thread for the 4.2 release checklist so #dev stays readable.",
            "Changelog draft is done, it needs a second pair of eyes.",
            "Smoke test of rc1 passed on Linux and macOS, Windows is still running.",
        ),
        (
            "the changelog",
            "the migration notes",
            "the rc1 smoke test",
            "the packaging step",
            "the release notes",
        ),
    ),
    "forum-post": _Script(
        ("bob", "mia", "sam", "olivia"),
        (
            "Yes please, and follow the system theme by default.",
            "Charts would need their own palette, the current greens vanish on dark.",
        ),
        (
            "dark mode",
            "the contrast ratio",
            "a theme toggle",
            "system theme detection",
            "the chart colors",
        ),
    ),
    "staff-thread": _Script(
        ("sam", "olivia"),
        (
            "CONFIDENTIAL: collecting the Zanzibar evidence here, one message per item.",
            "Zanzibar item 1: DM screenshots from three members, dated last Tuesday.",
            "Zanzibar item 2: the alt account joined two hours after the first report.",
        ),
        (
            "the Zanzibar screenshots",
            "the Zanzibar timeline",
            "the witness statements",
            "the appeal window",
            "the CONFIDENTIAL summary",
        ),
    ),
}


@dataclass
class ServerWorld:
    """The ids and objects :func:`seed_server` built (see the module docstring)."""

    token: str
    now_ms: int
    guild: Guild
    bot: User
    bot_role: int
    staff_role: int
    mods_role: int
    people: dict[str, User]
    community: Channel
    staff_area: Channel
    channels: dict[str, Channel]
    ideas: Channel
    dev_thread: Channel
    forum_post: Channel
    staff_thread: Channel
    archived_thread: Channel
    alice_last_message: Message
    alice_question: Message
    help_reply: Message
    alice_mentions: list[Message] = field(default_factory=list)

    def __getattr__(self, name: str) -> Any:
        # world.general, world.staff_only, world.alice ... read like the world they describe.
        key = name.replace("_", "-")
        for group in (self.__dict__.get("people", {}), self.__dict__.get("channels", {})):
            if key in group:
                return group[key]
        raise AttributeError(name)

    @property
    def threads(self) -> list[Channel]:
        """The three active threads: #dev's, the forum post, #staff-only's."""
        return [self.dev_thread, self.forum_post, self.staff_thread]

    def channel_ids(self, *names: str) -> list[int]:
        """Ids of the named channels (all 12 message channels when none are named)."""
        return [self.channels[n].id for n in names or MESSAGE_CHANNELS]


def _planned(
    script: _Script, count: int, *, start_ms: int, end_ms: int, specials: int
) -> list[tuple[int, str | None, str]]:
    """``count - specials`` messages ``(at_ms, pinned author or None, text)``, evenly spread."""
    n = max(count - specials, 0)
    step = (end_ms - start_ms) / max(n, 1)
    texts: list[tuple[str | None, str]] = []
    for i in range(n):
        if i < len(script.lines):
            line = script.lines[i]
            texts.append(line if isinstance(line, tuple) else (None, line))
            continue
        g = i - len(script.lines)
        # Template and topic both move, so up to 60 templated messages are all different.
        topic = script.topics[(g + g // len(_TEMPLATES)) % len(script.topics)]
        texts.append((None, _TEMPLATES[g % len(_TEMPLATES)].format(topic=topic)))
    return [(int(start_ms + i * step), author, text) for i, (author, text) in enumerate(texts)]


def _converse(
    fake: FakeDiscord,
    channel: Channel,
    script: _Script,
    people: dict[str, User],
    plan: list[tuple[int, str | None, str]],
    *,
    alice_until_ms: int,
) -> None:
    turn = 0
    for at_ms, pinned, text in plan:
        if pinned is not None:
            author = people[pinned]
        else:
            author = people[script.authors[turn % len(script.authors)]]
            turn += 1
            if author.username == "alice" and at_ms >= alice_until_ms:
                # Her last message is the one in #general; she writes nothing after it.
                author = people[script.authors[turn % len(script.authors)]]
                turn += 1
        fake.add_message(channel, author, text, at_ms=at_ms)


def seed_server(
    fake: FakeDiscord,
    *,
    messages_per_channel: int = 30,
    now_ms: int | None = None,
    token: str = "bot-token-acme",
) -> ServerWorld:
    """Build the Acme server of the module docstring in ``fake``; ``now_ms`` defaults to the
    fake's clock.  A channel with special messages (alice's, the mentions, the reply) gets
    those within its ``messages_per_channel``."""
    now = fake.now_ms() if now_ms is None else now_ms
    alice_until = now - 6 * _HOUR_MS
    bot = fake.add_bot(token, "SummaryBot")
    people = {
        "olivia": fake.add_user("olivia", global_name="Olivia"),
        "alice": fake.add_user("alice", global_name="Alice"),
        "bob": fake.add_user("bob", global_name="Bob"),
        "sam": fake.add_user("sam", global_name="Sam"),
        "mia": fake.add_user("mia", global_name="Mia"),
        "ci-bot": fake.add_user("ci-bot", bot=True),
    }
    everyone = (
        VIEW_CHANNEL
        | READ_MESSAGE_HISTORY
        | SEND_MESSAGES
        | ADD_REACTIONS
        | _EMBED_LINKS
        | _ATTACH_FILES
        | CREATE_PUBLIC_THREADS
        | SEND_MESSAGES_IN_THREADS
        | _USE_APPLICATION_COMMANDS
    )
    guild = fake.add_guild("Acme", owner=people["olivia"], everyone_permissions=everyone)
    staff = fake.add_role(guild, "Staff", MANAGE_MESSAGES)
    mods = fake.add_role(guild, "Mods", MANAGE_MESSAGES | MANAGE_THREADS | _MODERATE_MEMBERS)
    bot_role = fake.add_role(guild, "SummaryBot", DEFAULT_BOT_PERMISSIONS)
    fake.add_member(guild, bot, roles=(bot_role,))
    for name in ("alice", "bob", "ci-bot"):
        fake.add_member(guild, people[name])
    fake.add_member(guild, people["sam"], roles=(staff,))
    fake.add_member(guild, people["mia"], roles=(mods,))

    def overwrite(target: int, *, allow: int = 0, deny: int = 0) -> dict[str, Any]:
        return {"id": str(target), "type": 0, "allow": str(allow), "deny": str(deny)}

    closed = overwrite(guild.id, deny=VIEW_CHANNEL)
    bot_in = overwrite(bot_role, allow=READ)
    community = fake.add_channel(guild, "Community", type=4)
    staff_area = fake.add_channel(
        guild,
        "Staff area",
        type=4,
        overwrites=[closed, overwrite(staff, allow=READ), overwrite(mods, allow=READ), bot_in],
    )
    channels: dict[str, Channel] = {}
    for name in COMMUNITY_CHANNELS:
        kind = 5 if name == "announcements" else 0
        channels[name] = fake.add_channel(guild, name, type=kind, category=community)
    channels["staff-only"] = fake.add_channel(
        guild,
        "staff-only",
        category=staff_area,
        topic="CONFIDENTIAL moderation cases",
        overwrites=[closed, overwrite(staff, allow=READ), bot_in],
    )
    channels["mods-room"] = fake.add_channel(
        guild,
        "mods-room",
        category=staff_area,
        overwrites=[closed, overwrite(mods, allow=READ), overwrite(staff, allow=READ), bot_in],
    )
    ideas = fake.add_channel(guild, "ideas", type=15, category=community)

    day_start = now - _DAY_MS + 10 * 60_000
    day_end = now - 10 * 60_000
    alice, sam, mia, bob = people["alice"], people["sam"], people["mia"], people["bob"]
    specials: dict[str, int] = {"general": 1, "random": 1, "dev": 1, "help": 2}
    for name in MESSAGE_CHANNELS:
        quiet = name in QUIET_CHANNELS
        start, end = (
            (now - 3 * _DAY_MS - 2 * _HOUR_MS, now - 3 * _DAY_MS)
            if quiet
            else (
                day_start,
                day_end,
            )
        )
        plan = _planned(
            _SCRIPTS[name],
            messages_per_channel,
            start_ms=start,
            end_ms=end,
            specials=specials.get(name, 0),
        )
        _converse(fake, channels[name], _SCRIPTS[name], people, plan, alice_until_ms=alice_until)

    last = fake.add_message(
        channels["general"],
        alice,
        "Heading offline for the afternoon, I'll catch up on everything tonight.",
        at_ms=alice_until,
    )
    mention = f"<@{alice.id}>"
    question = fake.add_message(
        channels["help"],
        alice,
        "Anyone know why the installer hangs at 'resolving dependencies' behind our proxy?",
        at_ms=now - 9 * _HOUR_MS,
    )
    reply = fake.add_message(
        channels["help"],
        sam,
        f"{mention} that's the proxy: unset HTTPS_PROXY for localhost and rerun the installer.",
        at_ms=now - 3 * _HOUR_MS,
        type=19,
        reference={
            "type": 0,
            "channel_id": str(channels["help"].id),
            "message_id": str(question.id),
            "guild_id": str(guild.id),
        },
    )
    mentions = [
        fake.add_message(
            channels["random"],
            bob,
            f"{mention} are you still bringing the board games on Friday?",
            at_ms=now - 2 * _HOUR_MS,
        ),
        fake.add_message(
            channels["dev"],
            mia,
            f"{mention} could you review the release build PR before the 4.2 cut?",
            at_ms=now - 4 * _HOUR_MS,
        ),
        reply,
    ]

    thread_start = now - 23 * _HOUR_MS
    dev_thread = fake.add_thread(
        channels["dev"], "4.2 release checklist", owner=sam, created_ms=thread_start
    )
    staff_thread = fake.add_thread(
        channels["staff-only"], "Zanzibar evidence", owner=sam, created_ms=thread_start
    )
    forum_post = fake.add_thread(
        ideas, "Dark mode for the dashboard", owner=alice, created_ms=thread_start
    )
    # A forum post's first message has the post's id, as on Discord.
    starter = Message(
        id=forum_post.id,
        channel_id=forum_post.id,
        author_id=alice.id,
        content="Idea: a dark mode for the dashboard, it's painful to use at night.",
    )
    fake.messages[starter.id] = starter
    forum_post.add_message_id(starter.id)
    forum_post.total_sent += 1
    ideas.last_message_id = forum_post.id
    for thread, key, specials_in in (
        (dev_thread, "dev-thread", 0),
        (forum_post, "forum-post", 1),
        (staff_thread, "staff-thread", 0),
    ):
        plan = _planned(
            _SCRIPTS[key],
            messages_per_channel,
            start_ms=thread_start + 5 * 60_000,
            end_ms=day_end,
            specials=specials_in,
        )
        _converse(fake, thread, _SCRIPTS[key], people, plan, alice_until_ms=alice_until)

    archived = fake.add_thread(
        channels["random"],
        "meetup carpool",
        owner=bob,
        created_ms=now - 11 * _DAY_MS,
        archived=True,
        archive_ms=now - 10 * _DAY_MS,
    )
    for n, text in enumerate(
        ("Who needs a lift to the meetup?", "I have two seats from the station.", "Count me in!")
    ):
        fake.add_message(
            archived, (bob, mia, alice)[n], text, at_ms=now - 11 * _DAY_MS + n * 60_000
        )

    return ServerWorld(
        token=token,
        now_ms=now,
        guild=guild,
        bot=bot,
        bot_role=bot_role,
        staff_role=staff,
        mods_role=mods,
        people=people,
        community=community,
        staff_area=staff_area,
        channels=channels,
        ideas=ideas,
        dev_thread=dev_thread,
        forum_post=forum_post,
        staff_thread=staff_thread,
        archived_thread=archived,
        alice_last_message=last,
        alice_question=question,
        help_reply=reply,
        alice_mentions=mentions,
    )
