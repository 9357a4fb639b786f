"""The topic exchange: binding keys are dot-separated word patterns with '*' and '#'.

Semantics follow RabbitMQ's rabbit_db_topic_exchange: keys are split on every '.'
(so "a..b", ".a" and "a." contain empty words), the empty key has zero words, '*'
matches exactly one word (possibly empty) and '#' zero or more words.

Patterns live in a trie with separate '*' and '#' children; wildcard-free patterns
are also indexed by their full key, so an exchange used like a direct one routes
with one dict lookup. Nothing is ever regex based.

Most binding sets need few (node, words consumed) states: a plain depth-first walk
of them (_quick_match) answers first, and gives way past QUICK_STATES to an NFA
simulation over the trie, one word at a time (_Match). A '#' node reached after i
words is live for every later word too, so only the first index matters: it is
entered once, and its children wait in per-word lists instead of being looked up
at every word. A node whose every '#' descendant is already live has nothing left
to find and is dropped (pending counts), so stacked '#' patterns such as
`#.a.#.b.#...` cost about one visit per trie node, not trie nodes x words.
Destinations of nodes below the last '#' of a pattern are found at the end by
walking back from each live '#' node over the key's last words. The work is
counted and the match can stop after a slice of it: route_in_slices() lets a
caller that can wait (a publishing connection) finish a long match in slices,
so one publish never holds the event loop for long. A small LRU cache of recent
keys per exchange answers repeated keys without matching.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Generator, Hashable, Iterable

from ._table import DestinationSet, TableExchange
from .base import Arguments, ExchangeType

_NOWHERE: tuple[Hashable, ...] = ()
#: what route() returns: a shared tuple, read-only
Routed = tuple[Hashable, ...]

#: units of matching work (node visits) in one slice: about a millisecond of CPU
SLICE_WORK = 4_000
#: list items filtered between two checks of the work done
_CHUNK = 2048
#: states the plain walk (_quick_match) may visit before _Match takes over
QUICK_STATES = 256
#: routing keys remembered per exchange, with their destinations
CACHE_SIZE = 128


def split_words(key: str) -> list[str]:
    """RabbitMQ's split: every '.' separates words, and "" is no words at all."""
    return key.split(".") if key else []


class _Node:
    __slots__ = ("bound", "children", "dest_depths", "destinations", "hash", "hashes_below",
                 "onward", "parent", "star")

    def __init__(self, parent: _Node | None = None) -> None:
        self.parent = parent
        self.children: dict[str, _Node] = {}  # literal words only
        self.star: _Node | None = None
        self.hash: _Node | None = None
        self.destinations = DestinationSet()
        self.bound = 0  # bindings ending here (a plain int: cheaper to test than destinations)
        # bindings through this node with a '#' further on: it leads to a '#' node
        self.hashes_below = 0
        # the literal children that lead to a '#' node (hashes_below > 0)
        self.onward: dict[str, _Node] | None = None
        # for the root and '#' nodes: depth -> bindings ending that many words below,
        # with no further '#' (matched by walking back from the key's end)
        self.dest_depths: dict[int, int] | None = None

    def is_empty(self) -> bool:
        return not (self.children or self.star or self.hash or self.destinations)


class TopicExchange(TableExchange):
    """Topic routing over a pruned word trie.

    route() returns a shared immutable tuple (also kept in the cache); callers must
    treat the result as read-only.
    """

    type_name = "topic"
    needs_headers = False

    def __init__(self) -> None:
        super().__init__()
        self._root = _Node()
        self._literal: dict[str, _Node] = {}  # wildcard-free pattern -> its trie node
        self._wildcard_bindings = 0
        self._version = 0  # bumped by every bind and unbind
        self._cache: OrderedDict[str, tuple[Hashable, ...]] = OrderedDict()

    def _changed(self) -> None:
        self._version += 1
        if self._cache:
            self._cache.clear()

    def bind(self, destination: Hashable, routing_key: str, arguments: Arguments) -> bool:
        if not self._table.add(destination, routing_key, arguments):
            return False
        self._changed()
        words = split_words(routing_key)
        last_hash = _last_hash(words)
        node = head = self._root
        depth = 0
        for index, word in enumerate(words):
            parent = node
            if word == "*":
                if node.star is None:
                    node.star = _Node(node)
                node = node.star
            elif word == "#":
                if node.hash is None:
                    node.hash = _Node(node)
                node = node.hash
            else:
                child = node.children.get(word)
                if child is None:
                    child = node.children[word] = _Node(node)
                node = child
            if index < last_hash:
                node.hashes_below += 1
                if node.hashes_below == 1 and word != "*" and word != "#":
                    if parent.onward is None:
                        parent.onward = {}
                    parent.onward[word] = node
            if word == "#":
                head, depth = node, 0
            else:
                depth += 1
        node.destinations.add(destination)
        node.bound += 1
        if depth:
            if head.dest_depths is None:
                head.dest_depths = {}
            head.dest_depths[depth] = head.dest_depths.get(depth, 0) + 1
        if last_hash >= 0 or "*" in words:
            self._wildcard_bindings += 1
        else:
            self._literal[routing_key] = node
        return True

    def _forget(self, destination: Hashable, routing_key: str, arguments: Arguments) -> None:
        self._changed()
        # The table said this binding existed, so its whole path exists.
        words = split_words(routing_key)
        last_hash = _last_hash(words)
        path: list[tuple[_Node, str]] = []  # (parent, word leading out of it)
        node = head = self._root
        depth = 0
        for index, word in enumerate(words):
            path.append((node, word))
            parent = node
            if word == "*":
                child = node.star
            elif word == "#":
                child = node.hash
            else:
                child = node.children.get(word)
            assert child is not None, "topic trie out of step with the binding table"
            node = child
            if index < last_hash:
                node.hashes_below -= 1
                if not node.hashes_below and word != "*" and word != "#":
                    assert parent.onward is not None
                    del parent.onward[word]
                    if not parent.onward:
                        parent.onward = None
            if word == "#":
                head, depth = node, 0
            else:
                depth += 1
        node.destinations.remove(destination)
        node.bound -= 1
        if depth:
            depths = head.dest_depths
            assert depths is not None
            depths[depth] -= 1
            if not depths[depth]:
                del depths[depth]
                if not depths:
                    head.dest_depths = None
        if last_hash >= 0 or "*" in words:
            self._wildcard_bindings -= 1
        elif not node.destinations:
            del self._literal[routing_key]
        # Prune from the leaf up so an emptied exchange holds nothing but its root.
        while path and node.is_empty():
            parent, word = path.pop()
            if word == "*":
                parent.star = None
            elif word == "#":
                parent.hash = None
            else:
                del parent.children[word]
            node = parent

    def route(self, routing_key: str, headers: Arguments | None) -> Routed:
        if not self._wildcard_bindings:
            node = self._literal.get(routing_key)
            return _NOWHERE if node is None else node.destinations.snapshot()
        found = self._cached(routing_key)
        if found is not None:
            return found
        words = split_words(routing_key)
        matched = _quick_match(self._root, words)
        if matched is None:
            match = _Match(self._root, words, None)
            for _ in match.steps():
                pass  # no slices: run to the end
            matched = match.matched
        return self._remember(routing_key, matched)

    def route_or_defer(self, routing_key: str) -> Routed:
        """route(), or RouteDeferred when the match needs more than one slice of work."""
        if not self._wildcard_bindings:
            return self.route(routing_key, None)
        found = self._cached(routing_key)
        if found is not None:
            return found
        words = split_words(routing_key)
        matched = _quick_match(self._root, words)
        if matched is not None:
            return self._remember(routing_key, matched)
        match = _Match(self._root, words, SLICE_WORK)
        steps = match.steps()
        for _ in steps:  # the first slice ended before the match: continue it later
            raise RouteDeferred(TopicRouting(self, routing_key, SLICE_WORK, (match, steps)))
        return self._remember(routing_key, match.matched)

    def _cached(self, routing_key: str) -> tuple[Hashable, ...] | None:
        cache = self._cache
        found = cache.get(routing_key)
        if found is not None:
            cache.move_to_end(routing_key)
        return found

    def _remember(self, routing_key: str, matched: list[_Node]) -> tuple[Hashable, ...]:
        if not matched:
            found = _NOWHERE
        elif len(matched) == 1:
            found = matched[0].destinations.snapshot()
        else:
            union: set[Hashable] = set()
            for node in matched:
                union.update(node.destinations.snapshot())
            found = tuple(union)
        cache = self._cache
        if len(cache) >= CACHE_SIZE:
            cache.popitem(last=False)
        cache[routing_key] = found
        return found


def _last_hash(words: list[str]) -> int:
    """Index of the last '#' in a pattern's words, -1 when there is none."""
    for index in range(len(words) - 1, -1, -1):
        if words[index] == "#":
            return index
    return -1


def _quick_match(root: _Node, words: list[str]) -> list[_Node] | None:
    """Trie nodes with destinations whose pattern matches words, each once, or None
    when that takes more than QUICK_STATES states (then _Match does it).

    A depth-first walk of (node, words consumed) states, each visited at most once (a
    '#' node is entered at each index only once): cheaper than _Match when few states
    are live, as with most binding sets, but nodes x words on stacked '#' patterns.
    """
    end = len(words)
    matched: list[_Node] = []
    pending: list[tuple[_Node, int]] = [(root, 0)]
    hash_entered: dict[_Node, int] = {}  # '#' node -> lowest index entered at
    budget = QUICK_STATES
    while pending:
        node, index = pending.pop()
        hash_node = node.hash
        if hash_node is not None:
            # '#' swallows words index..j-1 for every j not already covered.
            covered = hash_entered.get(hash_node, end + 1)
            if index < covered:
                hash_entered[hash_node] = index
                budget -= covered - index
                if budget < 0:
                    return None
                for j in range(index, covered):
                    pending.append((hash_node, j))
        if index == end:
            if node.bound:
                matched.append(node)
            continue
        child = node.children.get(words[index])
        if child is not None:
            pending.append((child, index + 1))
        if node.star is not None:
            pending.append((node.star, index + 1))
        budget -= 1
        if budget < 0:
            return None
    return matched


class _Match:
    """One topic match in progress, resumable: steps() yields after each slice of work.

    live maps each '#' node reached to the first index it was reached at (it matches
    from there to any later index). pending maps every other node reached to how many
    of its '*' and literal children still lead to a '#' node not yet live; at 0 the
    node is done and nothing reached through it again can change the outcome, except
    destinations at the very end, which the final walk back finds.
    """

    __slots__ = ("ends", "fresh", "live", "matched", "pending", "root", "slice_work", "words")

    def __init__(self, root: _Node, words: list[str], slice_work: int | None) -> None:
        self.root = root
        self.words = words
        self.slice_work = slice_work if slice_work is not None else 1 << 62
        self.live: dict[_Node, int] = {}
        self.pending: dict[_Node, int] = {}
        self.fresh: list[_Node] = []  # '#' nodes made live, children not yet waiting
        self.ends: list[_Node] = []  # live '#' nodes with destinations at or below them
        self.matched: list[_Node] = []

    def make_live(self, node: _Node | None, index: int) -> None:
        live = self.live
        while node is not None and node not in live:
            live[node] = index
            self.fresh.append(node)
            if node.bound or node.dest_depths:
                self.ends.append(node)
            node = node.hash  # '#.#': the next '#' is live from the same index

    def finish(self, node: _Node) -> None:
        """node is done: tell its ancestors up to the nearest '#' node (or the root)."""
        pending = self.pending
        parent = node.parent
        while parent is not None:
            count = pending.get(parent)
            if count is None:  # a '#' node: its done children drop out of the waiting lists
                return
            pending[parent] = count - 1
            if count > 1:
                return
            parent = parent.parent

    def steps(self) -> Generator[None, None, None]:
        words = self.words
        end = len(words)
        budget = self.slice_work
        work = 0
        live, pending, fresh, ends = self.live, self.pending, self.fresh, self.ends
        make_live, finish = self.make_live, self.finish
        # word -> children of live '#' nodes that lead on; None -> their '*' children
        waiting: dict[str | None, list[_Node]] = {}
        step: list[_Node] = []
        fired = [self.root]
        index = 0
        while True:
            # Enter what the last word led to (the root, before the first word).
            for child in fired:
                count = pending.get(child)
                if count is None:  # first visit: count its children that lead to a '#'
                    onward, star = child.onward, child.star
                    count = (len(onward) if onward else 0) + (
                        1 if star is not None and star.hashes_below else 0)
                    pending[child] = count
                    node = child.hash
                    if node is not None and node not in live:
                        if node.hash is None:
                            live[node] = index
                            fresh.append(node)
                            if node.bound or node.dest_depths:
                                ends.append(node)
                        else:
                            make_live(node, index)
                    if not count and child.parent in pending:  # not below a '#' node
                        finish(child)
                if count:
                    step.append(child)
                work += 1
                if work >= budget:
                    yield
                    work = 0
            if fresh:  # the children of new '#' nodes wait for their word from now on
                for node in fresh:
                    onward = node.onward
                    if onward:
                        for word, child in onward.items():
                            targets = waiting.get(word)
                            if targets is None:
                                waiting[word] = [child]
                            else:
                                targets.append(child)
                        work += len(onward)
                    star = node.star
                    if star is not None and star.hashes_below:
                        targets = waiting.get(None)
                        if targets is None:
                            waiting[None] = [star]
                        else:
                            targets.append(star)
                    work += 1
                    if work >= budget:
                        yield
                        work = 0
                fresh.clear()
            if index == end or not (step or waiting):
                break  # the key's end, or no '#' node is left to reach
            word = words[index]
            index += 1
            fired = []
            for node in step:
                reached = node.children.get(word)
                if reached is not None and reached.hashes_below:
                    fired.append(reached)
                reached = node.star
                if reached is not None and reached.hashes_below:
                    fired.append(reached)
                work += 1
                if work >= budget:
                    yield
                    work = 0
            step = []
            # Children of live '#' nodes waiting for this word (or any word, '*'), less
            # those done meanwhile: filtered in chunks, so that a slice ends in time.
            for key in (word, None):
                targets = waiting.get(key)
                if not targets:
                    continue
                kept: list[_Node] = []
                for start in range(0, len(targets), _CHUNK):
                    chunk = targets[start:start + _CHUNK]
                    kept += [child for child in chunk if pending.get(child, 1)]
                    work += len(chunk)
                    if work >= budget:
                        yield
                        work = 0
                fired += kept
                if kept:
                    waiting[key] = kept
                else:
                    del waiting[key]
        # Destinations: live '#' nodes match to the end; below one (or the root), a node
        # `depth` words down matches when the key's last `depth` words lead to it.
        matched = self.matched
        root = self.root
        if not end:
            if root.bound:
                matched.append(root)
        elif root.dest_depths and end in root.dest_depths:
            work += _walk_back(root, words, 0, matched)
        for node in ends:
            if node.bound:
                matched.append(node)
            depths = node.dest_depths
            if depths:
                first = live[node]
                for depth in depths:
                    if end - depth >= first:
                        work += _walk_back(node, words, end - depth, matched)
            work += 1
            if work >= budget:
                yield
                work = 0


def _walk_back(node: _Node, words: list[str], start: int, matched: list[_Node]) -> int:
    """Append the nodes with destinations that words[start:] leads to from node without
    passing a '#'; returns the work done."""
    nodes = [node]
    work = 0
    for index in range(start, len(words)):
        word = words[index]
        reached: list[_Node] = []
        for node in nodes:
            child = node.children.get(word)
            if child is not None:
                reached.append(child)
            if node.star is not None:
                reached.append(node.star)
        work += len(nodes)
        if not reached:
            return work
        nodes = reached
    matched.extend(node for node in nodes if node.bound)
    return work


# --- routing in slices ------------------------------------------------------------------

#: topic matches finished in slices: (table, routing key) -> (table version, destinations)
Finished = dict[tuple[TopicExchange, str], tuple[int, tuple[Hashable, ...]]]


class TopicRouting:
    """A topic match run one slice at a time, against the exchange's bindings as they
    are: if a bind or unbind changes them between slices, it starts again."""

    def __init__(self, exchange: TopicExchange, routing_key: str, slice_work: int,
                 started: tuple[_Match, Generator[None, None, None]] | None = None) -> None:
        self.exchange = exchange
        self.routing_key = routing_key
        self.slice_work = slice_work
        self.version = exchange._version
        self.restarts = 0
        self.result: tuple[Hashable, ...] = _NOWHERE
        if started is None:
            match = _Match(exchange._root, split_words(routing_key), slice_work)
            started = (match, match.steps())
        self._match, self._steps = started

    def step(self) -> bool:
        """Run one slice; True once the match is done (its result in self.result and in
        the exchange's cache)."""
        exchange = self.exchange
        if exchange._version != self.version:
            self.restarts += 1
            self.version = exchange._version
            self._match = _Match(exchange._root, split_words(self.routing_key), self.slice_work)
            self._steps = self._match.steps()
        for _ in self._steps:
            return False
        self.result = exchange._remember(self.routing_key, self._match.matched)
        return True

    def record(self, finished: Finished) -> None:
        """Keep the result for routing this key again (route_in_slices)."""
        finished[(self.exchange, self.routing_key)] = (self.version, self.result)


class RouteDeferred(Exception):
    """A topic match needs more than one slice: call task.step() until it returns True
    (letting other work run in between), task.record(finished), then route again."""

    def __init__(self, task: TopicRouting) -> None:
        super().__init__(task.routing_key)
        self.task = task


def route_in_slices(table: ExchangeType, routing_key: str, headers: Arguments | None,
                    finished: Finished) -> Iterable[Hashable]:
    """table.route(), except that a topic match longer than one slice raises RouteDeferred
    instead of holding the caller; finished holds the matches done in slices since."""
    if not isinstance(table, TopicExchange):
        return table.route(routing_key, headers)
    if finished:
        done = finished.get((table, routing_key))
        if done is not None and done[0] == table._version:
            return done[1]
    return table.route_or_defer(routing_key)
