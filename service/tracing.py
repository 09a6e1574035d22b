"""Tracing: an event followed from receipt through its commit to each handler call.

Off unless `OTEL_EXPORTER_OTLP_ENDPOINT` is set: then OpenTelemetry's SDK exports over OTLP/HTTP,
and its instrumentations cover the ASGI app (the request), SQLAlchemy (every statement) and httpx
(LLMTune); the `http` and `slack` handlers' aiohttp requests get the same client spans from
`client_span`. The service's own spans come from a `Tracer`: `ingest.store` in the
request (the wait for the group commit), `ingest.commit` for each batch (linked to the requests
it answers), and `deliver` for each handler call. The request's trace context is kept on each
delivery row (`trace_parent`, W3C `traceparent`), so a worker's `deliver` span joins the trace
of the request that stored the event, even in another process.

When tracing is off, `NO_TRACING` stands in and nothing of OpenTelemetry is imported.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from sqlalchemy.ext.asyncio import AsyncEngine

Attributes = Mapping[str, str | int | float | bool | None]


class Tracer(Protocol):
    """The spans the service makes itself; `traceparent()` is the current context as text."""

    def span(
        self, name: str, attributes: Attributes, *, links: Sequence[str | None] = ()
    ) -> contextlib.AbstractContextManager[None]:
        """A span, child of the current one, linked to the `traceparent`s in `links`."""
        ...

    def continued(
        self, traceparent: str | None, name: str, attributes: Attributes
    ) -> contextlib.AbstractContextManager[None]:
        """A span whose parent is `traceparent` (another task's or process's span)."""
        ...

    def traceparent(self) -> str | None:
        """The current span's context as a W3C `traceparent`, or None."""
        ...

    def annotate(self, attributes: Attributes) -> None:
        """Add attributes known only later (the stored event's id) to the current span."""
        ...


class _NoTracing:
    """Tracing off: every span is a no-op and no context is kept."""

    def span(
        self, name: str, attributes: Attributes, *, links: Sequence[str | None] = ()
    ) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def continued(
        self, traceparent: str | None, name: str, attributes: Attributes
    ) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def traceparent(self) -> str | None:
        return None

    def annotate(self, attributes: Attributes) -> None:
        return None


NO_TRACING: Tracer = _NoTracing()


class OtelTracing:
    """`Tracer` on an OpenTelemetry `TracerProvider`; also instruments the app, engines and
    httpx clients it is handed."""

    def __init__(self, provider: TracerProvider) -> None:
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.provider = provider
        self._tracer = provider.get_tracer("llmtune-receiver")
        self._propagator = TraceContextTextMapPropagator()

    def span(
        self, name: str, attributes: Attributes, *, links: Sequence[str | None] = ()
    ) -> contextlib.AbstractContextManager[None]:
        from opentelemetry import trace

        linked = [
            trace.Link(context)
            for context in (self._span_context(parent) for parent in links)
            if context is not None
        ]
        return self._started(name, attributes, context=None, links=linked)

    def continued(
        self, traceparent: str | None, name: str, attributes: Attributes
    ) -> contextlib.AbstractContextManager[None]:
        context = (
            None if traceparent is None else self._propagator.extract({"traceparent": traceparent})
        )
        return self._started(name, attributes, context=context, links=[])

    def traceparent(self) -> str | None:
        carrier: dict[str, str] = {}
        self._propagator.inject(carrier)
        return carrier.get("traceparent")

    def annotate(self, attributes: Attributes) -> None:
        from opentelemetry import trace

        span = trace.get_current_span()
        for key, value in attributes.items():
            if value is not None:
                span.set_attribute(key, value)

    @contextlib.contextmanager
    def _started(
        self, name: str, attributes: Attributes, *, context: Any, links: list[Any]
    ) -> Iterator[None]:
        clean = {key: value for key, value in attributes.items() if value is not None}
        with self._tracer.start_as_current_span(
            name, context=context, attributes=clean, links=links
        ):
            yield

    def _span_context(self, traceparent: str | None) -> Any:
        from opentelemetry import trace

        if traceparent is None:
            return None
        context = self._propagator.extract({"traceparent": traceparent})
        span_context = trace.get_current_span(context).get_span_context()
        return span_context if span_context.is_valid else None

    @contextlib.contextmanager
    def client_span(
        self, name: str, attributes: Attributes, headers: MutableMapping[str, str]
    ) -> Iterator[Callable[[int], None]]:
        """A CLIENT span around one outbound request, its context put in `headers`
        (`traceparent`); call what it yields with the answer's status. Statuses from 400 and
        exceptions mark it an error, as OpenTelemetry's httpx instrumentation does."""
        from opentelemetry import propagate, trace

        clean = {key: value for key, value in attributes.items() if value is not None}
        with self._tracer.start_as_current_span(
            name, kind=trace.SpanKind.CLIENT, attributes=clean
        ) as span:
            propagate.inject(headers)

            def answered(status: int) -> None:
                span.set_attribute("http.response.status_code", status)
                if status >= 400:
                    span.set_attribute("error.type", str(status))
                    span.set_status(trace.StatusCode.ERROR)

            try:
                yield answered
            except BaseException as exc:
                span.set_attribute("error.type", type(exc).__qualname__)
                raise

    def instrument_app(
        self, app: Any, route_of: Callable[[MutableMapping[str, Any]], str | None]
    ) -> None:
        """Server spans for every request of `app` (a Starlette app; not imported here, which
        stays below the HTTP layer), named `<method> <route template>` by `route_of`."""
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
        from opentelemetry.util.http import get_excluded_urls

        def span_details(scope: MutableMapping[str, Any]) -> tuple[str, dict[str, Any]]:
            route = route_of(scope)
            method = str(scope.get("method", ""))
            name = " ".join(part for part in (method, route) if part)
            return name, ({"http.route": route} if route else {})

        # The ASGI middleware as opentelemetry-instrumentation-starlette installs it, without
        # that package: its releases lag the rest of the line (0.66b1 while the others are at
        # 0.66b2), and pip 23.2's resolver gives up on the mix (issue 27).
        app.add_middleware(
            OpenTelemetryMiddleware,
            # The same OTEL_PYTHON_STARLETTE_EXCLUDED_URLS as before.
            excluded_urls=get_excluded_urls("STARLETTE"),
            default_span_details=span_details,
            tracer_provider=self.provider,
        )

    def instrument_engine(self, engine: AsyncEngine) -> None:
        """A span per SQL statement on `engine`."""
        from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
        from opentelemetry.metrics import NoOpMeterProvider

        # The per-engine part of SQLAlchemyInstrumentor: its `instrument()` runs once per
        # process and also patches `create_engine` globally, and its declared range stops below
        # SQLAlchemy 2.1, whose engine events it listens to are unchanged (tests/api/
        # test_tracing.py checks the statements' spans).
        usage = NoOpMeterProvider().get_meter(__name__).create_up_down_counter("unused")
        EngineTracer(  # type: ignore[no-untyped-call]
            self.provider.get_tracer("opentelemetry.instrumentation.sqlalchemy"),
            engine.sync_engine,
            usage,
        )

    def instrument_client(self, client: Any) -> None:
        """A client span per request of an `httpx.AsyncClient`."""
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

        HTTPXClientInstrumentor.instrument_client(client, tracer_provider=self.provider)

    def shutdown(self) -> None:
        """Export what is buffered and stop."""
        self.provider.shutdown()


def otlp_tracing(service_name: str) -> OtelTracing:
    """Tracing exported over OTLP/HTTP to `OTEL_EXPORTER_OTLP_ENDPOINT` (read by the exporter
    with the other standard `OTEL_*` variables)."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return tracing_to(OTLPSpanExporter(), service_name=service_name, batch=True)


def tracing_to(exporter: SpanExporter, *, service_name: str, batch: bool) -> OtelTracing:
    """Tracing into `exporter` (batched in production; one span at a time in tests)."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    processor = BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
    provider.add_span_processor(processor)
    return OtelTracing(provider)
