/*
 * ddl_hook.cpp: DROP DATABASE, ALTER DATABASE ... RENAME and CREATE
 * DATABASE ... TEMPLATE all need the database free of other sessions. A
 * served database has a ticker (and maybe a dispatcher) connected, so
 * before such a command runs, this hook asks those workers to leave
 * (SIGTERM), holds the launcher off restarting them for a few seconds, and
 * waits until they are gone. If the command then fails, the launcher
 * starts them again once the hold ends.
 *
 * The hook acts only for a statement that will go ahead as far as the
 * caller's rights and the transaction state go: it first makes the checks
 * PostgreSQL 15's dbcommands.c and utility.c make before looking for other
 * sessions. Otherwise any role could stop a database's workers, again and
 * again, with a DROP DATABASE it is not allowed to run.
 *
 * The same hook hands every successful utility statement to wakeup.cpp,
 * which wakes the ticker after COPY into an event table and COMMIT
 * PREPARED (neither goes through the executor hook).
 */
#include "ddl_hook.h"

extern "C" {
#include "tcop/utility.h"
}

#include "shmem.h"
#include "wakeup.h"

static ProcessUtility_hook_type prev_utility = NULL;

/* How long the launcher keeps its hands off a database after the hook
 * cleared it; covers the DDL itself. */
#define HOLD_MS 10000
#define WAIT_MS 5000

/* Asks the workers of `dboid` to leave and waits (bounded) until they did. */
static void
clear_database(Oid dboid)
{
	TimestampTz hold_until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), HOLD_MS);
	int			waited = 0;

	if (pqw_shared == NULL || !OidIsValid(dboid))
		return;
	for (;;)
	{
		int			alive = pqw_signal_workers(dboid, hold_until);

		if (alive == 0 || waited >= WAIT_MS)
			break;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 10, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		waited += 10;
	}
}

static Oid
database_oid(const char *name)
{
	return name ? get_database_oid(name, true) : InvalidOid;
}

/* An option of CREATE DATABASE as text, or NULL when not given (no
 * template means template1, which is never served). */
static const char *
createdb_option(CreatedbStmt *stmt, const char *name)
{
	ListCell   *lc;

	foreach(lc, stmt->options)
	{
		DefElem    *d = (DefElem *) lfirst(lc);

		if (strcmp(d->defname, name) == 0 && d->arg != NULL)
			return defGetString(d);
	}
	return NULL;
}

/* PostgreSQL 15's have_createdb_privilege() (static in dbcommands.c). */
static bool
caller_may_create_databases(void)
{
	HeapTuple	tup;
	bool		result = false;

	if (superuser())
		return true;
	tup = SearchSysCache1(AUTHOID, ObjectIdGetDatum(GetUserId()));
	if (HeapTupleIsValid(tup))
	{
		result = ((Form_pg_authid) GETSTRUCT(tup))->rolcreatedb;
		ReleaseSysCache(tup);
	}
	return result;
}

static bool
database_is_template(Oid dboid)
{
	HeapTuple	tup = SearchSysCache1(DATABASEOID, ObjectIdGetDatum(dboid));
	bool		result = false;

	if (HeapTupleIsValid(tup))
	{
		result = ((Form_pg_database) GETSTRUCT(tup))->datistemplate;
		ReleaseSysCache(tup);
	}
	return result;
}

/*
 * PostgreSQL 15's PreventInTransactionBlock() without the error: DROP and
 * CREATE DATABASE refuse to run in a transaction block, a subtransaction,
 * a pipeline or a function (context other than top level).
 */
static bool
may_run_outside_transaction_block(ProcessUtilityContext context)
{
	return !IsTransactionBlock() && !IsSubTransaction() &&
		(MyXactFlags & XACT_FLAGS_PIPELINING) == 0 &&
		context == PROCESS_UTILITY_TOPLEVEL;
}

/*
 * The database `stmt` needs free of other sessions, if the caller may run
 * it here and now; InvalidOid when the statement is not one of those, or
 * when PostgreSQL will refuse it on its own before it looks for sessions
 * (then the workers stay and the command raises its own error). The checks
 * and their order are those of PostgreSQL 15: utility.c
 * (PreventInTransactionBlock), dropdb(), RenameDatabase(), createdb().
 */
static Oid
database_to_clear_for(Node *stmt, ProcessUtilityContext context)
{
	switch (nodeTag(stmt))
	{
		case T_DropdbStmt:
			{
				Oid			dboid = database_oid(((DropdbStmt *) stmt)->dbname);

				if (!OidIsValid(dboid) || !may_run_outside_transaction_block(context) ||
					!pqw_database_ownercheck(dboid, GetUserId()) ||
					database_is_template(dboid) || dboid == MyDatabaseId)
					return InvalidOid;
				return dboid;
			}
		case T_RenameStmt:
			{
				RenameStmt *r = (RenameStmt *) stmt;
				Oid			dboid;

				if (r->renameType != OBJECT_DATABASE)
					return InvalidOid;
				dboid = database_oid(r->subname);
				/* caller_may_create_databases() is true for superusers */
				if (!OidIsValid(dboid) || !pqw_database_ownercheck(dboid, GetUserId()) ||
					!caller_may_create_databases() ||
					OidIsValid(database_oid(r->newname)) || dboid == MyDatabaseId)
					return InvalidOid;
				return dboid;
			}
		case T_CreatedbStmt:
			{
				CreatedbStmt *c = (CreatedbStmt *) stmt;
				const char *owner;
				Oid			dboid;

				dboid = database_oid(createdb_option(c, "template"));
				if (!OidIsValid(dboid) || !may_run_outside_transaction_block(context) ||
					!caller_may_create_databases())
					return InvalidOid;
				/* createdb(): the caller must be able to become the new owner */
				owner = createdb_option(c, "owner");
				if (owner != NULL)
				{
					Oid			owner_oid = get_role_oid(owner, true);

					if (!OidIsValid(owner_oid) || !is_member_of_role(GetUserId(), owner_oid))
						return InvalidOid;
				}
				/* copying a non-template needs its owner (or a superuser) */
				if (!database_is_template(dboid) && !pqw_database_ownercheck(dboid, GetUserId()))
					return InvalidOid;
				return dboid;
			}
		default:
			return InvalidOid;
	}
}

static void
pqw_process_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
					ProcessUtilityContext context, ParamListInfo params,
					QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	Oid			dboid = database_to_clear_for(pstmt->utilityStmt, context);

	if (OidIsValid(dboid))
		clear_database(dboid);
	if (prev_utility)
		prev_utility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
								queryEnv, dest, qc);
	/* COPY FROM and COMMIT PREPARED never reach the executor hook */
	pqw_wakeup_after_utility(pstmt->utilityStmt, qc);
}

void
pqw_ddl_hook_install(void)
{
	prev_utility = ProcessUtility_hook;
	ProcessUtility_hook = pqw_process_utility;
}
