/*
 * pgq_client: the libpq side of the pgque_worker benchmarks.
 *
 *   pgq_client send    CONNINFO QUEUE RATE SECONDS NCONN
 *       Sends RATE events/s for SECONDS, each pgque.send() in its own
 *       (autocommit) transaction, payload = the server's clock_timestamp()
 *       at send. NCONN connections (threads) share the schedule, each send
 *       at its slot of a fixed-rate schedule (late sends go at once, never
 *       dropped). Prints "sent N seconds S max_late_ms L".
 *
 *   pgq_client poll    CONNINFO QUEUE CONSUMER POLL_US
 *       External consumer: pgque.receive() whole batches, print for each
 *       event the latency (server clock at receive - server clock at send)
 *       in ms, one per line, then pgque.ack(); sleeps POLL_US when nothing
 *       was ready. Runs until SIGTERM/SIGINT.
 *
 *   pgq_client floor   CONNINFO QUEUE CONSUMER N
 *       The floor of end-to-end latency, with no scheduler at all: N times,
 *       one client runs back to back the three transactions a delivery
 *       needs -- send (payload = server clock), pgque.ticker(QUEUE), and
 *       receive + ack -- and prints for each event the latency (server
 *       clock at receive - server clock at send) in ms, one per line. The
 *       queue must tick on one event (ticker_max_count 1).
 *
 *   pgq_client drain   CONNINFO QUEUE CONSUMER N [each]
 *       External per-message consumer: per batch, in one transaction:
 *       receive, one INSERT round trip per message into public.sink, ack,
 *       commit. With "each": every statement in its own transaction
 *       (autocommit: receive, INSERT per message, ack). Stops after N
 *       messages. Prints "messages N seconds S".
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

static volatile sig_atomic_t stop_flag = 0;

static void
on_signal(int sig)
{
	(void) sig;
	stop_flag = 1;
}

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
sleep_until(double t)
{
	struct timespec ts;

	ts.tv_sec = (time_t) t;
	ts.tv_nsec = (long) ((t - (double) ts.tv_sec) * 1e9);
	if (ts.tv_nsec >= 1000000000L)
	{
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR && !stop_flag)
		;
}

static PGconn *
connect_or_die(const char *conninfo)
{
	PGconn	   *c = PQconnectdb(conninfo);

	if (PQstatus(c) != CONNECTION_OK)
	{
		fprintf(stderr, "pgq_client: connection failed: %s", PQerrorMessage(c));
		exit(2);
	}
	return c;
}

static PGresult *
expect(PGconn *c, PGresult *r, ExecStatusType want, const char *what)
{
	if (PQresultStatus(r) != want)
	{
		fprintf(stderr, "pgq_client: %s failed: %s", what, PQerrorMessage(c));
		exit(3);
	}
	return r;
}

static void
exec_cmd(PGconn *c, const char *sql)
{
	PQclear(expect(c, PQexec(c, sql), PGRES_COMMAND_OK, sql));
}

/* ------------------------------------------------------------------ send */

typedef struct Sender
{
	const char *conninfo;
	const char *queue;
	double		rate;
	double		seconds;
	int			index;
	int			nconn;
	double		t0;
	long		sent;
	double		max_late;
} Sender;

static void *
sender_main(void *arg)
{
	Sender	   *s = (Sender *) arg;
	PGconn	   *c = connect_or_die(s->conninfo);
	const char *params[1] = {s->queue};
	long		total = (long) (s->rate * s->seconds + 0.5);

	PQclear(expect(c, PQprepare(c, "send",
								"select pgque.send($1::text, clock_timestamp()::text)", 1, NULL),
				   PGRES_COMMAND_OK, "prepare send"));
	for (long k = s->index; k < total && !stop_flag; k += s->nconn)
	{
		double		due = s->t0 + (double) k / s->rate;
		double		late = now_s() - due;

		if (late < 0)
			sleep_until(due);
		else if (late > s->max_late)
			s->max_late = late;
		PQclear(expect(c, PQexecPrepared(c, "send", 1, params, NULL, NULL, 0),
					   PGRES_TUPLES_OK, "send"));
		s->sent++;
	}
	PQfinish(c);
	return NULL;
}

static int
cmd_send(int argc, char **argv)
{
	if (argc != 7)
	{
		fprintf(stderr, "usage: pgq_client send CONNINFO QUEUE RATE SECONDS NCONN\n");
		return 1;
	}
	double		rate = atof(argv[4]);
	double		seconds = atof(argv[5]);
	int			nconn = atoi(argv[6]);
	Sender	   *s = calloc(nconn, sizeof(Sender));
	pthread_t  *th = calloc(nconn, sizeof(pthread_t));
	double		t0 = now_s() + 0.2; /* time for the threads to connect */
	long		sent = 0;
	double		max_late = 0;

	for (int i = 0; i < nconn; i++)
	{
		s[i] = (Sender) {argv[2], argv[3], rate, seconds, i, nconn, t0, 0, 0};
		pthread_create(&th[i], NULL, sender_main, &s[i]);
	}
	for (int i = 0; i < nconn; i++)
	{
		pthread_join(th[i], NULL);
		sent += s[i].sent;
		if (s[i].max_late > max_late)
			max_late = s[i].max_late;
	}
	printf("sent %ld seconds %.3f max_late_ms %.2f\n", sent, now_s() - t0, max_late * 1000);
	return 0;
}

/* ------------------------------------------------------------------ poll */

static int
cmd_poll(int argc, char **argv)
{
	if (argc != 6)
	{
		fprintf(stderr, "usage: pgq_client poll CONNINFO QUEUE CONSUMER POLL_US\n");
		return 1;
	}
	PGconn	   *c = connect_or_die(argv[2]);
	const char *params[2] = {argv[3], argv[4]};
	double		poll = atof(argv[5]) / 1e6;

	PQclear(expect(c, PQprepare(c, "recv",
								"select (extract(epoch from clock_timestamp() - payload::timestamptz) * 1000)::float8,"
								" batch_id from pgque.receive($1::text, $2::text, 2147483647)", 2, NULL),
				   PGRES_COMMAND_OK, "prepare receive"));
	PQclear(expect(c, PQprepare(c, "ack", "select pgque.ack($1::bigint)", 1, NULL),
				   PGRES_COMMAND_OK, "prepare ack"));
	while (!stop_flag)
	{
		PGresult   *r = expect(c, PQexecPrepared(c, "recv", 2, params, NULL, NULL, 0),
							   PGRES_TUPLES_OK, "receive");
		int			n = PQntuples(r);

		if (n == 0)
		{
			PQclear(r);
			sleep_until(now_s() + poll);
			continue;
		}
		for (int i = 0; i < n; i++)
			printf("%s\n", PQgetvalue(r, i, 0));
		fflush(stdout);
		{
			const char *ap[1] = {PQgetvalue(r, 0, 1)};

			PQclear(expect(c, PQexecPrepared(c, "ack", 1, ap, NULL, NULL, 0),
						   PGRES_TUPLES_OK, "ack"));
		}
		PQclear(r);
	}
	PQfinish(c);
	return 0;
}

/* ----------------------------------------------------------------- floor */

static int
cmd_floor(int argc, char **argv)
{
	if (argc != 6)
	{
		fprintf(stderr, "usage: pgq_client floor CONNINFO QUEUE CONSUMER N\n");
		return 1;
	}
	PGconn	   *c = connect_or_die(argv[2]);
	const char *params[2] = {argv[3], argv[4]};
	long		want = atol(argv[5]);
	long		got = 0;

	PQclear(expect(c, PQprepare(c, "send",
								"select pgque.send($1::text, clock_timestamp()::text)", 1, NULL),
				   PGRES_COMMAND_OK, "prepare send"));
	PQclear(expect(c, PQprepare(c, "tick", "select pgque.ticker($1::text)", 1, NULL),
				   PGRES_COMMAND_OK, "prepare ticker"));
	PQclear(expect(c, PQprepare(c, "recv",
								"select (extract(epoch from clock_timestamp() - payload::timestamptz) * 1000)::float8,"
								" batch_id from pgque.receive($1::text, $2::text, 2147483647)", 2, NULL),
				   PGRES_COMMAND_OK, "prepare receive"));
	PQclear(expect(c, PQprepare(c, "ack", "select pgque.ack($1::bigint)", 1, NULL),
				   PGRES_COMMAND_OK, "prepare ack"));
	while (got < want && !stop_flag)
	{
		PGresult   *r;
		int			n;

		PQclear(expect(c, PQexecPrepared(c, "send", 1, params, NULL, NULL, 0),
					   PGRES_TUPLES_OK, "send"));
		PQclear(expect(c, PQexecPrepared(c, "tick", 1, params, NULL, NULL, 0),
					   PGRES_TUPLES_OK, "ticker"));
		exec_cmd(c, "begin");
		r = expect(c, PQexecPrepared(c, "recv", 2, params, NULL, NULL, 0),
				   PGRES_TUPLES_OK, "receive");
		n = PQntuples(r);
		for (int i = 0; i < n; i++)
			printf("%s\n", PQgetvalue(r, i, 0));
		if (n > 0)
		{
			const char *ap[1] = {PQgetvalue(r, 0, 1)};

			PQclear(expect(c, PQexecPrepared(c, "ack", 1, ap, NULL, NULL, 0),
						   PGRES_TUPLES_OK, "ack"));
		}
		PQclear(r);
		exec_cmd(c, "commit");
		got += n;
		/* 10 ms apart, as the 100/s latency run sends */
		sleep_until(now_s() + 0.01);
	}
	fflush(stdout);
	PQfinish(c);
	return 0;
}

/* ----------------------------------------------------------------- drain */

static int
cmd_drain(int argc, char **argv)
{
	if (argc != 6 && argc != 7)
	{
		fprintf(stderr, "usage: pgq_client drain CONNINFO QUEUE CONSUMER N [each]\n");
		return 1;
	}
	PGconn	   *c = connect_or_die(argv[2]);
	const char *params[2] = {argv[3], argv[4]};
	long		want = atol(argv[5]);
	int			each = argc == 7 && strcmp(argv[6], "each") == 0;
	long		done = 0;
	double		t0 = now_s();

	PQclear(expect(c, PQprepare(c, "recv",
								"select batch_id, payload from pgque.receive($1::text, $2::text, 2147483647)",
								2, NULL),
				   PGRES_COMMAND_OK, "prepare receive"));
	PQclear(expect(c, PQprepare(c, "ins", "insert into public.sink(payload) values ($1)", 1, NULL),
				   PGRES_COMMAND_OK, "prepare insert"));
	PQclear(expect(c, PQprepare(c, "ack", "select pgque.ack($1::bigint)", 1, NULL),
				   PGRES_COMMAND_OK, "prepare ack"));
	while (done < want && !stop_flag)
	{
		if (!each)
			exec_cmd(c, "begin");
		PGresult   *r = expect(c, PQexecPrepared(c, "recv", 2, params, NULL, NULL, 0),
							   PGRES_TUPLES_OK, "receive");
		int			n = PQntuples(r);

		for (int i = 0; i < n; i++)
		{
			const char *ip[1] = {PQgetvalue(r, i, 1)};

			PQclear(expect(c, PQexecPrepared(c, "ins", 1, ip, NULL, NULL, 0),
						   PGRES_COMMAND_OK, "insert"));
		}
		if (n > 0)
		{
			const char *ap[1] = {PQgetvalue(r, 0, 0)};

			PQclear(expect(c, PQexecPrepared(c, "ack", 1, ap, NULL, NULL, 0),
						   PGRES_TUPLES_OK, "ack"));
		}
		PQclear(r);
		if (!each)
			exec_cmd(c, "commit");
		done += n;
		if (n == 0)
			sleep_until(now_s() + 0.001);
	}
	printf("messages %ld seconds %.3f\n", done, now_s() - t0);
	PQfinish(c);
	return 0;
}

int
main(int argc, char **argv)
{
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	setvbuf(stdout, NULL, _IOFBF, 1 << 16);
	if (argc >= 2 && strcmp(argv[1], "send") == 0)
		return cmd_send(argc, argv);
	if (argc >= 2 && strcmp(argv[1], "poll") == 0)
		return cmd_poll(argc, argv);
	if (argc >= 2 && strcmp(argv[1], "drain") == 0)
		return cmd_drain(argc, argv);
	if (argc >= 2 && strcmp(argv[1], "floor") == 0)
		return cmd_floor(argc, argv);
	fprintf(stderr, "usage: pgq_client send|poll|drain|floor ...\n");
	return 1;
}
