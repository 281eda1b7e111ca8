"""Ids in the path that are not snowflakes, against the fake as Discord answers them.

Discord validates an id in the path as it does a form field: ``POST /channels/undefined/messages``
answers 400 with code 50035 and ``channel_id: Value "undefined" is not snowflake.`` (seen in the
wild, e.g. jcolson/dndvault-bot#329), not 404: a 404 would say the id was well formed and names
nothing, which the adapter reads as "gone" (``get_member`` as "not a member").  The product's
own id rule (:data:`shared.domain.messages.SNOWFLAKE_PATTERN`) keeps such ids from being sent.
"""

from __future__ import annotations

import pytest

from shared.discord import BadRequest, DiscordClient, Message
from shared.domain.messages import SNOWFLAKE_MAX
from tests.fakes.discord_server import World


@pytest.mark.parametrize("channel_id", ["undefined", str(SNOWFLAKE_MAX + 1)])
def test_a_path_id_that_is_no_snowflake_is_a_bad_request(
    client: DiscordClient, channel_id: str
) -> None:
    with pytest.raises(BadRequest) as info:
        client.send_message(channel_id, Message(content="hello"))
    assert info.value.code == 50035


def test_a_member_id_past_64_bits_is_a_bad_request_not_a_missing_member(
    client: DiscordClient, world: World
) -> None:
    with pytest.raises(BadRequest):
        client.get_member(str(world.guild.id), str(SNOWFLAKE_MAX + 1))
