"""How many sharetokens are pending, submitted and rejected, for the metrics, without
listing the store at every scrape: the pending folder can hold many thousands of files.

Pending is the count of the last listing (the submitter lists the store each tick, and
the master once at start) plus the tokens workers accepted since, minus those settled
since. Between listings it can be off by the tokens accepted while a listing ran; the next
listing corrects it.
"""

from collections.abc import Callable


class TokenCounts:
    def __init__(self, accepted: Callable[[], int]):
        """`accepted`: the workers' count of stored tokens, monotonic while we run."""
        self._accepted = accepted
        self.submitted = 0  # taken by their contract (a 409 duplicate included)
        self.rejected = 0  # set aside: refused, past their window, or malformed
        self._listed: int | None = None
        self._accepted_then = 0
        self._settled_then = 0

    def listed(self, count: int) -> None:
        """A listing of the pending folder found `count` tokens."""
        self._listed = count
        self._accepted_then = self._accepted()
        self._settled_then = self.submitted + self.rejected

    @property
    def pending(self) -> int | None:
        """None until the store was listed once."""
        if self._listed is None:
            return None
        settled = self.submitted + self.rejected - self._settled_then
        return max(0, self._listed + self._accepted() - self._accepted_then - settled)
