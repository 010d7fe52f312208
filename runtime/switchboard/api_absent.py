"""uWSGI's request-serving functions: present in the `uwsgi` module, so code that
touches them fails with an error saying why instead of an AttributeError.

Switchboard runs uWSGI's signal framework, not its HTTP/WSGI server: there is no
request, socket, response or websocket in any of its processes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn


class NoRequestsError(RuntimeError):
    """Raised by a uWSGI request function: Switchboard serves no requests."""


REQUEST_FUNCTIONS = (
    "accepting", "add_var", "async_connect", "async_sleep", "chunked_read", "chunked_read_nb",
    "cl", "close", "connect", "connection_fd", "disconnect", "get_logvar", "green_schedule",
    "is_connected", "listen_queue", "log_this_request", "offload", "ready", "ready_fd",
    "recv", "request_id", "route", "send", "sendfile", "set_logvar", "start_response",
    "suspend", "total_requests", "wait_fd_read", "wait_fd_write", "websocket_handshake",
    "websocket_recv", "websocket_recv_nb", "websocket_send", "websocket_send_binary",
)


def _absent(name: str) -> Callable[..., NoReturn]:
    def absent(*args: Any, **kwargs: Any) -> NoReturn:
        raise NoRequestsError(f"uwsgi.{name}(): Switchboard serves no requests (it runs "
                              "uWSGI's signal framework, not its HTTP/WSGI server)")
    absent.__name__ = absent.__qualname__ = name
    absent.__doc__ = f"uWSGI's {name}(): not available, Switchboard serves no requests."
    return absent


def functions() -> dict[str, Callable[..., NoReturn]]:
    """Each request function, raising NoRequestsError."""
    return {name: _absent(name) for name in REQUEST_FUNCTIONS}
