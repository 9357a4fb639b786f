"""The topic exchange: binding keys are dot-separated word patterns with '*' and '#'.

Semantics follow RabbitMQ's rabbit_db_topic_exchange: keys are split on every '.'
(so "a..b", ".a" and "a." contain empty words), the empty key has zero words, '*'
matches exactly one word (possibly empty) and '#' zero or more words.

Patterns live in a trie with separate '*' and '#' children. Matching walks states
(node, words consumed); a '#' node is entered once per word index (tracked by the
lowest index it was entered at), so the work is bounded by trie nodes x words, never
exponential, and nothing is ever regex based. Wildcard-free patterns are also indexed
by their full key, so an exchange used like a direct one routes with one dict lookup.
"""

from __future__ import annotations

from collections.abc import Hashable

from exchanges._table import DestinationSet, TableExchange
from exchanges.base import Arguments

_NOWHERE: tuple[Hashable, ...] = ()
#: what route() returns: a shared tuple or a fresh set, read-only either way
Routed = tuple[Hashable, ...] | set[Hashable]


def split_words(key: str) -> list[str]:
    """RabbitMQ's split: every '.' separates words, and "" is no words at all."""
    return key.split(".") if key else []


class _Node:
    __slots__ = ("children", "destinations", "hash", "star")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}  # literal words only
        self.star: _Node | None = None
        self.hash: _Node | None = None
        self.destinations = DestinationSet()

    def is_empty(self) -> bool:
        return not (self.children or self.star or self.hash or self.destinations)


class TopicExchange(TableExchange):
    """Topic routing over a pruned word trie.

    route() returns either a shared immutable tuple (when one pattern node matched) or a
    fresh set; callers must treat the result as read-only.
    """

    type_name = "topic"
    needs_headers = False

    def __init__(self) -> None:
        super().__init__()
        self._root = _Node()
        self._literal: dict[str, _Node] = {}  # wildcard-free pattern -> its trie node
        self._wildcard_bindings = 0

    def bind(self, destination: Hashable, routing_key: str, arguments: Arguments) -> bool:
        if not self._table.add(destination, routing_key, arguments):
            return False
        node = self._root
        wild = False
        for word in split_words(routing_key):
            if word == "*":
                wild = True
                if node.star is None:
                    node.star = _Node()
                node = node.star
            elif word == "#":
                wild = True
                if node.hash is None:
                    node.hash = _Node()
                node = node.hash
            else:
                child = node.children.get(word)
                if child is None:
                    child = node.children[word] = _Node()
                node = child
        node.destinations.add(destination)
        if wild:
            self._wildcard_bindings += 1
        else:
            self._literal[routing_key] = node
        return True

    def _forget(self, destination: Hashable, routing_key: str, arguments: Arguments) -> None:
        # The table said this binding existed, so its whole path exists.
        path: list[tuple[_Node, str]] = []  # (parent, word leading out of it)
        node = self._root
        wild = False
        for word in split_words(routing_key):
            path.append((node, word))
            if word == "*":
                wild = True
                child = node.star
            elif word == "#":
                wild = True
                child = node.hash
            else:
                child = node.children.get(word)
            assert child is not None, "topic trie out of step with the binding table"
            node = child
        node.destinations.remove(destination)
        if wild:
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
        matched = self._match(split_words(routing_key))
        if not matched:
            return _NOWHERE
        if len(matched) == 1:
            return matched[0].destinations.snapshot()
        found: set[Hashable] = set()
        for node in matched:
            found.update(node.destinations.snapshot())
        return found

    def _match(self, words: list[str]) -> list[_Node]:
        """Trie nodes with destinations whose pattern matches words; each node once.

        Every (node, index) state is visited at most once: a non-'#' node is reached only
        from its single parent, and a '#' node is entered at each index only once.
        """
        end = len(words)
        matched: list[_Node] = []
        pending: list[tuple[_Node, int]] = [(self._root, 0)]
        hash_entered: dict[_Node, int] = {}  # '#' node -> lowest index entered at
        while pending:
            node, index = pending.pop()
            hash_node = node.hash
            if hash_node is not None:
                # '#' swallows words index..j-1 for every j not already covered.
                covered = hash_entered.get(hash_node, end + 1)
                if index < covered:
                    hash_entered[hash_node] = index
                    for j in range(index, covered):
                        pending.append((hash_node, j))
            if index == end:
                if node.destinations:
                    matched.append(node)
                continue
            child = node.children.get(words[index])
            if child is not None:
                pending.append((child, index + 1))
            if node.star is not None:
                pending.append((node.star, index + 1))
        return matched


