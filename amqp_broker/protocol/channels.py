"""The channel lifecycle, sans-IO: which method may arrive on a channel in which
state, and what it does (RabbitMQ's rabbit_reader and rabbit_channel rules).

A channel number is free (no channel), OPEN, or CLOSING (the broker sent
channel.close and waits for close-ok; everything else on it is dropped). The
connection asks `on_method` for every method frame not already handled by its
fast path (a method on an open channel outside the channel class) and acts on
the answer; the rules live here, in one function.
"""

from __future__ import annotations

import enum

from .codec import CLASSES, MethodKey
from .errors import CHANNEL_ERROR, COMMAND_INVALID, FRAME_ERROR, NOT_ALLOWED, AMQPError

CHANNEL_OPEN: MethodKey = (20, 10)
CHANNEL_CLOSE: MethodKey = (20, 40)
CHANNEL_CLOSE_OK: MethodKey = (20, 41)


class ChannelState(enum.Enum):
    OPEN = "open"
    CLOSING = "closing"  # we sent channel.close and wait for close-ok
    CLOSED = "closed"  # released; the number is free again


class Action(enum.Enum):
    OPEN = "open"  # create the channel, answer channel.open-ok
    DISPATCH = "dispatch"  # hand the method to its handler
    CLIENT_CLOSE = "client-close"  # the client closes: release it, answer close-ok
    FORGET = "forget"  # close-ok to our channel.close: the number is free again
    ANSWER_CLOSE = "answer-close"  # channel.close crossing ours: answer close-ok, keep waiting
    DROP = "drop"  # ignored: sent before the client saw our channel.close


def on_method(state: ChannelState | None, key: MethodKey, open_channels: int,
              channel_max: int) -> Action:
    """What a method frame with `key` does on a channel in `state` (None: not open).
    Raises AMQPError for a method the state does not allow."""
    if state is None:
        # channel_max limits how many channels are open at once (closing ones count),
        # not their numbers; checked before anything else, as RabbitMQ's create_channel
        if channel_max and open_channels >= channel_max:
            raise AMQPError(NOT_ALLOWED, f"number of channels opened ({open_channels}) "
                            f"has reached the negotiated channel_max ({channel_max})")
        if key != CHANNEL_OPEN:
            raise AMQPError(CHANNEL_ERROR, "expected 'channel.open'", *key)
        return Action.OPEN
    if state is not ChannelState.OPEN:
        # After we sent channel.close only close and close-ok mean anything.
        if key == CHANNEL_CLOSE_OK:
            return Action.FORGET
        if key == CHANNEL_CLOSE:
            return Action.ANSWER_CLOSE
        return Action.DROP
    if key == CHANNEL_CLOSE:
        return Action.CLIENT_CLOSE
    if key == CHANNEL_CLOSE_OK:
        raise AMQPError(CHANNEL_ERROR, "unexpected channel.close-ok", *key)
    if key == CHANNEL_OPEN:
        raise AMQPError(CHANNEL_ERROR, "second 'channel.open' seen", *key)
    return Action.DISPATCH


def unexpected(key: MethodKey) -> AMQPError:
    """The error for a method no handler takes: a known method the broker does not
    accept from a client (503), or an unknown one (501)."""
    return AMQPError(COMMAND_INVALID if key in CLASSES else FRAME_ERROR,
                     f"unexpected method {key[0]}.{key[1]}", *key)
