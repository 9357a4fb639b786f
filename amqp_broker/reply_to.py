"""Direct reply-to: RPC replies go straight to a channel's consumer, no queue.

A client consumes from the pseudo-queue `amq.rabbitmq.reply-to` (no-ack only),
then publishes requests with reply_to set to that name; the broker rewrites it
to `amq.rabbitmq.reply-to.<token>`, and a reply published to the default
exchange with that routing key is delivered directly to the consumer.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from pamqp import commands

from .protocol import fast
from .protocol.errors import PRECONDITION_FAILED, AMQPError

if TYPE_CHECKING:
    from .channel import Channel

PSEUDO_QUEUE = "amq.rabbitmq.reply-to"
PREFIX = PSEUDO_QUEUE + "."


class Registry:
    """The reply consumers of one broker: reply token -> the channel consuming."""

    def __init__(self) -> None:
        self.channels: dict[str, Channel] = {}


def consume(ch: Channel, method: commands.Basic.Consume) -> None:
    if not method.no_ack:
        raise AMQPError(PRECONDITION_FAILED, "reply consumer cannot acknowledge", 60, 20)
    if ch.reply_to is not None:
        raise AMQPError(PRECONDITION_FAILED, "reply consumer already set", 60, 20)
    tag = method.consumer_tag or "amq.ctag-" + secrets.token_urlsafe(16)
    token = secrets.token_urlsafe(24)
    ch.reply_to = (tag, fast.shortstr(tag), token)
    ch.broker.replies.channels[token] = ch
    if not method.nowait:
        ch.send(commands.Basic.ConsumeOk, consumer_tag=tag)


def cancel(ch: Channel, tag: str) -> bool:
    """Cancel the reply consumer if tag names it."""
    if ch.reply_to is None or ch.reply_to[0] != tag:
        return False
    release(ch)
    return True


def release(ch: Channel) -> None:
    if ch.reply_to is not None:
        ch.broker.replies.channels.pop(ch.reply_to[2], None)
        ch.reply_to = None


def rewrite_request(ch: Channel, properties: Any) -> bytes | None:
    """New raw properties when reply_to names the pseudo-queue, else None."""
    if properties.reply_to != PSEUDO_QUEUE:
        return None
    if ch.reply_to is None:
        raise AMQPError(PRECONDITION_FAILED, "fast reply consumer does not exist", 60, 40)
    properties.reply_to = PREFIX + ch.reply_to[2]
    return fast.encode_properties(properties)


def deliver_reply(ch: Channel, routing_key: str, ex_raw: bytes, rk_raw: bytes,
                  props: bytes, body: bytes) -> bool:
    """Hand a reply to the waiting consumer; False when it is gone (unroutable)."""
    target = ch.broker.replies.channels.get(routing_key[len(PREFIX):])
    if target is None or target.reply_to is None:
        return False
    target.next_tag += 1
    target.write_delivery(target.next_tag, False, ex_raw, rk_raw, props, body,
                          target.reply_to[1])
    return True
