"""The reset budget of a client connection (rapid reset)."""

from wireleap_relay.relay.limits import ConnectionLimits, ResetBudget


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_a_burst_then_the_rate():
    clock = Clock()
    budget = ResetBudget(ConnectionLimits(reset_burst=10, resets_per_second=2.0), clock)
    assert all(budget.spend() for _ in range(10))
    assert not budget.spend()
    clock.now += 1.0  # two more
    assert budget.spend() and budget.spend()
    assert not budget.spend()


def test_the_budget_refills_only_to_the_burst():
    clock = Clock()
    budget = ResetBudget(ConnectionLimits(reset_burst=5, resets_per_second=100.0), clock)
    clock.now += 3600
    assert sum(budget.spend() for _ in range(20)) == 5


def test_a_steady_client_never_runs_out():
    """A Go client cancelling a stream now and then, far below the rate."""
    clock = Clock()
    budget = ResetBudget(ConnectionLimits(), clock)
    for _ in range(10_000):
        clock.now += 0.1
        assert budget.spend()
