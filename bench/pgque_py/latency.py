#!/usr/bin/python3
"""End-to-end latency of pgque-py's Consumer beside pgque_worker, by stage.

A producer process sends --n messages to a fresh queue (ticker_max_count = 1,
ticker_max_lag = 1 ms), one pgque.send per autocommit transaction at --rate/s,
each carrying clock_timestamp().  pgque-py's Consumer (--client orig) or
patched_consumer's loop (--client patched) runs in a thread here; receive()
and select() are wrapped for timestamps only.  Latency = client clock in the
handler - send time.  The server then gives each event's first tick and the
commit times of send and tick (track_commit_timestamp = on) for the stages.
Writes OUT/LABEL.json and prints one summary line (figures: README.md);
--table FILE... prints a markdown table of saved runs.
Environment: PGQUE_PY_CLIENT (required), PGQUE_PY_DSN, PGQUE_PY_BACKLOG,
PGQUE_PY_PATCH.
"""

import argparse
import json
import multiprocessing
import os
import sys
import threading
import time
from pathlib import Path

import psycopg_compat  # before any connection: replaces the notify handler
import psycopg
from psycopg import sql

DSN = os.environ.get("PGQUE_PY_DSN",
                     "host=/tmp/pgque_worker-bench port=5477 user=postgres dbname=bench")
QUEUE, CONSUMER = "pgque_py_bench", "c1"
DRAIN_SECONDS = 35  # longer than the Consumer's poll_interval (30 s)
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "results" / "pgque_py"
STAGES = [("send>commit", "send", "commit"), ("commit>tick", "commit", "tick_start"),
          ("tick", "tick_start", "tick_commit"), ("tick>notify", "tick_commit", "notify"),
          ("tick>receive", "tick_commit", "rstart"), ("receive>handler", "rstart", "recv")]
STATUS_SQL = ("select tick_calls, ticks, wakeups from pgque_worker.status() "
              "where datname = current_database() and kind = 'ticker'")
SEND_SQL = ("select pgque.send(%s, jsonb_build_object('i', %s::int, "
            "'t', extract(epoch from clock_timestamp())))")


def import_client():
    client = os.environ.get("PGQUE_PY_CLIENT", "")
    if not (Path(client) / "pgque" / "consumer.py").is_file():
        sys.exit(f"PGQUE_PY_CLIENT={client!r}: set it to the clients/python directory of a "
                 "PgQue checkout (git clone https://github.com/NikolayS/PgQue)")
    sys.path.insert(0, client)
    from pgque import client as clmod, consumer as cmod
    return cmod, clmod


def setup_queue(conn):
    if conn.execute("select 1 from pgque.queue where queue_name = %s", (QUEUE,)).fetchone():
        conn.execute("select pgque.drop_queue(%s, true)", (QUEUE,))
    conn.execute("select pgque.create_queue(%s)", (QUEUE,))
    conn.execute("select pgque.set_queue_config(%s, 'ticker_max_count', '1')", (QUEUE,))
    conn.execute("select pgque.set_queue_config(%s, 'ticker_max_lag', '1 ms')", (QUEUE,))
    conn.execute("select pgque.subscribe(%s, %s)", (QUEUE, CONSUMER))
    return conn.execute("select queue_id from pgque.queue where queue_name = %s",
                        (QUEUE,)).fetchone()[0]


def produce(n, rate):
    """Send n messages at rate/s (own process); rows (i, ev_id, start, end)."""
    rows = []
    with psycopg.connect(DSN, autocommit=True) as conn:
        t0 = time.time()
        for i in range(n):
            delay = t0 + i / rate - time.time()
            if delay > 0:
                time.sleep(delay)
            start = time.time()
            ev_id = conn.execute(SEND_SQL, (QUEUE, i)).fetchone()[0]
            rows.append((i, ev_id, start, time.time()))
    return rows


def instrument(cmod, clmod):
    """Log receive calls (start, end, n, batch_id) and select() waits (start, end)."""
    recv_log, wait_log = [], []
    receive, select = clmod.PgqueClient.receive, cmod.select.select

    def timed_receive(self, *args, **kwargs):
        start = time.time()
        msgs = receive(self, *args, **kwargs)
        recv_log.append((start, time.time(), len(msgs), msgs[0].batch_id if msgs else None))
        return msgs

    class TimedSelect:
        @staticmethod
        def select(*args):
            start = time.time()
            res = select(*args)
            wait_log.append((start, time.time()))
            return res

    clmod.PgqueClient.receive = timed_receive
    cmod.select = TimedSelect
    return recv_log, wait_log


def make_consumer(cmod, client, n, recv_log):
    """The Consumer, its log of (time, msg_id, batch_id, i, t) and a done event."""
    if client == "patched":
        from patched_consumer import PatchedConsumer
        consumer = PatchedConsumer(DSN, queue=QUEUE, name=CONSUMER, poll_interval=30,
                                   on_receive=lambda *row: recv_log.append(row))
    else:
        consumer = cmod.Consumer(DSN, queue=QUEUE, name=CONSUMER, poll_interval=30)
    got, done = [], threading.Event()

    @consumer.on("*")
    def handle(msg):
        p = json.loads(msg.payload) if isinstance(msg.payload, str) else msg.payload
        got.append((time.time(), msg.msg_id, msg.batch_id, p["i"], p["t"]))
        if len(got) >= n:
            done.set()
    return consumer, got, done


def server_times(conn, qid, commit_ts):
    """Events (ev_id, commit, first tick seeing it), ticks (id, start, commit, event_seq)."""
    commit = "extract(epoch from pg_xact_commit_timestamp({}))::float8" if commit_ts else "null"
    xid = "mod(e.ev_txid::text::bigint, 4294967296)::text::xid"
    events = conn.execute(sql.SQL(
        "select e.ev_id, " + commit.format(xid) + ", "
        "(select min(t.tick_id) from pgque.tick t where t.tick_queue = %s"
        " and pg_visible_in_snapshot(e.ev_txid::text::xid8, t.tick_snapshot))"
        " from pgque.{} e").format(sql.Identifier(f"event_{qid}")), (qid,)).fetchall()
    ticks = conn.execute(
        "select tick_id, extract(epoch from tick_time)::float8, " + commit.format("xmin") +
        ", tick_event_seq from pgque.tick where tick_queue = %s order by tick_id", (qid,)).fetchall()
    return events, ticks


def consume(consumer, done, n, rate):
    """Run the Consumer while the producer sends; load averages around it."""
    thread = threading.Thread(target=consumer.start, daemon=True)
    thread.start()
    time.sleep(1.0)  # LISTEN in place before the first send
    load_before = os.getloadavg()[0]
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        prod = pool.apply(produce, (n, rate))
    done.wait(DRAIN_SECONDS)
    consumer.stop()
    thread.join(timeout=2)
    return load_before, prod, os.getloadavg()[0]


def run(args):
    cmod, clmod = import_client()
    with psycopg.connect(DSN, autocommit=True) as conn:
        qid = setup_queue(conn)
        commit_ts = conn.execute("show track_commit_timestamp").fetchone()[0] == "on"
        settings = dict(conn.execute("select name, setting from pg_settings "
                                     "where name like 'pgque_worker.%'").fetchall())
        status_before = conn.execute(STATUS_SQL).fetchone()
    if status_before is None:
        sys.exit("pgque_worker.status() shows no ticker for this database")
    recv_log, wait_log = instrument(cmod, clmod)
    consumer, got, done = make_consumer(cmod, args.client, args.n, recv_log)
    load_before, prod, load_after = consume(consumer, done, args.n, args.rate)
    with psycopg.connect(DSN, autocommit=True) as conn:
        events, ticks = server_times(conn, qid, commit_ts)
        status_after = conn.execute(STATUS_SQL).fetchone()
    client = consumer.mode if args.client == "patched" else "orig"
    return dict(label=args.label, n=args.n, rate=args.rate, client=client,
                backlog=psycopg_compat.BACKLOG, commit_ts=commit_ts, settings=settings,
                loadavg_before=load_before, loadavg_after=load_after,
                status_before=status_before, status_after=status_after,
                got=got, prod=prod, events=events, ticks=ticks,
                notify_log=psycopg_compat.NOTIFY_LOG, recv_log=recv_log, wait_log=wait_log)


def pct(xs, p):
    """p-th percentile, linear between the closest ranks."""
    xs = sorted(xs)
    k = (len(xs) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo) if xs else float("nan")


def message_rows(res):
    """Per received message: its event, tick and the client and server times."""
    events = {e[0]: e for e in res["events"]}
    ticks = {t[0]: t for t in res["ticks"]}
    notified, receives = {}, {}
    for t, payload, _how in res["notify_log"]:
        if payload.isdigit():
            notified.setdefault(int(payload), t)
    for start, _end, _n, batch in res["recv_log"]:
        receives.setdefault(batch, start)
    rows = []
    for recv, ev_id, batch, _i, sent in res["got"]:
        _, commit, tick = events.get(ev_id, (None, None, None))
        _, tick_start, tick_commit, _ = ticks.get(tick, (None, None, None, None))
        rows.append(dict(ev=ev_id, tick=tick, send=sent, commit=commit, tick_start=tick_start,
                         tick_commit=tick_commit, notify=notified.get(tick),
                         rstart=receives.get(batch), recv=recv))
    return rows


def stage(rows, a, b):
    return [(r[b] - r[a]) * 1000 for r in rows if r[a] is not None and r[b] is not None]


def straddled(res, rows):
    seq = {t[0]: t[3] for t in res["ticks"]}
    ids = sorted(seq)
    prev = dict(zip(ids[1:], ids))
    return sum(1 for r in rows if r["tick"] in prev and seq[prev[r["tick"]]] >= r["ev"])


def busy_pct(res):
    t0, t1 = min(p[2] for p in res["prod"]), max(g[0] for g in res["got"])
    idle = sum(min(e, t1) - max(s, t0) for s, e in res["wait_log"] if e > t0 and s < t1)
    return 100 - 100 * idle / (t1 - t0)


def summarize(res):
    rows = message_rows(res)
    lat = stage(rows, "send", "recv")
    before, after = res["status_before"], res["status_after"]
    s = dict(label=res["label"], client=res["client"] + ("" if res["backlog"] else " (no backlog)"),
             woc=res["settings"].get("pgque_worker.wake_on_commit"), got=len(rows), n=res["n"],
             e2e=[pct(lat, 50), pct(lat, 95), pct(lat, 99), max(lat)], busy=busy_pct(res),
             straddled=straddled(res, rows), load=(res["loadavg_before"], res["loadavg_after"]),
             ticks=after[1] - before[1], wakeups=after[2] - before[2], stages=None)
    if res["commit_ts"]:
        s["stages"] = {name: stage(rows, a, b) for name, a, b in STAGES}
        s["ticker"] = stage(rows, "commit", "tick_commit")
    return s


def summary_line(s):
    e2e = "p50 %.1f p95 %.1f p99 %.1f max %.1f ms" % tuple(s["e2e"])
    if s["stages"]:
        stages = "stages p50/p99 " + " ".join(
            f"{name} {pct(xs, 50):.1f}/{pct(xs, 99):.1f}" for name, xs in s["stages"].items())
    else:
        stages = "stages need track_commit_timestamp = on"
    return (f"{s['label']} client={s['client']} wake_on_commit={s['woc']} received {s['got']}/{s['n']}"
            f" | {e2e} | {stages} | busy {s['busy']:.0f}% | straddled {s['straddled']}"
            f" | ticks +{s['ticks']} wakeups +{s['wakeups']} | load {s['load'][0]:.2f} -> {s['load'][1]:.2f}")


def print_table(paths):
    print("| run | client | wake_on_commit | p50 | p95 | p99 | max | ticker p99 | client p99 "
          "| busy | straddled | load |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for path in paths:
        with open(path) as f:
            s = summarize(json.load(f))
        tail = (f"{pct(s['ticker'], 99):.1f} | {pct(s['stages']['tick>receive'], 99):.1f}"
                if s["stages"] else "- | -")
        print(f"| {s['label']} | {s['client']} | {s['woc']} | "
              + " | ".join(f"{x:.1f}" for x in s["e2e"])
              + f" | {tail} | {s['busy']:.0f}% | {s['straddled']} | {s['load'][0]:.2f} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1000, help="messages (1000)")
    ap.add_argument("--rate", type=float, default=200, help="messages per second (200)")
    ap.add_argument("--label", help="run name (default: client and time)")
    ap.add_argument("--client", choices=["orig", "patched"], default="orig")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="directory for LABEL.json")
    ap.add_argument("--table", nargs="+", metavar="JSON", help="print a table of saved runs")
    args = ap.parse_args()
    if args.table:
        print_table(args.table)
        return
    args.label = args.label or f"{args.client}_{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        res = run(args)
    except psycopg.OperationalError as e:
        sys.exit(f"PGQUE_PY_DSN={DSN!r}: {e}")
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / f"{args.label}.json", "w") as f:
        json.dump(res, f)
    if not res["got"]:
        sys.exit(f"{args.label}: no message received")
    print(summary_line(summarize(res)))


if __name__ == "__main__":
    main()
