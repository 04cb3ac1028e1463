"""psycopg 3.1 shim: Connection.notifies() with psycopg 3.2's signature.

Import before opening connections.  notifies(*, timeout=None, stop_after=None):
timeout=0 runs one non-blocking select() and consume_input() and yields what
libpq holds.  PGQUE_PY_BACKLOG=1 (default) emulates psycopg >= 3.2.4: a
notification parsed while another query runs goes to a per-connection backlog
that the next notifies() yields first.  PGQUE_PY_BACKLOG=0 emulates
3.2.0-3.2.3, where only add_notify_handler callbacks see it.
NOTIFY_LOG gets (time.time(), payload, how) for every notification, how =
"during_query", "backlog_yield" or "generator".
"""

import os
import select
import time
from collections import deque

import psycopg
from psycopg import connection as _pconn
from psycopg.connection import Notify
from psycopg.generators import notifies as _notifies_gen

BACKLOG = os.environ.get("PGQUE_PY_BACKLOG", "1") == "1"
NOTIFY_LOG = []
_WAIT_SLICE = 5.0  # psycopg 3.2's longest single wait inside notifies()


def _decode(pgn):
    return Notify(pgn.relname.decode(), pgn.extra.decode(), pgn.be_pid)


def _backlog(conn):
    return conn.__dict__.setdefault("_compat_backlog", deque())


def _notify_handler(wself, pgn):
    conn = wself()
    if conn is None:
        return
    n = _decode(pgn)
    if not getattr(conn, "_compat_in_notifies", False):
        NOTIFY_LOG.append((time.time(), n.payload, "during_query"))
        if BACKLOG:
            _backlog(conn).append(n)
    for cb in conn._notify_handlers:
        cb(n)


def _read_once(conn, timeout):
    """Wait up to timeout for the socket, then consume what libpq has."""
    gen = _notifies_gen(conn.pgconn)
    try:
        state = next(gen)
        select.select([conn.pgconn.socket], [], [], timeout)
        gen.send(state)
    except StopIteration as ex:
        return ex.value
    raise RuntimeError("psycopg notifies generator did not stop")


def _pending(conn, backlog, interval):
    """The backlog if it holds anything, else what one read returns."""
    if backlog:
        while backlog:
            yield backlog.popleft(), "backlog_yield"
    else:
        for pgn in _read_once(conn, interval):
            yield _decode(pgn), "generator"


def notifies(self, *, timeout=None, stop_after=None):
    deadline = None if timeout is None else time.monotonic() + timeout
    interval = _WAIT_SLICE if timeout is None else min(timeout, _WAIT_SLICE)
    received = 0
    with self.lock:
        backlog = _backlog(self)
        self._compat_in_notifies = True
        try:
            while True:
                for n, how in _pending(self, backlog, interval):
                    NOTIFY_LOG.append((time.time(), n.payload, how))
                    yield n
                    received += 1
                if stop_after is not None and received >= stop_after:
                    break
                if deadline is not None:
                    interval = min(_WAIT_SLICE, deadline - time.monotonic())
                    if interval < 0.0:
                        break
        finally:
            self._compat_in_notifies = False


_pconn.BaseConnection._notify_handler = staticmethod(_notify_handler)
psycopg.Connection.notifies = notifies
