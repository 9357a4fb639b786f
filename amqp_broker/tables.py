"""Field-table values as JSON for the definitions store, and back.

Definitions (exchange, queue and binding arguments) are AMQP field tables whose
values may be bytes, timestamps or decimals; JSON has none of these, so they are
tagged on the way out and restored on recovery. A timestamp is stored as the
integer it is on the wire (older stores hold float seconds; both restore).
"""

from __future__ import annotations

import base64
import datetime
import decimal
from typing import Any

from .protocol.fieldtable import FieldInt, Timestamp


def to_json(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return {"$bytes": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, Timestamp):
        return {"$timestamp": int(value)}
    if isinstance(value, FieldInt):
        return int(value)
    if isinstance(value, datetime.datetime):
        return {"$timestamp": value.timestamp()}
    if isinstance(value, decimal.Decimal):
        return {"$decimal": str(value)}
    if isinstance(value, float):
        return float(value)
    return value


def from_json(value: Any) -> Any:
    if isinstance(value, dict):
        if len(value) == 1:
            ((tag, raw),) = value.items()
            if tag == "$bytes":
                return base64.b64decode(raw)
            if tag == "$timestamp":
                return Timestamp(int(raw))
            if tag == "$decimal":
                return decimal.Decimal(raw)
        return {k: from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_json(v) for v in value]
    return value
