/*
 * pg_compat.h: the PostgreSQL API differences between the server versions
 * pgque_worker builds against (15, 16, 17, 18), in one place. Included by
 * pg.h after PostgreSQL's headers; no other file tests PG_VERSION_NUM.
 * Each wrapper names the version that changed the API.
 */
#pragma once

#if PG_VERSION_NUM < 150000
#error "pgque_worker needs PostgreSQL 15 or later"
#endif

extern "C" {
#include "catalog/pg_database.h"
#include "catalog/pg_proc.h"
#include "utils/acl.h"
}

/* PG 16 replaced pg_proc_aclcheck() by object_aclcheck(). */
static inline AclResult
pqw_proc_aclcheck(Oid proc_oid, Oid roleid, AclMode mode)
{
#if PG_VERSION_NUM >= 160000
	return object_aclcheck(ProcedureRelationId, proc_oid, roleid, mode);
#else
	return pg_proc_aclcheck(proc_oid, roleid, mode);
#endif
}

/* PG 16 replaced pg_database_aclcheck() by object_aclcheck(). */
static inline AclResult
pqw_database_aclcheck(Oid db_oid, Oid roleid, AclMode mode)
{
#if PG_VERSION_NUM >= 160000
	return object_aclcheck(DatabaseRelationId, db_oid, roleid, mode);
#else
	return pg_database_aclcheck(db_oid, roleid, mode);
#endif
}

/* PG 16 replaced pg_database_ownercheck() by object_ownercheck(). */
static inline bool
pqw_database_ownercheck(Oid db_oid, Oid roleid)
{
#if PG_VERSION_NUM >= 160000
	return object_ownercheck(DatabaseRelationId, db_oid, roleid);
#else
	return pg_database_ownercheck(db_oid, roleid);
#endif
}

/* PG 17 added transaction_timeout, which ends the session (FATAL) when it
 * fires: the workers pin it to 0 where it exists (NULL: before 17). */
#if PG_VERSION_NUM >= 170000
#define PQW_TRANSACTION_TIMEOUT_GUC "transaction_timeout"
#else
#define PQW_TRANSACTION_TIMEOUT_GUC NULL
#endif

