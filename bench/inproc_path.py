"""The per-message path in process, for instruction counts (valgrind --tool=callgrind):
one connection publishes N messages to a queue, another consumes them with manual
acks (multiple=true every 100), all through Connection.receive, no sockets. The
count is repeatable whatever else the machine does, so two trees can be compared
where wall-clock throughput is too noisy:

  valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out python bench/inproc_path.py 20000
  callgrind_annotate /tmp/cg.out | head -20     # "PROGRAM TOTALS" is the figure
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from pamqp import commands  # noqa: E402

from inproc import Client, make_broker  # noqa: E402


def main(count: int) -> None:
    broker = make_broker()
    pub, sub = Client(broker), Client(broker)
    pub.open_channel(1)
    sub.open_channel(1)
    pub.send(commands.Queue.Declare(queue="q"), 1)
    sub.send(commands.Basic.Qos(prefetch_count=1000), 1)
    sub.send(commands.Basic.Consume(queue="q"), 1)
    pub.frames()
    sub.frames()
    batch = b"".join(pub.publish_frames(1, "", "q", b"x" * 16) * 100)
    delivered = 0
    while delivered < count:
        pub.conn.receive(batch)
        pub.conn.take_output()
        out = sub.conn.take_output()
        got = out.count(b"\x00\x3c\x00\x3c")  # basic.deliver method frames
        delivered += got
        if got:
            ack = commands.Basic.Ack(delivery_tag=delivered, multiple=True)
            sub.send(ack, 1)
    print(f"delivered {delivered}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20000)
