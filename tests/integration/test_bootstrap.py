"""The composition root on SQLite and PostgreSQL: what each role starts, and that one exit stack
closes what was opened (engines, tracing) however the build ends."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy.ext.asyncio import AsyncEngine

from service.bootstrap import Overrides, Role, built_services
from service.handlers.registry import RouteError
from service.ids import new_id
from service.routing import Subscription
from service.store.db import open_database
from service.store.rejections import NewRejection
from service.tracing import OtelTracing, tracing_to
from tests.helpers import make_settings

T0 = datetime(2025, 11, 8, 14, 0, tzinfo=UTC)
LOG_ROUTE = (Subscription("log", "log", ("*",)),)


def refusal() -> NewRejection:
    return NewRejection(
        id=new_id("rej"),
        received_at=T0,
        reason="signature_mismatch",
        status=401,
        path="/webhooks/llmtune",
        workspace=None,
        client_address="127.0.0.1",
        body_bytes=2,
        body_sha256="0" * 16,
        header_names=["content-type"],
    )


def exported_after(tracing: OtelTracing, exporter: InMemorySpanExporter) -> bool:
    """Whether a span ended now still reaches the exporter (it does not once shut down)."""
    exporter.clear()
    with tracing.span("probe", {}):
        pass
    return bool(exporter.get_finished_spans())


def tracing_into(exporter: InMemorySpanExporter) -> OtelTracing:
    return tracing_to(exporter, service_name="test", batch=False)


class TestRoles:
    @pytest.mark.parametrize(
        ("role", "dropped"),
        [pytest.param("web", 0, id="web-records"), pytest.param("worker", 1, id="worker-not")],
    )
    async def test_only_the_web_role_runs_the_rejection_log(
        self, engine: AsyncEngine, db_url: str, role: Role, dropped: int
    ) -> None:
        """The web process records refused webhooks; the worker process serves none, so it
        starts no rejection-log writer (a record there is dropped)."""
        overrides = Overrides(engine=engine, routes=LOG_ROUTE)
        async with built_services(make_settings(db_url), overrides, role=role) as svc:
            svc.rejections.record(refusal())
            await svc.rejections.drained()
            assert svc.rejections.dropped == dropped


class TestClosing:
    async def test_tracing_made_for_the_run_ends_with_it(
        self, engine: AsyncEngine, db_url: str
    ) -> None:
        """Tracing handed in for this run is shut down when the services close."""
        exporter = InMemorySpanExporter()
        tracing = tracing_into(exporter)
        overrides = Overrides(engine=engine, routes=LOG_ROUTE)
        async with built_services(make_settings(db_url), overrides, tracing=tracing):
            assert exported_after(tracing, exporter)
        assert not exported_after(tracing, exporter)

    async def test_tracing_of_the_overrides_stays_its_owners(
        self, engine: AsyncEngine, db_url: str
    ) -> None:
        """Tracing passed as an override is not shut down: whoever made it ends it."""
        exporter = InMemorySpanExporter()
        tracing = tracing_into(exporter)
        overrides = Overrides(engine=engine, routes=LOG_ROUTE, tracing=tracing)
        async with built_services(make_settings(db_url), overrides):
            pass
        assert exported_after(tracing, exporter)
        tracing.shutdown()

    async def test_a_failed_build_still_closes_what_it_opened(
        self, engine: AsyncEngine, db_url: str
    ) -> None:
        """A route that cannot be served stops the build after the store, clients and writer
        are up; they are closed on the way out (tracing too) and the test's engine still works."""
        exporter = InMemorySpanExporter()
        tracing = tracing_into(exporter)
        broken = (Subscription("bad", "no-such-handler", ("*",)),)
        overrides = Overrides(engine=engine, routes=broken)
        with pytest.raises(RouteError, match="no-such-handler"):
            async with built_services(make_settings(db_url), overrides, tracing=tracing):
                pytest.fail("the build should have failed")
        assert not exported_after(tracing, exporter)
        async with engine.connect() as connection:
            assert await connection.scalar(sa.text("SELECT 1")) == 1


class TestDatabaseClose:
    async def test_a_given_engine_is_left_open(self, engine: AsyncEngine, db_url: str) -> None:
        """`aclose` closes the engines `open_database` made, never the one handed in."""
        db = open_database(db_url, engine=engine)
        assert engine not in db.owned
        await db.aclose()
        async with engine.connect() as connection:
            assert await connection.scalar(sa.text("SELECT 1")) == 1

    async def test_made_engines_are_closed(self, db_url: str) -> None:
        """An engine made here has its pool replaced (its connections closed) by `aclose`."""
        db = open_database(db_url)
        assert db.engine in db.owned
        assert db.read_engine in db.owned
        await db.read(lambda session: session.execute(sa.text("SELECT 1")))
        pools = [engine.pool for engine in db.owned]
        await db.aclose()
        assert all(engine.pool is not pool for engine, pool in zip(db.owned, pools, strict=True))
