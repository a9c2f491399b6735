"""The budgets of a client connection: a token bucket, and SETTINGS and PING frames
counted on the bytes as they arrive. (Early resets are counted by the connection, which
knows which streams were answered: tests/integration/test_abuse.py.)"""

from hyperframe.frame import (
    DataFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
)

from wireleap_relay.relay.limits import (
    PREFACE_SIZE,
    Budget,
    ConnectionLimits,
    ControlBudget,
    LogBudget,
)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_a_burst_then_the_rate():
    clock = Clock()
    budget = Budget(10, 2.0, clock)
    assert all(budget.spend() for _ in range(10))
    assert not budget.spend()
    clock.now += 1.0  # two more
    assert budget.spend() and budget.spend()
    assert not budget.spend()


def test_the_budget_refills_only_to_the_burst():
    clock = Clock()
    budget = Budget(5, 100.0, clock)
    clock.now += 3600
    assert sum(budget.spend() for _ in range(20)) == 5


def test_log_lines_held_back_are_counted_once():
    clock = Clock()
    budget = LogBudget(3, 1.0, clock)
    assert [budget.admit() for _ in range(10)] == [True] * 3 + [False] * 7
    assert budget.take_held_back() == 7
    assert budget.take_held_back() == 0
    clock.now += 2.0
    assert [budget.admit() for _ in range(3)] == [True, True, False]
    assert budget.take_held_back() == 1


def stream_of(frames: list) -> bytes:
    return PREFACE + b"".join(frame.serialize() for frame in frames)


def fed(budgets: ControlBudget, data: bytes, piece: int) -> str | None:
    """The data in pieces of `piece` bytes, as reads may cut it anywhere."""
    for start in range(0, len(data), piece):
        said = budgets.admit(data[start:start + piece])
        if said:
            return said
    return None


def test_a_real_client_is_within_every_budget():
    """A Go client's opening, requests, data and the odd reset and ping."""
    frames = [SettingsFrame(0, settings={4: 4194304}), SettingsFrame(0, flags=["ACK"])]
    for stream_id in range(1, 400, 2):
        frames += [HeadersFrame(stream_id, data=b"\x82" * 50, flags=["END_HEADERS"]),
                   DataFrame(stream_id, data=b"x" * 1000), RstStreamFrame(stream_id)]
    frames += [PingFrame(0, opaque_data=b"12345678")] * 5
    data = stream_of(frames)
    for piece in (1, 7, 9, 4096, len(data)):
        assert fed(ControlBudget(ConnectionLimits()), data, piece) is None


def test_too_many_settings_pings_or_priorities_acks_included():
    limits = ConnectionLimits(control_burst=20)
    said = "sends SETTINGS, PING and PRIORITY frames"
    for frames in ([SettingsFrame(0)] * 30, [PingFrame(0)] * 30,
                   [SettingsFrame(0, flags=["ACK"])] * 30, [PingFrame(0, flags=["ACK"])] * 30,
                   [PriorityFrame(1, depends_on=0)] * 30):
        assert fed(ControlBudget(limits), stream_of(frames), 5) == said


def test_frame_payloads_are_skipped_not_read_as_headers():
    """DATA whose bytes look like SETTINGS frame headers count for nothing."""
    fake_settings = SettingsFrame(0).serialize() * 2000
    data = stream_of([DataFrame(1, data=fake_settings[:16000])])
    assert fed(ControlBudget(ConnectionLimits(control_burst=1)), data, 777) is None
    assert len(PREFACE) == PREFACE_SIZE
