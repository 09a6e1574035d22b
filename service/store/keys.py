"""The registry of keys that have sealed stored data (`encryption_keys`), each with a canary
value sealed under it.

`check_keys` runs at every start, before anything is read or written: a key that has sealed data
must be among ENCRYPTION_KEYS and must open its canary, else the start is refused with one line.
The current key is registered before any row is sealed under it; `rotate-keys` removes a key
once no row is sealed under it any more.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from service.crypto.sealing import CannotOpen, Keyring
from service.store.dialect import insert_for
from service.store.tables import ENCRYPTION_KEYS, SEALED_TABLES

CANARY = b"llmtune-receiver encryption canary"


class KeyCheckFailed(Exception):
    """The configured keys cannot open what is stored; the message is the line to show."""


def _canary_context(key_id: str) -> bytes:
    return f"encryption_keys.canary:{key_id}".encode()


async def registered(session: AsyncSession) -> list[str]:
    """The ids of keys that have sealed stored data, in order."""
    rows = await session.scalars(sa.select(ENCRYPTION_KEYS.c.key_id).order_by("key_id"))
    return list(rows)


async def check_keys(session: AsyncSession, keyring: Keyring | None, *, now: datetime) -> None:
    """Refuse (`KeyCheckFailed`) keys that cannot open the stored data; register the current key."""
    rows = (
        await session.execute(sa.select(ENCRYPTION_KEYS.c.key_id, ENCRYPTION_KEYS.c.canary))
    ).all()
    if keyring is None:
        if rows:
            ids = ", ".join(sorted(key_id for key_id, _ in rows))
            raise KeyCheckFailed(
                f"ENCRYPTION_KEYS is not set, but stored data is sealed under key {ids}: "
                "set ENCRYPTION_KEYS (or run `rotate-keys --to-clear` with it set)"
            )
        return
    for key_id, canary in rows:
        if not keyring.has(key_id):
            raise KeyCheckFailed(
                f"ENCRYPTION_KEYS: stored data is sealed under key {key_id}, which is not among "
                f"the keys given ({', '.join(keyring.ids)}); keep it in the list, after the new "
                "first key, until `rotate-keys` has finished"
            )
        try:
            opened = keyring.open(canary, _canary_context(key_id))
        except CannotOpen:
            opened = None
        if opened != CANARY:
            raise KeyCheckFailed(f"ENCRYPTION_KEYS: key {key_id} does not open its canary")
    current = keyring.current.id
    if all(key_id != current for key_id, _ in rows):
        await session.execute(
            insert_for(session, ENCRYPTION_KEYS)
            .values(
                key_id=current,
                canary=keyring.seal(CANARY, _canary_context(current)),
                created_at=now,
            )
            .on_conflict_do_nothing(index_elements=["key_id"])
        )


async def sealed_elsewhere(session: AsyncSession, keep: str | None) -> int:
    """Rows still sealed under a key other than `keep` (None: rows sealed at all)."""
    total = 0
    for table in SEALED_TABLES:
        column = table.c.sealed_with
        where = (
            column.is_not(None) if keep is None else sa.and_(column.is_not(None), column != keep)
        )
        stmt = sa.select(sa.func.count()).select_from(table).where(where)
        total += (await session.scalar(stmt)) or 0
    return total


async def forget_keys_except(session: AsyncSession, keep: str | None) -> list[str]:
    """Unregister every key but `keep` (all with None), once nothing is sealed under them; the
    ids removed. Refuses (`KeyCheckFailed`) while a row is still sealed under one."""
    left = await sealed_elsewhere(session, keep)
    if left:
        raise KeyCheckFailed(f"{left} row(s) are still sealed under an older key")
    removed = [key_id for key_id in await registered(session) if key_id != keep]
    if removed:
        await session.execute(
            sa.delete(ENCRYPTION_KEYS).where(ENCRYPTION_KEYS.c.key_id.in_(removed))
        )
    return removed
