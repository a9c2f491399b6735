"""Stream failures as values: each carries the status code the wire reports (wire.md §2.5).

`origin_is_target` marks failures on the remote side of a `target://` stream; the tunnel
fills in the concrete origin (the literal "target" or the relay's public key).
"""


class StreamFailure(Exception):
    code = 400
    outcome = "broken"  # how the stream is counted (reports.OUTCOMES)

    def __init__(self, description: str, origin_is_target: bool = False,
                 mentions_target: bool = False):
        super().__init__(description)
        self.description = description
        self.origin_is_target = origin_is_target
        self.mentions_target = mentions_target  # quotes a remote that may be a target


class Refused(StreamFailure):
    """The relay will not serve this stream (bad payload, token, contract, policy)."""

    code = 400
    outcome = "refused"


class DialTimeout(StreamFailure):
    code = 408
    outcome = "dial_timeout"


class DialFailed(StreamFailure):
    code = 502
    outcome = "dial_failed"


class SpliceTimeout(StreamFailure):
    code = 408
    outcome = "timeout"


class SpliceFailed(StreamFailure):
    code = 410
