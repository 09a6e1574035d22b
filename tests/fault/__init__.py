"""Fault injection against real processes and PostgreSQL: SIGKILL, SIGTERM and database cuts
during load, destinations that go down, and scale-out; each checks a client-side ledger
against the database."""
