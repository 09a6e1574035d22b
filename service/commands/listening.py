"""How `serve` hands its socket to uvicorn: bound here first, so a port in use is one line and
exit 2 before the app starts; and a hook that prints the banner once the app is ready.

uvicorn binds only after the app's lifespan has started (migrated, worker running) and then
logs the error and exits 1; binding first keeps a busy port from looking like a crash.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable

import uvicorn
from uvicorn.supervisors import Multiprocess

from service.commands.basics import fail


class PortUnavailable(Exception):
    """The address cannot be bound (in use, not ours, not an address)."""


def bind(host: str, port: int) -> socket.socket:
    """A listening-ready TCP socket on `host`:`port`, inheritable by uvicorn's worker processes;
    `PortUnavailable` with one line when it cannot be bound."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    # As uvicorn does: a restart must not wait for the previous process's TIME_WAIT sockets.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        reason = "the port is already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise PortUnavailable(f"{host}:{port}: {reason}") from None
    sock.set_inheritable(True)
    return sock


def bind_or_exit(host: str, port: int) -> socket.socket:
    """`bind`, or exit 2 with one line (the port, and the options that choose another)."""
    try:
        return bind(host, port)
    except PortUnavailable as exc:
        fail(2, f"cannot listen on {exc} (choose another with --port or PORT)")


class _ReadyServer(uvicorn.Server):
    """uvicorn's server, calling `on_ready` once the app has started and the socket listens."""

    def __init__(self, config: uvicorn.Config, on_ready: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_ready = on_ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and not self.should_exit:
            self._on_ready()


def serve(config: uvicorn.Config, sock: socket.socket, on_ready: Callable[[], None]) -> bool:
    """Run uvicorn on `sock` until it stops; False when the app did not start. With several
    workers, `on_ready` is called once the supervisor starts them."""
    try:
        if config.workers > 1:
            on_ready()
            Multiprocess(config, sockets=[sock]).run()
            return True
        server = _ReadyServer(config, on_ready)
        server.run(sockets=[sock])
        return server.started
    except KeyboardInterrupt:
        return True
    finally:
        sock.close()
