"""protocol.channels alone: every (state, method) pair of the channel lifecycle."""

from __future__ import annotations

import pytest

from amqp_broker.protocol.channels import Action, ChannelState, on_method, unexpected
from amqp_broker.protocol.errors import AMQPError

OPEN, CLOSE, CLOSE_OK, DECLARE, FLOW = (20, 10), (20, 40), (20, 41), (50, 10), (20, 20)


@pytest.mark.parametrize("state, key, action", [
    (None, OPEN, Action.OPEN),
    (ChannelState.OPEN, CLOSE, Action.CLIENT_CLOSE),
    (ChannelState.OPEN, DECLARE, Action.DISPATCH),
    (ChannelState.OPEN, FLOW, Action.DISPATCH),
    (ChannelState.CLOSING, CLOSE_OK, Action.FORGET),
    (ChannelState.CLOSING, CLOSE, Action.ANSWER_CLOSE),
    (ChannelState.CLOSING, DECLARE, Action.DROP),
    (ChannelState.CLOSING, OPEN, Action.DROP),
])
def test_allowed_transitions(state: ChannelState | None, key: tuple[int, int],
                             action: Action) -> None:
    assert on_method(state, key, 1, 2047) is action


@pytest.mark.parametrize("state, key, code, text", [
    (None, DECLARE, 504, "expected 'channel.open'"),
    (None, CLOSE, 504, "expected 'channel.open'"),
    (ChannelState.OPEN, OPEN, 504, "second 'channel.open' seen"),
    (ChannelState.OPEN, CLOSE_OK, 504, "unexpected channel.close-ok"),
])
def test_refused_transitions(state: ChannelState | None, key: tuple[int, int], code: int,
                             text: str) -> None:
    with pytest.raises(AMQPError) as info:
        on_method(state, key, 1, 2047)
    assert (info.value.reply_code, info.value.text) == (code, text)
    assert (info.value.class_id, info.value.method_id) == key


def test_channel_max_counts_open_channels_first() -> None:
    assert on_method(None, OPEN, 9, 10) is Action.OPEN
    with pytest.raises(AMQPError) as info:
        on_method(None, DECLARE, 10, 10)  # the limit is checked before the method
    assert info.value.reply_code == 530
    assert on_method(None, OPEN, 10_000, 0) is Action.OPEN  # 0: no limit


def test_unexpected_methods() -> None:
    assert unexpected((60, 60)).reply_code == 503  # a known method a client may not send
    assert unexpected((60, 99)).reply_code == 501  # no such method
