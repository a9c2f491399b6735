"""The status API as the master runs it: where it listens, following reload (a changed
address rebinds) and hand-over (the new master binds once the old one lets go)."""

import errno
import logging
import time

import gevent

from wireleap_relay.restapi.endpoint import Endpoint
from wireleap_relay.restapi.http import Handler, HttpServer
from wireleap_relay.restapi.listen import Bound

log = logging.getLogger(__name__)

RETRY_PAUSE = 0.1


class RestApi:
    def __init__(self, handler: Handler):
        self._handler = handler
        self._bound: Bound | None = None
        self._server: HttpServer | None = None
        self._waiting: gevent.Greenlet | None = None

    @property
    def endpoint(self) -> Endpoint | None:
        return self._bound.endpoint if self._bound else None

    def listen(self, endpoint: Endpoint | None) -> None:
        """Serve on `endpoint` (None: nowhere). The new socket is bound before the old
        one is closed, so an OSError leaves the API where it was."""
        if self._waiting is not None and gevent.getcurrent() is not self._waiting:
            self._waiting.kill()  # a reload's address wins over a hand-over's retries
            self._waiting = None
        if endpoint == self.endpoint:
            return
        bound = Bound(endpoint) if endpoint else None
        self._stop_serving(remove_file=True)
        if bound:
            self._bound, self._server = bound, HttpServer(bound.sock, self._handler)
            self._server.start()
            log.info("status API listening on %s", endpoint)

    def listen_when_free(self, endpoint: Endpoint | None, timeout: float) -> None:
        """In a hand-over the old master holds the TCP port until it sees us up: try again
        until it is free, for up to `timeout` seconds, in the background."""
        self._waiting = gevent.spawn(self._keep_trying, endpoint, timeout)

    def _keep_trying(self, endpoint: Endpoint | None, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.listen(endpoint)
                return
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                    log.info("status API: could not listen on %s: %s", endpoint, exc)
                    return
            gevent.sleep(RETRY_PAUSE)

    def close(self, remove_file: bool = True) -> None:
        """Stop serving. A hand-over keeps the socket file: the new master's is there, or
        soon will be."""
        if self._waiting is not None:
            self._waiting.kill()
            self._waiting = None
        self._stop_serving(remove_file)

    def _stop_serving(self, remove_file: bool) -> None:
        if self._server:
            self._server.close()
        if self._bound and remove_file:
            self._bound.remove_file()
        self._bound = self._server = None
