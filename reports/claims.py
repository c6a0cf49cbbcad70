"""Claim-before-send ledgers, shared by the morning summary (audit.summary_sends, reports/send.py) and the
reporters' notices (audit.notice_sends, reports/notices.py).

A message's ledger rows are inserted, committed, BEFORE it goes to the relay:

- `claimed`: a run inserted the rows and is about to send, or is sending. The insert is the claim: of
  two runs sending at once only the one whose insert went in sends; the other skips. A message with
  several rows (a notice covering two file versions) claims all of them in one transaction, or none.
- `sent`: the relay accepted it (recorded right after its 250 reply): `confirm`.
- withdrawn: the relay refused it outright, so nothing was delivered; the claim is deleted so that the
  task's retry sends it: `withdraw`.
- `unconfirmed`: a claim older than the ledger's stale setting that never became `sent` (a run died in
  between, and nobody knows whether the relay accepted it): `expire_stale`. Never re-sent automatically;
  deleting its row sends it again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import psycopg
from psycopg import sql

from warehouse import settings

CLAIMED, SENT, UNCONFIRMED = "claimed", "sent", "unconfirmed"


@dataclass(frozen=True)
class Ledger:
    table: str  # schema.table
    key_columns: tuple[str, ...]  # one row's identity (the table's unique key)
    stale_setting: str  # the env var of the minutes after which a claim is `unconfirmed`
    stale_default: str = "15"

    @property
    def _table(self) -> sql.Composable:
        return sql.Identifier(*self.table.split("."))

    def stale_minutes(self) -> float:
        return settings.number(self.stale_setting, float(self.stale_default))

    def expire_stale(self, conn: psycopg.Connection, returning: Sequence[str], where: str = "true",
                     args: Sequence = ()) -> list[tuple]:
        """Turn the claims older than the stale setting (and matching `where`) into `unconfirmed`;
        returns the `returning` columns of each."""
        query = sql.SQL("update {} set status = %s where ({}) and status = %s "
                        "and claimed_at <= now() - %s * interval '1 minute' returning {}").format(
            self._table, sql.SQL(where), sql.SQL(", ").join(map(sql.Identifier, returning)))
        return conn.execute(query, (UNCONFIRMED, *args, CLAIMED, self.stale_minutes())).fetchall()

    def claim(self, conn: psycopg.Connection, rows: Sequence[dict]) -> bool:
        """Insert every row as `claimed` in one transaction (committed when the connection's block ends);
        none, and False, when any of them is there already (another run's claim or send)."""
        inserted = 0
        for row in rows:
            columns = [*row, "status"]
            query = sql.SQL("insert into {} ({}) values ({}) on conflict do nothing").format(
                self._table, sql.SQL(", ").join(map(sql.Identifier, columns)),
                sql.SQL(", ").join(sql.Placeholder() * len(columns)))
            inserted += conn.execute(query, (*row.values(), CLAIMED)).rowcount
        if inserted < len(rows):
            conn.rollback()
            return False
        return True

    def confirm(self, conn: psycopg.Connection, keys: Sequence[dict]) -> None:
        """The relay accepted the message: its rows are `sent`."""
        for key in keys:
            conn.execute(sql.SQL("update {} set status = %s, sent_at = now() where {}").format(
                self._table, self._match(key)), (SENT, *[key[c] for c in self.key_columns]))

    def withdraw(self, conn: psycopg.Connection, keys: Sequence[dict]) -> None:
        """The relay refused the message outright: delete its claims (never a `sent` row)."""
        for key in keys:
            conn.execute(sql.SQL("delete from {} where {} and status = %s").format(self._table, self._match(key)),
                         (*[key[c] for c in self.key_columns], CLAIMED))

    def _match(self, key: dict) -> sql.Composable:
        return sql.SQL(" and ").join(sql.SQL("{} = %s").format(sql.Identifier(c)) for c in self.key_columns)
