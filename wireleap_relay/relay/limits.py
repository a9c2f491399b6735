"""What one client connection may make the relay hold, in one place: the HTTP/2 settings it
announces and the rules it enforces beyond them. A real Go client stays far inside each.
"""

import time
from dataclasses import dataclass

# Frames and header lists: a real `wl-payload` is under 1 KiB. h2 buffers up to 64
# CONTINUATION frames before it checks the header list size, so the frame size bounds that
# buffer too (64 x 16 KiB = 1 MiB per connection, instead of 64 MiB with 1 MiB frames).
MAX_FRAME_SIZE = 16 * 1024
MAX_HEADER_LIST_SIZE = 16 * 1024


@dataclass(frozen=True)
class ConnectionLimits:
    # Tunnels running at once. Counts streams the client reset but whose tunnel has not
    # ended yet, which h2's own count of open streams misses.
    max_streams: int = 250
    # A client that has sent nothing of HTTP/2 after its TLS handshake is dropped then, as
    # the Go server does after 10 s.
    preface_timeout: float = 10.0
    # A connection without streams for this long is closed with GOAWAY(NO_ERROR): idle
    # connections hold a worker's connection slots. Checked each time a read has waited
    # WRITE_TIMEOUT (h2conn), so it may last up to that much longer. Clients dial again.
    idle_timeout: float = 300.0
    # Streams reset by the client before the relay answered them, or refused for being
    # past max_streams: a burst of this many, then this many per second on average, or
    # GOAWAY(ENHANCE_YOUR_CALM). Each cost the relay a tunnel's start (payload, token,
    # store, dial) and the client nothing (CVE-2023-44487, "rapid reset"). A Go client
    # resets every stream once it is done with it: those answered streams do not count.
    reset_burst: int = 500
    resets_per_second: float = 50.0
    # SETTINGS, PING and PRIORITY frames, ACKs included: payloads of nothing that cost h2
    # as much CPU as a request (CVE-2019-9512, -9515). A Go client sends a few.
    control_burst: int = 100
    control_per_second: float = 20.0
    # Log lines about failed streams: a burst, then this many a second. A bad stream
    # costs a client a few bytes and the operator's disk a line; past the budget the
    # lines are counted and reported in one summary (streamlog.py).
    failure_log_burst: int = 20
    failure_logs_per_second: float = 1.0


class Budget:
    """A token bucket: a burst, then a steady rate."""

    def __init__(self, burst: int, per_second: float, clock=time.monotonic):
        self._burst = float(burst)
        self._rate = per_second
        self._clock = clock
        self._tokens = self._burst
        self._at = clock()

    def spend(self) -> bool:
        """One more; False once the client has used up its budget."""
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


class LogBudget:
    """Lines one connection may put in the log: a Budget, and the count of the lines it
    held back since the last report."""

    def __init__(self, burst: int, per_second: float, clock=time.monotonic):
        self.burst, self.per_second = burst, per_second
        self._budget = Budget(burst, per_second, clock)
        self.held_back = 0

    def admit(self) -> bool:
        if self._budget.spend():
            return True
        self.held_back += 1
        return False

    def take_held_back(self) -> int:
        """How many lines were held back since the last call."""
        count, self.held_back = self.held_back, 0
        return count


PREFACE_SIZE = 24  # "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
PRIORITY, SETTINGS, PING = 0x2, 0x4, 0x6


class ControlBudget:
    """Counts the client's SETTINGS and PING frames as bytes arrive, before h2 parses
    them: h2 handles everything one read brings (thousands of frames) before the relay
    sees an event, so a check after it would come too late for the CPU."""

    def __init__(self, limits: ConnectionLimits, clock=time.monotonic):
        self.control = Budget(limits.control_burst, limits.control_per_second, clock)
        self._skip = PREFACE_SIZE  # bytes until the next frame header
        self._header = b""

    def admit(self, data: bytes) -> str | None:
        """None while within budget, else what the client sends too much of."""
        view = memoryview(data)
        while view:
            if self._skip:
                step = min(self._skip, len(view))
                self._skip -= step
                view = view[step:]
                continue
            need = 9 - len(self._header)
            self._header += bytes(view[:need])
            view = view[need:]
            if len(self._header) < 9:
                break
            length = int.from_bytes(self._header[:3], "big")
            kind = self._header[3]
            self._header = b""
            self._skip = length
            if kind in (PRIORITY, SETTINGS, PING) and not self.control.spend():
                return "sends SETTINGS, PING and PRIORITY frames"
        return None
