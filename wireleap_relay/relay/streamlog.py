"""Log lines about failed streams, within a budget per client connection (limits.py):
a client opening thousands of bad streams must not write thousands of lines. What the
budget holds back is counted and reported in one line, when the budget allows a line
again or when the connection ends."""

import logging
import weakref

from wireleap_relay.relay.limits import ConnectionLimits, LogBudget

log = logging.getLogger(__name__)
# Per connection object, gone with it: h2conn.py need not know about logging budgets.
_budgets: "weakref.WeakKeyDictionary[object, LogBudget]" = weakref.WeakKeyDictionary()


def _budget(conn: object) -> LogBudget:
    budget = _budgets.get(conn)
    if budget is None:
        limits = getattr(conn, "limits", ConnectionLimits())
        budget = _budgets[conn] = LogBudget(limits.failure_log_burst,
                                            limits.failure_logs_per_second)
    return budget


def stream_failed(conn: object, message: str, *args: object, level: int = logging.INFO,
                  exc_info: bool = False) -> None:
    """Log one line about a failed stream of `conn` if its budget allows."""
    budget = _budget(conn)
    if budget.admit():
        _report(budget)
        log.log(level, message, *args, exc_info=exc_info)


def connection_ended(conn: object) -> None:
    """Report what `conn` had held back, if anything."""
    budget = _budgets.get(conn)
    if budget is not None:
        _report(budget)


def _report(budget: LogBudget) -> None:
    held_back = budget.take_held_back()
    if held_back:
        log.info("%d more failed streams on one connection were not logged (a connection "
                 "may log %d, then %g a second)", held_back, budget.burst, budget.per_second)
