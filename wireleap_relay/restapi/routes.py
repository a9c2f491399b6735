"""What the status API answers, by path (control.md §6.2): `/api/status` for GET only,
`/metrics` in the Prometheus text format, and Go's plain 404 for anything else."""

from collections.abc import Callable

from wireleap_relay.restapi.http import Handler, Response
from wireleap_relay.restapi.status import method_not_allowed_cause, status_body
from wireleap_relay.wire.status import method_not_allowed_body

STATUS_PATH = "/api/status"
METRICS_PATH = "/metrics"
STATUS_METHODS = ("GET",)
# Go's http.NotFound.
NOT_FOUND = Response(404, b"404 page not found\n", nosniff=True)


def handler(status: Callable[[], dict], metrics: Callable[[], tuple[bytes, str]]) -> Handler:
    """`status()` gives the status document, `metrics()` the exposition and its type."""

    def answer(method: str, path: str) -> Response:
        if path == STATUS_PATH:
            if method not in STATUS_METHODS:
                cause = method_not_allowed_cause(method, STATUS_METHODS)
                return Response(405, method_not_allowed_body(cause), nosniff=True)
            # No explicit type in Go: its sniffer says text/plain for JSON.
            return Response(200, status_body(status()))
        if path == METRICS_PATH:
            body, content_type = metrics()
            return Response(200, body, content_type)
        return NOT_FOUND

    return answer
