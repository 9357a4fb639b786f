"""DiskStore benchmark: write, recover and drain N messages through the group commit.

    python bench/bench_store.py [--messages 1000000] [--size 1024] [--dir PATH] [--no-fsync]

Prints figures only; it asserts nothing about time.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import shutil
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

import anyio
import anyio.lowlevel

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from amqp_broker.storage import DiskStore

PROPS = b"\x10\x00\x02"
QUEUE = "/:bench"


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def dir_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


async def drive(store: DiskStore, work: object) -> None:
    """Run the group commit while `work` (an async callable) runs; then close."""
    async with anyio.create_task_group() as tg:
        tg.start_soon(store.run)
        await work()  # type: ignore[operator]
        store.close()


async def synced(store: DiskStore) -> None:
    done = anyio.Event()
    store.on_sync(lambda token, ok: done.set())
    await done.wait()


async def write_all(store: DiskStore, n: int, size: int) -> None:
    body = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    waiting: deque[anyio.Event] = deque()
    publish = store.publish
    for i in range(1, n + 1):
        publish(i, "amq.direct", "bench", PROPS, body, (QUEUE,))
        if i % 2000 == 0:  # a publisher-confirm window: at most ~5 batches outstanding
            ev = anyio.Event()
            store.on_sync(lambda token, ok, ev=ev: ev.set())
            waiting.append(ev)
            if len(waiting) > 4:
                await waiting.popleft().wait()
            else:
                await anyio.lowlevel.checkpoint()
    await synced(store)


async def remove_all(store: DiskStore, ids: list[int]) -> None:
    for k, msg_id in enumerate(ids, 1):
        store.remove(QUEUE, (msg_id,))  # one basic.ack per message
        if k % 5000 == 0:
            await anyio.lowlevel.checkpoint()
    await synced(store)
    await synced(store)


def declare_definitions(store_dir: Path, fsync: bool, n: int = 10_000) -> None:
    """n durable queue declares, one save_definition each, then reopen."""

    async def declare() -> None:
        for i in range(n):
            store.save_definition(f"queue/%2F/q{i}", {"durable": True, "arguments": {}})
            if i % 100 == 0:
                await anyio.lowlevel.checkpoint()
        await synced(store)

    store = DiskStore(store_dir, fsync=fsync)
    store.open()
    t = time.perf_counter()
    asyncio.run(drive(store, declare))
    elapsed = time.perf_counter() - t
    store = DiskStore(store_dir, fsync=fsync)
    recovery = store.open()
    store.close()
    print(f"{n} definitions        {elapsed:8.3f} s to save, {recovery.seconds:.3f} s to reopen "
          f"({len(recovery.definitions)} found)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--dir", type=Path)
    parser.add_argument("--no-fsync", action="store_true")
    args = parser.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="bench_store_"))
    n, fsync = args.messages, not args.no_fsync
    print(f"data dir {root}; {n} messages of {args.size} B; fsync={fsync}")
    print(f"rss at start            {rss_mb():8.1f} MB")

    store = DiskStore(root, fsync=fsync)
    store.open()
    t = time.perf_counter()
    asyncio.run(drive(store, lambda: write_all(store, n, args.size)))
    elapsed = time.perf_counter() - t
    print(f"write                   {n / elapsed:8.0f} msg/s, "
          f"{n * args.size / elapsed / 2**20:.1f} MB/s ({elapsed:.1f} s)")
    print(f"group commits           {store.commits:8d} ({n / max(store.commits, 1):.0f} msg each)")
    print(f"data dir                {dir_mb(root):8.1f} MB")
    print(f"store tables            {store.ram_bytes() / 2**20:8.1f} MB "
          f"({store.ram_bytes() / n:.1f} B/message)")
    print(f"rss after write         {rss_mb():8.1f} MB")
    del store
    gc.collect()

    store = DiskStore(root, fsync=fsync)
    recovery = store.open()
    count = sum(len(v) for v in recovery.queues.values())
    print(f"recovery                {recovery.seconds:8.2f} s for {count} messages "
          f"(skipped {recovery.skipped_records})")
    print(f"rss with Recovery       {rss_mb():8.1f} MB")
    ids = [m.msg_id for m in recovery.queues[QUEUE]]
    del recovery
    gc.collect()
    print(f"store tables            {store.ram_bytes() / 2**20:8.1f} MB")
    print(f"rss after recovery      {rss_mb():8.1f} MB (Recovery dropped, id list kept)")
    store.close()

    store = DiskStore(root, fsync=fsync)  # this time the index is a compacted LIVE list
    recovery = store.open()
    print(f"recovery again          {recovery.seconds:8.2f} s (from the compacted index)")
    del recovery
    gc.collect()

    before = dir_mb(root)
    t = time.perf_counter()
    asyncio.run(drive(store, lambda: remove_all(store, ids)))
    elapsed = time.perf_counter() - t
    after = dir_mb(root)
    print(f"remove all              {len(ids) / elapsed:8.0f} acks/s ({elapsed:.1f} s)")
    print(f"data dir after drain    {after:8.1f} MB (reclaimed {before - after:.1f} MB)")
    print(f"rss at end              {rss_mb():8.1f} MB")
    declare_definitions(store_dir=root, fsync=fsync)
    if args.dir is None:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
