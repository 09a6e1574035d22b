"""The running app's services, as the lifespan left them in `request.state`."""

from __future__ import annotations

from starlette.requests import Request

from service.services import Services


def services(request: Request) -> Services:
    """The running app's services."""
    found: Services = request.state.services
    return found
