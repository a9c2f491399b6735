"""The status object (`status.T` in Go): what the relay reports on the wire and in errors."""

from dataclasses import dataclass

from wireleap_relay.wire.jsonenc import compact

ORIGIN_TARGET = "target"


@dataclass(frozen=True)
class Status:
    code: int
    description: str
    origin: str = ""
    cause: str = ""

    def to_json(self) -> str:
        """Compact JSON in Go field order, empty origin/cause left out, no trailing newline.

        Go relay 0.6.1 appends a newline, which makes Go's HTTP/2 server drop the header
        (wire.md §2.6); we send the designed form that Go clients can actually read.
        """
        obj: dict = {"code": self.code, "description": self.description}
        if self.origin:
            obj["origin"] = self.origin
        if self.cause:
            obj["cause"] = self.cause
        return compact(obj)

    def is_same(self, other: "Status") -> bool:
        """Go's status identity: code and description, never origin or cause."""
        return self.code == other.code and self.description == other.description


def pong(relay_pk_b64: str) -> Status:
    return Status(200, "PONG", origin=relay_pk_b64)


METHOD_NOT_ALLOWED = Status(405, "HTTP method not allowed")


def pong_body(relay_pk_b64: str) -> bytes:
    """The PING answer body exactly as relay 0.6.1 writes it (status JSON plus newline)."""
    return (pong(relay_pk_b64).to_json() + "\n").encode()


def method_not_allowed_body(cause: str = "") -> bytes:
    """The 405 body of relay 0.6.1: the encoder's newline plus http.Error's newline."""
    status = Status(METHOD_NOT_ALLOWED.code, METHOD_NOT_ALLOWED.description, cause=cause)
    return (status.to_json() + "\n\n").encode()
