/*
 * pause.cpp: pgque_worker._set_paused(database, paused), behind
 * pgque_worker.pause() and resume().
 *
 * Who may pause or resume a database: a superuser, its owner, or a member
 * of pgque_admin for the database it is connected to. Roles are
 * cluster-wide, but pgque_admin stands for administering the PgQue of the
 * database where it is used: administering PgQue in database A gives no
 * right over database B, which its owner governs. The setting is stored with ALTER DATABASE ... SET,
 * which needs ownership and, for this superuser-only setting, superuser.
 * So the function is not SECURITY DEFINER: it checks the invoker
 * (GetUserId()) itself, and only then runs that one statement as the
 * bootstrap superuser.
 */
#include "pg.h"
#include "wakeup.h"

extern "C" {
#include "storage/lmgr.h"
}

extern "C" {
PG_FUNCTION_INFO_V1(pqw_set_paused);
}

/* The rule above, for the current user. */
static bool
may_pause_database(Oid dboid)
{
	Oid			admin;

	/* true for superusers and for members of the owning role */
	if (pqw_database_ownercheck(dboid, GetUserId()))
		return true;
	if (dboid != MyDatabaseId)
		return false;
	admin = get_role_oid("pgque_admin", true);
	return OidIsValid(admin) && has_privs_of_role(GetUserId(), admin);
}

/* Runs `sql` (a utility statement) as the bootstrap superuser. */
static void
execute_as_superuser(const char *sql)
{
	Oid			saved_uid;
	int			saved_sec;

	GetUserIdAndSecContext(&saved_uid, &saved_sec);
	SetUserIdAndSecContext(BOOTSTRAP_SUPERUSERID, saved_sec | SECURITY_LOCAL_USERID_CHANGE);
	/* (sub)transaction abort would restore the user too; this keeps the
	 * switch visibly scoped to the one statement */
	PG_TRY();
	{
		int			rc;

		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		rc = SPI_execute(sql, false, 0);
		if (rc != SPI_OK_UTILITY)
			elog(ERROR, "unexpected result of \"%s\": %s", sql, SPI_result_code_string(rc));
		SPI_finish();
	}
	PG_FINALLY();
	{
		SetUserIdAndSecContext(saved_uid, saved_sec);
	}
	PG_END_TRY();
}

/*
 * pgque_worker._set_paused(database name, paused boolean): sets or resets
 * pgque_worker.database_paused of the database and restarts its workers at
 * commit, so they read it.
 */
PQW_EXPORT Datum
pqw_set_paused(PG_FUNCTION_ARGS)
{
	const char *dbname;
	bool		paused;
	Oid			dboid;
	StringInfoData sql;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("database and paused must not be null")));
	dbname = NameStr(*PG_GETARG_NAME(0));
	paused = PG_GETARG_BOOL(1);

	dboid = get_database_oid(dbname, true);
	if (OidIsValid(dboid))
	{
		/* as ALTER DATABASE does: the name cannot move to another database
		 * (RENAME, DROP) between the check below and the statement */
		LockSharedObject(DatabaseRelationId, dboid, 0, AccessShareLock);
		if (get_database_oid(dbname, true) != dboid)
			dboid = InvalidOid;
	}
	if (!OidIsValid(dboid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_DATABASE),
				 errmsg("database \"%s\" does not exist", dbname)));

	if (!may_pause_database(dboid))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 paused ? errmsg("permission denied to pause database \"%s\"", dbname)
				 : errmsg("permission denied to resume database \"%s\"", dbname),
				 errhint("Only superusers, the owner of the database, and members of pgque_admin connected to that database can pause or resume it.")));

	initStringInfo(&sql);
	if (paused)
		appendStringInfo(&sql, "ALTER DATABASE %s SET pgque_worker.database_paused = on",
						 quote_identifier(dbname));
	else
		appendStringInfo(&sql, "ALTER DATABASE %s RESET pgque_worker.database_paused",
						 quote_identifier(dbname));
	execute_as_superuser(sql.data);
	pfree(sql.data);

	pqw_restart_workers_at_commit(dboid);
	PG_RETURN_VOID();
}
