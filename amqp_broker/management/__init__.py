"""The management plane: RabbitMQ's management HTTP API (and the web UI) on
`management_port`, served inside the broker's event loop (serve.py).

`create_app(broker, config)` builds the Starlette app; resources live one per module
(`res_<name>.py` with `routes()`); auth.py, errors.py and listing.py hold what they
share (who may ask, RabbitMQ's error bodies, list features).
"""

from .app import create_app

__all__ = ["create_app"]
