/*
 * ddl_hook.cpp: DROP DATABASE, ALTER DATABASE ... RENAME and CREATE
 * DATABASE ... TEMPLATE all need the database free of other sessions. A
 * served database has a ticker (and maybe a dispatcher) connected, so
 * before such a command runs, this hook asks those workers to leave
 * (SIGTERM), holds the launcher off restarting them for a few seconds, and
 * waits until they are gone. If the command then fails, the launcher
 * starts them again once the hold ends.
 */
#include "ddl_hook.h"

extern "C" {
#include "tcop/utility.h"
}

#include "shmem.h"

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
		int			alive = 0;

		LWLockAcquire(pqw_shared->lock, LW_EXCLUSIVE);
		for (int i = 0; i < pqw_shared->nslots; i++)
		{
			PqwSlot    *s = &pqw_shared->slots[i];

			if (!s->in_use || s->dboid != dboid)
				continue;
			s->hold_until = hold_until;
			if (s->pid != 0)
			{
				alive++;
				(void) kill(s->pid, SIGTERM);
			}
		}
		LWLockRelease(pqw_shared->lock);
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

/* The database a statement needs free of sessions, if any. */
static Oid
database_needing_exclusivity(Node *stmt)
{
	switch (nodeTag(stmt))
	{
		case T_DropdbStmt:
			return database_oid(((DropdbStmt *) stmt)->dbname);
		case T_RenameStmt:
			{
				RenameStmt *r = (RenameStmt *) stmt;

				if (r->renameType == OBJECT_DATABASE)
					return database_oid(r->subname);
				return InvalidOid;
			}
		case T_CreatedbStmt:
			{
				ListCell   *lc;

				foreach(lc, ((CreatedbStmt *) stmt)->options)
				{
					DefElem    *d = (DefElem *) lfirst(lc);

					if (strcmp(d->defname, "template") == 0 && d->arg != NULL)
						return database_oid(defGetString(d));
				}
				return InvalidOid;
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
	Oid			dboid = database_needing_exclusivity(pstmt->utilityStmt);

	if (OidIsValid(dboid) && dboid != MyDatabaseId)
		clear_database(dboid);
	if (prev_utility)
		prev_utility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
								queryEnv, dest, qc);
}

void
pqw_ddl_hook_install(void)
{
	prev_utility = ProcessUtility_hook;
	ProcessUtility_hook = pqw_process_utility;
}
