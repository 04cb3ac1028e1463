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
#include "executor/executor.h"
#include "nodes/parsenodes.h"
#include "catalog/pg_database.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_namespace.h"
#include "utils/acl.h"
}

/* PG 16 replaced pg_proc_aclcheck() and the like by object_aclcheck();
 * the classes we ask about. */
static inline AclResult
pqw_object_aclcheck(Oid classid, Oid objectid, Oid roleid, AclMode mode)
{
#if PG_VERSION_NUM >= 160000
	return object_aclcheck(classid, objectid, roleid, mode);
#else
	switch (classid)
	{
		case ProcedureRelationId:
			return pg_proc_aclcheck(objectid, roleid, mode);
		case DatabaseRelationId:
			return pg_database_aclcheck(objectid, roleid, mode);
		case NamespaceRelationId:
			return pg_namespace_aclcheck(objectid, roleid, mode);
		default:
			elog(ERROR, "pqw_object_aclcheck: catalog %u not handled", classid);
	}
	pg_unreachable();
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

/* PG 16 moved what the executor checks from the range table to a list of
 * RTEPermissionInfo, passed to ExecutorCheckPerms_hook too. A hook is
 * declared with PQW_CHECK_PERMS_PARAMS and passes PQW_CHECK_PERMS_ARGS on.
 * PQW_PERM_INFOS is that list (NIL on 15); a relation of the range table
 * not in it (inheritance children) is PQW_RTE_NOT_IN_PERM_INFOS. */
#if PG_VERSION_NUM >= 160000
#define PQW_CHECK_PERMS_PARAMS List *rangeTable, List *rtePermInfos, bool ereport_on_violation
#define PQW_CHECK_PERMS_ARGS rangeTable, rtePermInfos, ereport_on_violation
#define PQW_PERM_INFOS rtePermInfos
#define PQW_PERM_INFO_RELID(item) (((RTEPermissionInfo *) (item))->relid)
#define PQW_RTE_NOT_IN_PERM_INFOS(rte) ((rte)->perminfoindex == 0)
#else
#define PQW_CHECK_PERMS_PARAMS List *rangeTable, bool ereport_on_violation
#define PQW_CHECK_PERMS_ARGS rangeTable, ereport_on_violation
#define PQW_PERM_INFOS NIL
#define PQW_PERM_INFO_RELID(item) InvalidOid
#define PQW_RTE_NOT_IN_PERM_INFOS(rte) true
#endif

/* A tree walker as nodeFuncs.h takes it: 16+ casts it in its macros, 15
 * declares the parameter as bool (*)(). */
#if PG_VERSION_NUM >= 160000
#define PQW_WALKER(fn) (fn)
#else
#define PQW_WALKER(fn) ((bool (*)()) (void (*)(void)) (fn))
#endif
