"""The most recently stored or read answers, in memory, so a re-served answer needs no database read.

An answer's key holds everything it depends on (the question, its parameters, the policy and data
versions) and a stored answer is never changed or removed, so a remembered answer is never stale,
whichever process stored it. Only answers already committed are remembered. At most MAX_CHARS of
answer text are kept (the least recently used go first).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping

MAX_CHARS = 64 * 1024 * 1024


class AnswerMemory:
    def __init__(self, max_chars: int = MAX_CHARS) -> None:
        self.max_chars = max_chars
        self._answers: OrderedDict[str, str] = OrderedDict()
        self._chars = 0
        self._lock = threading.Lock()

    def get(self, keys: Iterable[str]) -> dict[str, str | None]:
        """Each key's answer, or None where it is not remembered."""
        found: dict[str, str | None] = {}
        with self._lock:
            for key in keys:
                answer = found[key] = self._answers.get(key)
                if answer is not None:
                    self._answers.move_to_end(key)
        return found

    def add(self, answers: Mapping[str, str]) -> None:
        """Remember committed answers."""
        with self._lock:
            for key, answer in answers.items():
                if key in self._answers or len(answer) > self.max_chars:
                    continue
                self._answers[key] = answer
                self._chars += len(answer)
            while self._chars > self.max_chars:
                _, dropped = self._answers.popitem(last=False)
                self._chars -= len(dropped)
