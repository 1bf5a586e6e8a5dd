"""Evaluated served windows, kept for frozen reads: one LRU for every run, within a byte budget.

Every rank of a job asks for the same windows, and a hot reader asks again and again; a served window's values
can never change within one incarnation of one loaded run, so they are kept as evaluated. Keys carry the serial
of the run's cache entry (``RunService``): an entry dropped for any reason (another replica's delete, re-create or
resume, a failed write) takes its windows' keys with it, and they age out here unseen. Memory is bounded by
``max_bytes`` (the ``limits.cache_bytes`` setting) whatever the number of runs, windows or groups; a window larger
than the whole budget is served but not kept.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

#: (entry serial, incarnation, start, count)
WindowKey = tuple[int, int, int, int]
#: what a key, the arrays' headers and the dict slot cost besides the values (measured with tracemalloc: ~0.5 KB)
OVERHEAD_BYTES = 512


@dataclass(frozen=True)
class Window:
    lr: np.ndarray[Any, np.dtype[np.float64]]
    momentum: np.ndarray[Any, np.dtype[np.float64]] | None
    end: int | None

    @property
    def nbytes(self) -> int:
        return OVERHEAD_BYTES + self.lr.nbytes + (0 if self.momentum is None else self.momentum.nbytes)


class WindowCache:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._items: OrderedDict[WindowKey, Window] = OrderedDict()
        self._lock = threading.Lock()  # held for dict operations only: the event loop's fast path takes it

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: WindowKey) -> Window | None:
        with self._lock:
            window = self._items.get(key)
            if window is not None:
                self._items.move_to_end(key)
            return window

    def put(self, key: WindowKey, window: Window) -> None:
        size = window.nbytes
        if size > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.bytes -= old.nbytes
            self._items[key] = window
            self.bytes += size
            while self.bytes > self.max_bytes:
                _, evicted = self._items.popitem(last=False)
                self.bytes -= evicted.nbytes
