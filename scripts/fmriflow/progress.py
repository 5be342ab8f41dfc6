"""Progress of long jobs in their logs: items done, elapsed time, time left.

``tail -f`` on a job's log then shows how far a searchlight, a permutation
test or the restarts of an ICA have come.
"""

import logging
import threading
import time


class Progress:
    """Items done and the time left, logged every ``every`` seconds (and at the end).

    Parameters
    ----------
    n_items : int
        Items to do.
    every : float
        Seconds between log lines.
    what : str
        The task, as the log line begins (``"searchlight"``).
    unit : str
        The items, plural (``"centres"``).
    logger : str
        Name of the logger.
    """

    def __init__(
        self,
        n_items,
        every=30.0,
        what="searchlight",
        unit="centres",
        logger="fmriflow.searchlight",
    ):
        self.n_items, self.every = int(n_items), every
        self.what, self.unit = what, unit
        self.logger = logging.getLogger(logger)
        self.done = 0
        self.start = self.last = time.perf_counter()
        self._lock = threading.Lock()

    @property
    def n_centres(self):
        """The items to do (a searchlight's centres)."""
        return self.n_items

    def __call__(self, n_done=1):
        """Record ``n_done`` more items (from any thread)."""
        with self._lock:
            self.done += n_done
            now = time.perf_counter()
            if now - self.last < self.every and self.done < self.n_items:
                return
            self.last = now
            elapsed = now - self.start
            done = self.done
        left = elapsed / done * (self.n_items - done) if done else float("nan")
        self.logger.info(
            "%s: %d of %d %s (%.0f%%) in %.0f s, about %.0f s left",
            self.what,
            done,
            self.n_items,
            self.unit,
            100.0 * done / max(self.n_items, 1),
            elapsed,
            left,
        )
