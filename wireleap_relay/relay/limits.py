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
    # Resetting streams: a burst of this many, then this many per second on average, or
    # GOAWAY(ENHANCE_YOUR_CALM). Streams cost a tunnel greenlet each, resets cost nothing
    # to the client (CVE-2023-44487, "rapid reset").
    reset_burst: int = 500
    resets_per_second: float = 50.0


class ResetBudget:
    """A token bucket for the client's RST_STREAM frames."""

    def __init__(self, limits: ConnectionLimits, clock=time.monotonic):
        self._burst = float(limits.reset_burst)
        self._rate = limits.resets_per_second
        self._clock = clock
        self._tokens = self._burst
        self._at = clock()

    def spend(self) -> bool:
        """One reset; False once the client has used up its budget."""
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True
