#!/usr/bin/env bash
# Writes $BENCH_OUT/results.md and the plots from the res_* tables of the
# benchmark database (called by run.sh with BENCH_PSQL set).
set -euo pipefail
out=$BENCH_OUT
psql() { $BENCH_PSQL -X -q -At -v ON_ERROR_STOP=1 "$@"; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# labels and the stats everything else reads
psql <<'SQL' >/dev/null 2>&1
create or replace function public.bench_label(m text) returns text language sql as $$
  select case
    when m = 'floor' then 'floor: one client, send + pgque.ticker(queue) + receive/ack back to back'
    when m = 'woc' then 'pgque_worker, wake on commit'
    when m = 'wocx' then 'pgque_worker ticker, wake on commit, external 1 ms poller (no dispatcher)'
    when m like 'p%' then format('pgque_worker, period %s ms', substr(m, 2))
    when m like 'cron%' then format('pg_cron path, %s ms', substr(m, 5)) end $$;
create table if not exists lat_stats as
select mode, rate, count(*) n,
       percentile_disc(0.50) within group (order by ms) p50,
       percentile_disc(0.95) within group (order by ms) p95,
       percentile_disc(0.99) within group (order by ms) p99,
       max(ms) mx
  from lat_all group by mode, rate;
create table if not exists mode_order as
select m, ord from unnest(array['woc','p100','p10','p1','wocx','cron100','cron10','cron1']) with ordinality o(m, ord);
SQL

md=$out/results.md
{
echo "# pgque_worker benchmarks"
echo
echo "Made by \`${BENCH_COMMAND:-sudo PGQUE_SQL=/tmp/pgque.sql bench/run.sh}\` on $(date -u '+%Y-%m-%d %H:%M UTC')."
echo
echo "| | |"
echo "|---|---|"
echo "| machine | $(lscpu | awk -F: '/Model name/ {gsub(/^ +/, "", $2); print $2; exit}'), $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, Linux $(uname -r) |"
echo "| PostgreSQL | $(psql -c 'show server_version') (Debian), fsync on, shared_buffers 256MB, other settings default |"
pgver=$(grep -m1 -oiE "pgque[ ._-]*v?[0-9]+\.[0-9]+(\.[0-9]+)?" "$BENCH_PGQUE_SQL" || true)
echo "| PgQue | \`$(basename "$BENCH_PGQUE_SQL")\` ${pgver:+($pgver) }sha256 $(sha256sum "$BENCH_PGQUE_SQL" | cut -c1-12) |"
echo "| pgque_worker | installed build (repository HEAD at the run: $(git -C "$BENCH_HERE" log -1 --format='%h %cs' 2>/dev/null || echo '?')); wake_on_commit setting present: $([ "$BENCH_HAS_WOC" = 1 ] && echo yes || echo NO); min_tick_interval present: $([ "$BENCH_HAS_MTI" = 1 ] && echo yes || echo no); pgque_worker.so sha256 ${BENCH_SO_SHA:-?}$([ "${BENCH_SO_SHA:-}" = "${BENCH_SO_SHA_END:-}" ] || echo " (replaced during the run by ${BENCH_SO_SHA_END:-?}: the idle-CPU part ran on the newer one after a restart)") |"
echo "| durations | latency runs ${LOAD_SECONDS} s each, idle tick/WAL windows ${TICK_IDLE_SECONDS} s, idle CPU ${IDLE_SECONDS} s, dispatch ${DISPATCH_MESSAGES} messages (batches of ${DISPATCH_BATCH}), pgbench ${PGBENCH_ROUNDS} x ${PGBENCH_SECONDS} s per setting (scale ${PGBENCH_SCALE}) |"
echo
echo "## End-to-end latency, ticks and WAL"
echo
echo "Server clock at \`pgque.send()\` (the payload) to server clock when the"
echo "handler runs (pgque_worker modes: a registered message handler inserting"
echo "\`clock_timestamp()\`) or when \`pgque.receive()\` returns the event (pg_cron"
echo "path: a session running \`CALL pgque.ticker_loop()\` back to back with"
echo "\`pgque_worker.enabled = off\`, and an external libpq consumer polling"
echo "\`receive\` every 1 ms). Queue: \`ticker_max_count = 1\`, \`ticker_max_lag = 1 ms\`."
echo "Each send is its own transaction, at a fixed rate. *ticks/commit*: ticks"
echo "written on the queue per enqueuing commit. WAL: whole cluster, including the"
echo "sends and the handler's inserts. Idle: ${TICK_IDLE_SECONDS} s without traffic, right after"
echo "switching to the mode. *sender max late*: how far the fixed-rate sender fell behind"
echo "its schedule; *load avg*: 1-minute load average of the machine after the run."
echo
echo "| mode | events/s | sent | delivered | p50 ms | p95 ms | p99 ms | max ms | ticks/s | ticks/commit | WAL B/event | idle ticks/s | idle WAL B/s | sender max late ms | load avg |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
psql <<'SQL'
select format('| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |',
       public.bench_label(r.mode), r.rate, r.sent, r.delivered,
       round(s.p50::numeric, 1), round(s.p95::numeric, 1), round(s.p99::numeric, 1), round(s.mx::numeric, 1),
       round((r.ticks / r.seconds)::numeric, 1), round(r.ticks::numeric / nullif(r.sent, 0), 3),
       round(r.wal::numeric / nullif(r.delivered, 0)),
       round((i.ticks / i.seconds)::numeric, 2), round((i.wal / i.seconds)::numeric),
       round(r.max_late_ms::numeric, 1), r.load1)
  from res_lat r join lat_stats s using (mode, rate) left join res_idle i using (mode)
  join mode_order o on o.m = r.mode
 order by r.rate, o.ord;
SQL
echo
psql <<'SQL'
select format('Floor (%s deliveries, one client running the three transactions back to back, 10 ms apart, no scheduler): p50 %s ms, p95 %s ms, p99 %s ms.',
              n, round(p50::numeric, 2), round(p95::numeric, 2), round(p99::numeric, 2))
  from lat_stats where mode = 'floor';
SQL
echo
echo "![latency](latency.png)"
echo
echo "## Idle CPU"
echo
echo "CPU time from \`/proc/<pid>/schedstat\` over ${IDLE_SECONDS} s, no traffic. pgque_worker: every"
echo "process whose \`pg_stat_activity.backend_type\` starts with \`pgque_worker\` (launcher,"
echo "one ticker and one dispatcher per database), default settings. Each database"
echo "has 4 queues (\`ticker_max_count = 1\`, \`ticker_max_lag = 1 ms\`) and a handler on"
echo "one of them. pg_cron path: the backend of the session calling"
echo "\`CALL pgque.ticker_loop()\` back to back in one such database."
echo
echo "| what | PgQue databases | % of one core | CPU s | processes (CPU s) |"
echo "|---|---:|---:|---:|---|"
psql -c "select format('| %s | %s | %s | %s | %s |', what, dbs, round(pct::numeric, 2), round(cpu_seconds::numeric, 2), detail) from res_cpu order by ctid"
echo
echo "![idle CPU](idle_cpu.png)"
echo
echo "## Dispatch throughput"
echo
echo "The same ${DISPATCH_MESSAGES} messages (payload ~80 bytes, ticked before the clock starts)"
echo "consumed by each method in turn; the handler inserts each payload into a table."
echo "Stream A: ${DISPATCH_BATCH} per batch. Stream B: all in one batch (one transaction)."
echo "Time: from the start (the statement enabling the handler / the client's start) to the last insert, server"
echo "clock; steady: from the first insert to the last (without the dispatcher noticing"
echo "the enabled handler, or the client connecting)."
echo
echo "pgque_worker's handlers run twice: at the default \`pgque_worker.chunk_messages\` (1000:"
echo "here one batch of stream A per chunk transaction) and at ${BENCH_WIDE_CHUNK:-10000}, where"
echo "a chunk transaction goes on to the next batches once one is acked."
echo
echo "The external consumer (the first row), the PL/pgSQL loop and the handlers ran"
echo "in ${DISPATCH_ROUNDS:-1} rounds, each method once per round in the same order, each"
echo "round with its own consumers of the same events: messages/s and steady are"
echo "the medians of the rounds, and the last column lists each round's messages/s."
echo
echo "| method | stream | chunk_messages | messages | seconds | messages/s | steady messages/s | vs external | rounds (messages/s) |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---|"
psql -v wide="${BENCH_WIDE_CHUNK:-10000}" <<'SQL'
with r as (select method, round, messages, seconds, messages / nullif(seconds, 0) rate,
                  messages / nullif(steady_seconds, 0) steady from res_thr),
     t as (select method, rtrim(method, 'w') base, method ~ '^(msg|bat|nop|flo).*w$' wide, min(messages) messages,
                  percentile_cont(0.5) within group (order by seconds) seconds,
                  percentile_cont(0.5) within group (order by rate) rate,
                  percentile_cont(0.5) within group (order by steady) steady,
                  string_agg(round(rate::numeric)::text, ' / ' order by round) rounds
             from r group by method),
     ext as (select rate from t where method = 'ext')
select format('| %s | %s | %s | %s | %s | %s | %s | %sx | %s |',
       case base when 'ext' then 'external libpq consumer (receive / INSERT per message / ack)'
                 when 'plp' then 'PL/pgSQL loop (receive / handler in BEGIN ... EXCEPTION per message / ack)'
                 when 'msg' then 'pgque_worker message handler'
                 when 'bat' then 'pgque_worker batch handler'
                 when 'msg1' then 'pgque_worker message handler'
                 when 'bat1' then 'pgque_worker batch handler'
                 when 'nop' then 'pgque_worker batch handler that only notes its calls (the dispatcher''s own cost)'
                 when 'nop1' then 'pgque_worker batch handler that only notes its calls (the dispatcher''s own cost)'
                 when 'flo' then 'PgQue alone, no handler (next_batch, batch_event_sql''s query reading every column, ack; PL/pgSQL)'
                 when 'flo1' then 'PgQue alone, no handler (next_batch, batch_event_sql''s query reading every column, ack; PL/pgSQL)'
                 when 'ext_tcp' then 'external libpq consumer as above, over TCP (127.0.0.1)'
                 when 'ext_each' then 'external libpq consumer, each statement its own transaction (commit per message)'
                 when 'msga' then 'pgque_worker message handler, `dispatch_synchronous_commit = off`'
                 when 'bata' then 'pgque_worker batch handler, `dispatch_synchronous_commit = off`' end,
       case when base ~ '1$' then 'B' else 'A' end,
       case when base ~ '^(msg|bat|nop|flo)' then case when wide then :'wide' else '1000' end else '' end,
       messages, round(seconds::numeric, 3), round(t.rate::numeric), round(t.steady::numeric),
       round((t.rate / ext.rate)::numeric, 1), t.rounds)
  from t, ext
 order by array_position(array['ext','ext_tcp','ext_each','plp','msg','bat','nop','flo','msga','bata','msg1','bat1','nop1','flo1'], base), wide;
SQL
echo
echo "What the batch handler's lead is made of, in µs per message (medians of the rounds)."
echo "PgQue alone: its API consumed with nothing else (the *PgQue alone* row: next_batch,"
echo "\`batch_event_sql()\`'s query run to its last event in \`ev_id\` order, every column read"
echo "(\`count(e.*)\`), ack, a commit every chunk_messages events; stream B: one commit)."
echo "Dispatcher: the whole run of the batch handler"
echo "that only notes its calls, so everything but a handler. Handler: \`handler_seconds\` of"
echo "\`pgque_worker.handler_stats\` over the messages (for the message handler, its 1,000 calls"
echo "a batch). So a batch handler's lead over a message handler is about"
echo "(dispatcher + message handler) / (dispatcher + batch handler), and, were the dispatcher to"
echo "cost no more than PgQue itself, (PgQue + message handler) / (PgQue + batch handler): the"
echo "ceiling that any consumer of PgQue has."
echo
echo "| stream | chunk_messages | PgQue alone | dispatcher | message handler | batch handler | batch / message, measured | (dispatcher + message) / (dispatcher + batch) | ceiling: (PgQue + message) / (PgQue + batch) |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
psql -v wide="${BENCH_WIDE_CHUNK:-10000}" <<'SQL'
with t as (select method, percentile_cont(0.5) within group (order by 1e6 * seconds / nullif(messages, 0)) us
             from res_thr group by method),
     h as (select method, percentile_cont(0.5) within group (order by 1e6 * handler_seconds / nullif(messages, 0)) us
             from res_hsec group by method),
     x as (select stream, chunk, sfx,
                  (select us from t where method = 'flo' || sfx) p, (select us from t where method = 'nop' || sfx) f,
                  (select us from h where method = 'msg' || sfx) hm, (select us from h where method = 'bat' || sfx) hb,
                  (select us from t where method = 'msg' || sfx) / (select us from t where method = 'bat' || sfx) measured
             from (values ('A', '1000', '', 1), ('A', :'wide', 'w', 2), ('B', '1000', '1', 3), ('B', :'wide', '1w', 4))
                  v(stream, chunk, sfx, ord))
select format('| %s | %s | %s | %s | %s | %s | %sx | %sx | %sx |', stream, chunk,
              round(p::numeric, 2), round(f::numeric, 2), round(hm::numeric, 2), round(hb::numeric, 2),
              round(measured::numeric, 2), round(((f + hm) / (f + hb))::numeric, 2),
              round(((p + hm) / (p + hb))::numeric, 2))
  from x where p is not null and f is not null and hm is not null and hb is not null
 order by stream, chunk::int;
SQL
echo
echo "The dispatcher process over each run (\`/proc/<pid>/stat\` before enabling the handler and"
echo "at the last insert; it usually starts with the run): its CPU, user and system, handler"
echo "included, in µs a message, and its minor page faults a batch (stream B: the one batch), medians."
echo "*PgQue alone*: the CPU of its session over the call, read from its own \`/proc/self/stat\`."
echo "CPU does not count the time a process waits for the other core, so the dispatcher alone"
echo "against *PgQue alone* compares the work each does, whatever else the machine runs."
echo
echo "| handler | stream | chunk_messages | CPU µs a message | minor page faults a batch |"
echo "|---|---|---:|---:|---:|"
psql -v wide="${BENCH_WIDE_CHUNK:-10000}" <<'SQL'
with d as (select method, percentile_cont(0.5) within group (order by 1e6 * disp_cpu_s / nullif(messages, 0)) cpu,
                  percentile_cont(0.5) within group (order by disp_minflt::float8 / nullif(batches, 0)) pf
             from res_hsec where disp_cpu_s is not null group by method)
select format('| %s | %s | %s | %s | %s |',
       case when method = 'msga' then 'message, `dispatch_synchronous_commit = off`'
            when method = 'bata' then 'batch, `dispatch_synchronous_commit = off`'
            when method like 'msg%' then 'message' when method like 'bat%' then 'batch'
            when method like 'flo%' then '*PgQue alone* (no dispatcher)' else 'noting (the dispatcher alone)' end,
       case when rtrim(method, 'w') in ('msg1', 'bat1', 'nop1', 'flo1') then 'B' else 'A' end,
       case when method like '%w' then :'wide' else '1000' end, round(cpu::numeric, 2), coalesce(round(pf::numeric)::text, ''))
  from d
 order by rtrim(method, 'w') like '%1', array_position(array['msg','bat','nop','flo'], rtrim(rtrim(method, 'w'), '1')), method like '%w';
SQL
echo
psql -v wide="${BENCH_WIDE_CHUNK:-10000}" <<'SQL'
with d as (select method, percentile_cont(0.5) within group (order by disp_cpu_s / nullif(messages, 0)) cpu
             from res_hsec where disp_cpu_s is not null group by method)
select 'The dispatcher alone against *PgQue alone*, in CPU a message: ' ||
       string_agg(format('%s at %s %sx', stream, chunk, round((n.cpu / f.cpu)::numeric, 2)), ', ' order by ord) || '.'
  from (values ('A', '1000', '', 1), ('A', :'wide', 'w', 2), ('B', '1000', '1', 3), ('B', :'wide', '1w', 4)) v(stream, chunk, sfx, ord)
  join d n on n.method = 'nop' || v.sfx join d f on f.method = 'flo' || v.sfx
having count(*) > 0;
SQL
echo
echo "Where a batch's time goes (a second run of the handlers with"
echo "\`log_min_messages = debug1\`, where the dispatcher logs each chunk's steps, a line per"
echo "batch in it; ms per batch: the sum over the batch's chunks). next_batch: \`pgque.next_batch()\`"
echo "(on a later chunk, reading the subscription row to check that the batch is still open);"
echo "progress: reading the batch's recorded progress (only when the process does not know it);"
echo "cursor: opening the batch cursor (PgQue's \`batch_event_sql()\` and planning it); fetch:"
echo "reading the chunk's events and looking one ahead; ack: nacks and \`pgque.ack()\`; stats: the"
echo "chunk's stats and progress row; commit: the chunk's COMMIT (WAL flush included). Stats and"
echo "commit are counted once per chunk transaction."
echo
echo "| handler | stream | chunk_messages | batches | chunk transactions | next_batch | progress | cursor | fetch | handler | ack | stats | commit | total | all but the handler |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
psql -v wide="${BENCH_WIDE_CHUNK:-10000}" <<'SQL'
with s as (select replace(consumer, '_s', '') c, count(*) filter (where part = parts) chunks, sum(batch_end) batches,
                  sum(next_batch_ms) nb, sum(progress_ms) pr, sum(cursor_ms) cu, sum(fetch_ms) fe, sum(handler_ms) ha,
                  sum(ack_ms) ac, sum(stats_ms) st, sum(commit_ms) co
             from res_steps where events > 0 group by 1)
select format('| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |',
       case when c like 'msg%' then 'message' else 'batch' end,
       case when rtrim(c, 'w') in ('msg1', 'bat1') then 'B' else 'A' end,
       case when c like '%w' then :'wide' else '1000' end, batches, chunks,
       round((nb / batches)::numeric, 2), round((pr / batches)::numeric, 2), round((cu / batches)::numeric, 2),
       round((fe / batches)::numeric, 2), round((ha / batches)::numeric, 2), round((ac / batches)::numeric, 2),
       round((st / batches)::numeric, 2), round((co / batches)::numeric, 2),
       round(((nb + pr + cu + fe + ha + ac + st + co) / batches)::numeric, 2),
       round(((nb + pr + cu + fe + ac + st + co) / batches)::numeric, 2))
  from s where batches > 0
 order by array_position(array['msg','bat','msg1','bat1'], rtrim(c, 'w')), c like '%w';
SQL
echo
echo "## Cost of the commit hook"
echo
echo "pgbench built-in TPC-B-like, \`-c 2 -j 2 -M prepared\`, \`synchronous_commit = off\` (so"
echo "it is CPU-bound and a per-commit cost shows), in the PgQue database while"
echo "pgque_worker serves it; each round runs the two settings back to back, rounds alternate"
echo "their order, and the median row's ratio is the median of the rounds' ratios (the"
echo "machine's drift between rounds cancels within a round)."
echo
echo "| round | TPS wake_on_commit off | TPS on | on / off |"
echo "|---:|---:|---:|---:|"
psql <<'SQL'
select format('| %s | %s | %s | %s |', round, round(off.tps::numeric), round(on_.tps::numeric),
              round((on_.tps / nullif(off.tps, 0))::numeric, 4))
  from res_pgbench off join res_pgbench on_ using (round)
 where off.woc = 'off' and on_.woc = 'on' order by round;
select format('| median | %s | %s | %s |', round(a::numeric), round(b::numeric), round(r::numeric, 4))
  from (select percentile_cont(0.5) within group (order by tps) filter (where woc = 'off') a,
               percentile_cont(0.5) within group (order by tps) filter (where woc = 'on') b from res_pgbench) x,
       (select percentile_cont(0.5) within group (order by on_.tps / nullif(off.tps, 0)) r
          from res_pgbench off join res_pgbench on_ using (round)
         where off.woc = 'off' and on_.woc = 'on') y;
SQL
echo
echo "The same TPC-B-like transactions counted in instructions (\`bench/hook_cost.sh\`: 400"
echo "transactions after 50 warm-up ones, run by a single-user backend under callgrind from the"
echo "same copy of a data directory, pgbench scale 1). Counts repeat to within a few thousand"
echo "instructions whatever else the machine does; TPS above moves by several percent."
echo
echo "| pgque_worker | instructions a transaction | against not loaded |"
echo "|---|---:|---:|"
psql <<'SQL'
select format('| %s | %s | %s |',
              case setting when 'none' then 'not loaded' when 'off' then 'loaded, wake_on_commit off'
                           else 'loaded, wake_on_commit on' end,
              ir_per_tx, case when setting = 'none' then '' else
                format('%s%%', round((100.0 * ir_per_tx / (select ir_per_tx from res_hook_ir where setting = 'none') - 100)::numeric, 2)) end)
  from res_hook_ir order by array_position(array['none', 'off', 'on'], setting);
SQL
echo
echo "## Targets"
echo
echo "| target | reached | met |"
echo "|---|---|---|"
psql -v has_woc="$BENCH_HAS_WOC" -v dbatch="$DISPATCH_BATCH" -v wide="${BENCH_WIDE_CHUNK:-10000}" <<'SQL'
with w as (select * from lat_stats where mode = 'woc'),
     wl as (select * from res_lat where mode = 'woc'),
     cpu5 as (select pct from res_cpu where what like 'pgque_worker%' and dbs = 5),
     r as (select method, round, messages / nullif(seconds, 0) rate from res_thr),
     t as (select method, percentile_cont(0.5) within group (order by rate) rate from r group by method),
     -- each round's ratio of two methods, listed after the ratio of the medians
     rr as (select a.method am, b.method bm,
                   string_agg(round((a.rate / nullif(b.rate, 0))::numeric, 2)::text || 'x', ' / ' order by a.round) list
              from r a join r b using (round) group by 1, 2),
     -- each round runs both settings back to back: the median of the rounds' ratios
     pg as (select percentile_cont(0.5) within group (order by on_.tps / nullif(off.tps, 0)) ratio
              from res_pgbench off join res_pgbench on_ using (round)
             where off.woc = 'off' and on_.woc = 'on'),
     ir as (select max(ir_per_tx) filter (where setting = 'none') a,
                   max(ir_per_tx) filter (where setting = 'on') b from res_hook_ir)
select format('| wake on commit p50 <= 2 ms at both rates | %s | %s |',
              coalesce((select string_agg(format('%s/s: %s ms', rate, round(p50::numeric, 3)), ', ' order by rate) from w), 'not measured'),
              case when not exists (select from w) then 'n/a' when (select bool_and(p50 <= 2) from w) then 'yes' else 'NO' end)
union all
select format('| wake on commit p50 <= the floor (%s ms) at both rates | %s | %s |',
              coalesce((select round(p50::numeric, 2)::text from lat_stats where mode = 'floor'), 'not measured'),
              coalesce((select string_agg(format('%s/s: %s ms', rate, round(p50::numeric, 3)), ', ' order by rate) from w), 'not measured'),
              case when not exists (select from w) or not exists (select from lat_stats where mode = 'floor') then 'n/a'
                   when (select bool_and(p50 <= (select p50 from lat_stats where mode = 'floor')) from w) then 'yes' else 'NO' end)
union all
select format('| wake on commit p99 <= 10 ms at both rates | %s | %s |',
              coalesce((select string_agg(format('%s/s: %s ms', rate, round(p99::numeric, 3)), ', ' order by rate) from w), 'not measured'),
              case when not exists (select from w) then 'n/a' when (select bool_and(p99 <= 10) from w) then 'yes' else 'NO' end)
union all
select format('| wake on commit: ticks <= enqueuing commits | %s | %s |',
              coalesce((select string_agg(format('%s/s: %s ticks / %s commits', rate, ticks, sent), ', ' order by rate) from wl), 'not measured'),
              case when not exists (select from wl) then 'n/a' when (select bool_and(ticks <= sent) from wl) then 'yes' else 'NO' end)
union all
select format('| idle, 5 PgQue databases: all pgque_worker processes < 1%% of a core | %s%% | %s |',
              (select round(pct::numeric, 2) from cpu5), case when (select pct from cpu5) < 1 then 'yes' else 'NO' end)
union all
select format('| message handler >= 50%% of the PL/pgSQL loop | %s%% (rounds: %s) | %s |',
              round(100 * (select rate from t where method = 'msg') / (select rate from t where method = 'plp'))::numeric,
              (select list from rr where am = 'msg' and bm = 'plp'),
              case when (select rate from t where method = 'msg') >= 0.5 * (select rate from t where method = 'plp') then 'yes' else 'NO' end)
union all
select format('| message handler >= 10x external consumer | %sx (rounds: %s) | %s |',
              round(((select rate from t where method = 'msg') / (select rate from t where method = 'ext'))::numeric, 1),
              (select list from rr where am = 'msg' and bm = 'ext'),
              case when (select rate from t where method = 'msg') >= 10 * (select rate from t where method = 'ext') then 'yes' else 'NO' end)
union all
select format('| batch handler >= 2x message handler, %s, chunk_messages %s | %sx (rounds: %s) | %s |', x.stream, x.chunk,
              round((b.rate / m.rate)::numeric, 2), (select list from rr where am = x.bb and bm = x.mm),
              case when b.rate >= 2 * m.rate then 'yes' else 'NO' end)
  from (values ('stream A (batches of ' || :'dbatch' || ')', '1000', 'msg', 'bat', 1),
               ('stream B (one batch)', '1000', 'msg1', 'bat1', 2),
               ('stream A (batches of ' || :'dbatch' || ')', :'wide', 'msgw', 'batw', 3),
               ('stream B (one batch)', :'wide', 'msg1w', 'bat1w', 4),
               ('stream A (batches of ' || :'dbatch' || '), dispatch_synchronous_commit off', '1000', 'msga', 'bata', 5)) x(stream, chunk, mm, bb, ord)
  join t m on m.method = x.mm join t b on b.method = x.bb
union all
select format('| batch handler >= 30x external consumer, stream A, chunk_messages %s | %sx (rounds: %s) | %s |', x.chunk,
              round(((select rate from t where method = x.bb) / (select rate from t where method = 'ext'))::numeric, 1),
              (select list from rr where am = x.bb and bm = 'ext'),
              case when (select rate from t where method = x.bb) >= 30 * (select rate from t where method = 'ext') then 'yes' else 'NO' end)
  from (values ('1000', 'bat'), (:'wide', 'batw'), ('1000, dispatch_synchronous_commit off', 'bata')) x(chunk, bb)
 where exists (select from t where method = x.bb)
union all
select format('| pgbench TPS hook on >= 99%% of off (median of the rounds'' on / off) | %s%% | %s |',
              round((100 * ratio)::numeric, 1),
              case when :'has_woc' = '0' then 'n/a (setting absent)'
                   when ratio >= 0.99 then 'yes' else 'NO' end)
  from pg
union all
select format('| commit hook: a transaction''s instructions with wake_on_commit on <= 101%% of not loaded | %s | %s |',
              coalesce(round((100.0 * b / nullif(a, 0))::numeric, 2) || '%', 'not measured'),
              case when a is null or b is null then 'n/a' when b <= 1.01 * a then 'yes' else 'NO' end)
  from ir;
SQL
} > "$md.tmp"
mv "$md.tmp" "$md"

# ---------------------------------------------------------------- plots
for r in $(psql -c "select distinct rate from lat_stats order by 1"); do
  psql -F $'\t' -c "select case when mode = 'woc' then 'wake on commit' when mode = 'wocx' then 'woc + ext. poller' when mode like 'p%' then 'worker ' || substr(mode, 2) || ' ms'
                  else 'pg_cron ' || substr(mode, 5) || ' ms' end, p50, p95, p99, mx
        from lat_stats s join mode_order o on o.m = s.mode where rate = $r order by o.ord" > "$tmp/lat_$r.tsv"
done
psql -F $'\t' -c "select case when what like 'pgque_worker%' then 'pgque_worker, ' || dbs || ' db' else replace(what, 'pg_cron path ticker session, ', 'ticker_loop ') end, pct from res_cpu order by ctid" > "$tmp/cpu.tsv"

rates=$(psql -c "select string_agg(distinct rate::text, ' ') from lat_stats")
n=$(wc -w <<<"$rates")
[ "$n" -gt 0 ] || n=1
{
  echo "set terminal pngcairo size 1300,$((480 * n)) font 'Sans,10'"
  echo "set output '$out/latency.png'"
  echo "set datafile separator '\t'"
  echo "set multiplot layout $n,1"
  echo "set style data histograms; set style histogram clustered gap 1; set style fill solid 0.85 border -1"
  echo "set logscale y; set yrange [0.1:*]; set grid ytics; set ylabel 'ms (log scale)'"
  echo "set key top left; set xtics noenhanced"
  for r in $rates; do
    echo "set title 'End-to-end latency at $r events/s (server clock at send to handler / receive)'"
    echo "plot '$tmp/lat_$r.tsv' using 2:xtic(1) title 'p50' lc rgb '#4878d0', '' using 3 title 'p95' lc rgb '#ee854a', '' using 4 title 'p99' lc rgb '#d65f5f', '' using 5 title 'max' lc rgb '#956cb4'"
  done
  echo "unset multiplot"
} > "$tmp/lat.gp"
gnuplot "$tmp/lat.gp"
cat > "$tmp/cpu.gp" <<GP
set terminal pngcairo size 1000,500 font 'Sans,10'
set output '$out/idle_cpu.png'
set datafile separator '\t'
set style data histograms; set style fill solid 0.85 border -1; set boxwidth 0.7
set grid ytics; set ylabel '% of one core'; set key off; set xtics noenhanced
set title 'Idle CPU over ${IDLE_SECONDS} s (4 low-latency queues per database, no traffic)'
set yrange [0:*]
plot '$tmp/cpu.tsv' using 2:xtic(1) lc rgb '#4878d0', '' using 0:2:(sprintf('%.2f', \$2)) with labels offset 0,0.7
GP
gnuplot "$tmp/cpu.gp"
