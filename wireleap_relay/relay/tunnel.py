"""One stream, top to bottom (wire.md §2.3): method, payload, PING, sanity checks, contract,
sharetoken, durable store, dialing policy, dial, splice, and a clean or reported end.

Deliberate differences from Go relay 0.6.1, all invisible to a well-behaved Go client:
payload sanity checks and the protocol whitelist are enforced (§3, §7.2); malformed
payloads get a 400 status instead of a crashed stream (§7.6); failures reach the client as
a `wl-status` trailer (the 0.6.0 way) and clean ends as END_STREAM, never INTERNAL_ERROR.
"""

import logging
import socket
import time
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Protocol

import gevent
import gevent.event

from wireleap_relay import duration
from wireleap_relay.identity import Identity
from wireleap_relay.relay import dialer, streamlog
from wireleap_relay.relay.errors import Refused, SpliceFailed, SpliceTimeout, StreamFailure
from wireleap_relay.relay.h2conn import ServerStream, StreamClosed
from wireleap_relay.relay.sockio import write_all
from wireleap_relay.reports import Meter
from wireleap_relay.tokens.commit import GroupCommit
from wireleap_relay.tokens.store import DuplicateSharetoken
from wireleap_relay.wire import payload, sharetoken
from wireleap_relay.wire.status import ORIGIN_TARGET, Status, method_not_allowed_body, pong_body

log = logging.getLogger(__name__)

SUCCESS_HEADERS = [(":status", "200"), ("trailer", "wl-status"),
                   ("content-type", "application/octet-stream")]
TEXT = "text/plain; charset=utf-8"
TCP_READ = 64 * 1024


class ContractGate(Protocol):
    """Which service contracts this relay serves right now (the contract manager)."""

    @property
    def trusted(self) -> AbstractSet[bytes]: ...

    def check(self, contract_pk: bytes) -> gevent.event.Event:
        """Raise Refused unless streams for this contract are accepted now; else the event
        that is set when the contract's running streams must end (its usage cap)."""


@dataclass
class RelayContext:
    """What a tunnel needs from the relay; replaced whole on reload, never mutated."""

    identity: Identity
    contracts: ContractGate
    tokens: GroupCommit
    policy: dialer.DialPolicy
    bufsize: int
    maxtime: float  # seconds, 0 = unlimited
    meter: Meter = field(default_factory=Meter)
    clock: Callable[[], float] = time.time


def handle(stream: ServerStream, ctx: RelayContext) -> None:
    """The tunnel greenlet's body; never raises."""
    ctx.meter.active_streams += 1
    try:
        outcome = _serve(stream, ctx)
    except StreamClosed:
        stream.finish()
        outcome = "cancelled"
    except StreamFailure as failure:
        _fail(stream, ctx, failure)
        outcome = failure.outcome
    except Exception:
        streamlog.stream_failed(stream.conn, "internal error on stream %d", stream.id,
                                level=logging.ERROR, exc_info=True)
        _fail(stream, ctx, SpliceFailed("internal relay error"))
        outcome = "internal_error"
    finally:
        ctx.meter.active_streams -= 1
    ctx.meter.stream_ended(outcome)


def _serve(stream: ServerStream, ctx: RelayContext) -> str:
    """Serve the stream; its outcome when it ended well, a StreamFailure otherwise."""
    if stream.headers.get(":method") != "PUT":
        body = method_not_allowed_body()
        stream.respond([(":status", "405"), ("content-type", TEXT),
                        ("x-content-type-options", "nosniff"),
                        ("content-length", str(len(body)))])
        stream.send(body)
        stream.finish()
        return "refused"
    try:
        init = payload.parse(stream.headers.get("wl-payload"))
        if init.command == payload.PING:
            _pong(stream, ctx)
            return "ping"
        payload.check_connect(init)
    except payload.PayloadError as exc:
        raise Refused(str(exc), mentions_target=exc.mentions_remote) from None
    token = init.token
    cut = ctx.contracts.check(token.contract.public_key)
    try:
        sharetoken.verify(token, ctx.identity.public_key, ctx.contracts.trusted,
                          int(ctx.clock()))
    except sharetoken.SharetokenError as exc:
        raise Refused(str(exc)) from None
    _store(ctx.tokens, token)
    ctx.meter.sharetokens += 1
    remote = init.remote
    # The next relay's address as repr(): a client's text must not forge log lines.
    log.info("stream %d: %s %s via contract %s", stream.id, init.protocol,
             "(target)" if remote.is_target else repr(remote.hostport),
             token.contract_key_b64)
    sock = dialer.dial(remote, init.protocol, ctx.policy)
    try:
        _splice(stream, sock, ctx, ctx.meter.usage(token.contract_key_b64), cut,
                udp=init.protocol.startswith("udp"), origin_is_target=remote.is_target)
    finally:
        sock.close()
    return "capped" if cut.is_set() else "ok"


def _pong(stream: ServerStream, ctx: RelayContext) -> None:
    stream.respond([(":status", "200"), ("trailer", "wl-status"), ("content-type", TEXT)])
    stream.send(pong_body(ctx.identity.public_key_b64))
    stream.finish()


def _store(tokens: GroupCommit, token: sharetoken.Sharetoken) -> None:
    """Durable before the dial; the streams that arrive together share the flushes."""
    try:
        tokens.accept(token)
    except DuplicateSharetoken as exc:
        raise Refused(str(exc)) from None
    except OSError as exc:
        log.error("could not store sharetoken: %s", exc)
        raise Refused(f"could not store sharetoken: {exc.strerror or exc}") from None


def _splice(stream: ServerStream, sock: socket.socket, ctx: RelayContext, usage: list[int],
            cut: gevent.event.Event, udp: bool, origin_is_target: bool) -> None:
    """Pump both ways until the first EOF or error on either side, then close both: no
    half-close, as in the Go relay (wire.md §5.2). Bytes are counted into `usage`
    ([from client, from remote]) as they are read. `cut` being set (the contract reached
    its hard usage cap) ends the stream cleanly, as Go's cancelled context does."""
    up = gevent.spawn(_pump, _client_to_remote, stream, sock, ctx.bufsize, udp, usage)
    down = gevent.spawn(_pump, _remote_to_client, stream, sock, ctx.bufsize, udp, usage)
    # The peer resetting the stream ends the splice even while both pumps are blocked on
    # the remote (one writing to a remote that reads nothing, one reading from it).
    finished = gevent.wait([up, down, stream.gone, cut], count=1,
                           timeout=ctx.maxtime or None)
    stream.cancel()
    _close_quietly(sock)
    gevent.joinall([up, down])
    if not finished:
        limit = duration.format(int(ctx.maxtime * duration.SECOND))
        raise SpliceTimeout(f"connection reached maxtime ({limit})", origin_is_target)
    first = finished[0]
    error = first.value if isinstance(first, gevent.Greenlet) else None
    if error is None or isinstance(error, StreamClosed):
        _ensure_headers(stream)
        stream.finish()
    elif isinstance(error, TimeoutError):
        raise SpliceTimeout(_io_text(error), origin_is_target)
    else:
        raise SpliceFailed(_io_text(error), origin_is_target)


def _pump(direction: Callable[..., None], *args: object) -> Exception | None:
    """Run one direction; its ending (None for a clean EOF) is the greenlet's value, so
    the loser of the race can fail quietly after the sockets are closed under it."""
    try:
        direction(*args)
    except (OSError, StreamClosed) as exc:
        return exc
    return None


def _client_to_remote(stream: ServerStream, sock: socket.socket, bufsize: int,
                      udp: bool, usage: list[int]) -> None:
    while True:
        chunk = stream.read()
        if chunk is None:
            return
        data, flow_len = chunk
        usage[0] += len(data)
        try:
            if udp:
                # One DATA frame becomes one datagram, split at bufsize like Go's reads.
                for start in range(0, len(data), bufsize):
                    sock.send(data[start:start + bufsize])
            else:
                write_all(sock, data)
        finally:
            stream.consumed(flow_len)


def _remote_to_client(stream: ServerStream, sock: socket.socket, bufsize: int,
                      udp: bool, usage: list[int]) -> None:
    while True:
        # A TCP read takes whatever is waiting, up to TCP_READ: each read costs a round
        # through h2, TLS and a send, so 4 KiB reads spent most of a worker's time on
        # that overhead. But no more than the client's window lets through at once: a
        # stream whose client reads slowly holds at most bufsize bytes here, as in Go.
        # A UDP read is one datagram of up to bufsize, as in Go.
        size = bufsize if udp else max(bufsize, min(TCP_READ, stream.window()))
        data = sock.recv(size)
        if not data:
            if udp:
                continue  # an empty datagram, not an end: UDP has no EOF
            return
        usage[1] += len(data)
        # The response headers go out with the first remote bytes, as Go sends them, and
        # in the same write.
        stream.send(data, headers=None if stream.headers_sent else SUCCESS_HEADERS)


def _ensure_headers(stream: ServerStream) -> None:
    """The response headers, if no remote bytes carried them out."""
    if not stream.headers_sent and not stream.reset:
        stream.respond(SUCCESS_HEADERS)


def _fail(stream: ServerStream, ctx: RelayContext, failure: StreamFailure) -> None:
    origin = ORIGIN_TARGET if failure.origin_is_target else ctx.identity.public_key_b64
    status = Status(failure.code, failure.description, origin=origin)
    # Descriptions can quote the client's payload: never a target address in the log, and
    # repr() so a client cannot forge log lines.
    streamlog.stream_failed(stream.conn, "stream %d: %d %s", stream.id, status.code,
                            "(target error)" if failure.origin_is_target or
                            failure.mentions_target else repr(status.description))
    try:
        if not stream.headers_sent:
            stream.respond([(":status", "200"), ("trailer", "wl-status")])
        stream.finish(trailers=[("wl-status", status.to_json())])
    except StreamClosed:
        stream.finish()


def _close_quietly(sock: socket.socket) -> None:
    try:
        sock.close()
    except OSError:
        pass


def _io_text(error: Exception) -> str:
    text = getattr(error, "strerror", None) or str(error)
    return text.lower()
