"""What the lifespan builds and every route reads from `request.state.services`."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.requests import Request

from service.clock import Clock
from service.config import Settings
from service.metrics import Metrics
from service.store.ingest import IngestWriter
from service.webhooks.verify import SigningKey


@dataclass(frozen=True, slots=True)
class Services:
    """The app's dependencies, built once per app in its lifespan."""

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    writer: IngestWriter
    signing_keys: tuple[SigningKey, ...]
    admin_tokens: tuple[bytes, ...]
    metrics: Metrics
    clock: Clock
    schema_heads: frozenset[str]


def services(request: Request) -> Services:
    """The running app's services."""
    found: Services = request.state.services
    return found
