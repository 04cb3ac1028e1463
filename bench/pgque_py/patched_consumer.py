"""pgque-py's Consumer with fewer round trips per message (an experiment).

Wake-up logic as in pgque-py; the poll runs without a transaction block (PgQ
keeps a batch open across transactions).  PGQUE_PY_PATCH:
  autocommit          receive and ack as autocommit statements: 3 round trips
                      per message (receive, ack, empty re-poll) against 7.
  autocommit,ackrecv  ack of a batch and receive of the next in one statement.
Handler failures are nacked as in pgque-py; a failed nack leaves the batch
unacked, so PgQ delivers it again.
"""

import os
import time

import psycopg
from psycopg import sql

from pgque.client import PgqueClient
from pgque.consumer import Consumer
from pgque.types import Message

MODE = os.environ.get("PGQUE_PY_PATCH", "autocommit")
MODES = ("autocommit", "autocommit,ackrecv")

ACK_RECEIVE_SQL = (
    "with a as materialized (select pgque.ack(%s) as ok) "
    "select a.ok, r.* from a left join lateral pgque.receive(%s, %s, %s) r on true"
)


class PatchedConsumer(Consumer):
    """on_receive(start, end, n_messages, batch_id) is called for each
    combined ack + receive statement (plain receives go through
    PgqueClient.receive)."""

    def __init__(self, *args, on_receive, **kwargs):
        if MODE not in MODES:
            raise ValueError(f"PGQUE_PY_PATCH must be one of {MODES}, got {MODE!r}")
        super().__init__(*args, **kwargs)
        self.mode = f"patched:{MODE}"
        self._on_receive = on_receive
        self._next = None  # batch returned by the last ack + receive

    def _run_session(self):
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(f"pgque_{self.queue}")))
            while self._running:
                repoll = self._poll_once(conn)
                if not self._running:
                    break
                if not repoll:
                    self._wait_for_notify_or_stop(conn)

    def _poll_once(self, conn):
        """Handle one batch; True if the next batch should be asked for at once."""
        client = PgqueClient(conn)
        msgs = self._next or client.receive(self.queue, self.name, self.max_messages)
        self._next = None
        if not msgs or not self._run_handlers(client, msgs):
            return False
        batch_id = msgs[0].batch_id
        if MODE == "autocommit":
            client.ack(batch_id)
            return True
        self._next = self._ack_and_receive(conn, batch_id)
        return bool(self._next)

    def _ack_and_receive(self, conn, batch_id):
        start = time.time()
        rows = conn.execute(ACK_RECEIVE_SQL, (batch_id, self.queue, self.name,
                                              self.max_messages)).fetchall()
        msgs = [Message(*row[1:]) for row in rows if row[1] is not None]
        self._on_receive(start, time.time(), len(msgs), msgs[0].batch_id if msgs else None)
        return msgs

    def _run_handlers(self, client, msgs):
        """Dispatch msgs; False if a nack failed (the batch must stay unacked)."""
        ok = True
        for msg in msgs:
            handler = self._handlers.get(msg.type, self._default_handler)
            if handler is None:
                if self._unknown_handler_policy == "nack":
                    ok &= self._nack(client, msg, reason=f"no handler for type={msg.type}")
                continue
            try:
                handler(msg)
            except Exception:
                ok &= self._nack(client, msg)
        return ok

    def _nack(self, client, msg, **kwargs):
        try:
            client.nack(msg.batch_id, msg, retry_after=self.retry_after, **kwargs)
        except Exception:
            return False
        return True
