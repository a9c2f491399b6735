"""Usage periods (control.md §6.1): a period starts at stats.json's `created_at` and
lasts `timeframe`; times are epoch milliseconds. As relay 0.6: a period found over at
start begins the next one where the old one ended, or now if a whole period was missed."""


def next_reset(created_at: int, timeframe: int, now: int) -> tuple[int, bool]:
    """(when the period that should be running ends, whether a reset is due now). When
    one is due, the new period starts at `next - timeframe`."""
    if created_at + 2 * timeframe < now:
        return now + timeframe, True
    if created_at + timeframe < now:
        return created_at + 2 * timeframe, True
    return created_at + timeframe, False
