/*
 * trust.cpp: the ownership check behind PQW_AS_PGQUE_OWNER (see trust.h).
 */
#include "trust.h"

extern "C" {
#include "access/genam.h"
#include "access/table.h"
#include "catalog/dependency.h"
#include "catalog/pg_class.h"
#include "catalog/pg_depend.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_operator.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "catalog/pg_trigger.h"
#include "commands/extension.h"
#include "storage/lmgr.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
}

static PqwTrust trust = PQW_TRUST_NO_PGQUE;
static bool trust_valid = false;
static Oid	owner = InvalidOid;
static char refusal[256] = "";
static char owner_name[NAMEDATALEN + 2] = "";
static Oid	pgque_nsp = InvalidOid;

/*
 * Relations changed since the last check. Autovacuum's statistics, PgQue's
 * rotation (TRUNCATE) and ANALYZE update pg_class rows all the time; with a
 * thousand queues the full check reads thousands of pg_class rows (15 ms
 * measured), so a change of a relation is checked by itself: is it in
 * schema pgque, and owned by someone other than its owner or a superuser?
 * Any other catalog change, or more relations than fit here, means the
 * full check.
 */
#define MAX_CHANGED_RELS 64
static Oid	changed_rels[MAX_CHANGED_RELS];
static int	nchanged_rels = 0;
/* Bumped by a catalog change that needs the full check: a full check that
 * saw one while it ran is not kept. Relation changes during a full check
 * are only noted (checked by themselves next time), so autovacuum's steady
 * churn cannot keep the full check from ever being kept. */
static uint64 inval_count = 0;
static bool checking = false;	/* the full check is running */
/*
 * One catalog read: the schema's owner, whether every call we make exists
 * (an install still running is "no PgQue" yet), and the first object of
 * the schema owned by a role other than that owner or a superuser. Only
 * catalog tables and pg_catalog functions, schema-qualified.
 */
static const char *const trust_sql =
	"with n as (select oid, nspowner from pg_catalog.pg_namespace where nspname = 'pgque'),"
	" su as (select oid from pg_catalog.pg_roles where rolsuper)"
	" select n.nspowner, n.nspowner::pg_catalog.regrole::pg_catalog.text,"
	"  pg_catalog.to_regprocedure('pgque.ticker()') is not null"
	"  and pg_catalog.to_regprocedure('pgque.maint_retry_events()') is not null"
	"  and pg_catalog.to_regprocedure('pgque.maint()') is not null"
	"  and pg_catalog.to_regprocedure('pgque.maint_rotate_tables_step2()') is not null"
	"  and pg_catalog.to_regclass('pgque.config') is not null,"
	"  coalesce("
	"   (select pg_catalog.format('function %s is owned by role %s', p.oid::pg_catalog.regprocedure, p.proowner::pg_catalog.regrole)"
	"      from pg_catalog.pg_proc p where p.pronamespace = n.oid and p.proowner <> n.nspowner"
	"       and p.proowner not in (select oid from su) limit 1),"
	"   (select pg_catalog.format('relation %s is owned by role %s', c.oid::pg_catalog.regclass, c.relowner::pg_catalog.regrole)"
	"      from pg_catalog.pg_class c where c.relnamespace = n.oid and c.relowner <> n.nspowner"
	"       and c.relowner not in (select oid from su) limit 1),"
	"   (select pg_catalog.format('type %s is owned by role %s', t.oid::pg_catalog.regtype, t.typowner::pg_catalog.regrole)"
	"      from pg_catalog.pg_type t where t.typnamespace = n.oid and t.typowner <> n.nspowner"
	"       and t.typowner not in (select oid from su) limit 1),"
	"   (select pg_catalog.format('operator %s is owned by role %s', o.oid::pg_catalog.regoperator, o.oprowner::pg_catalog.regrole)"
	"      from pg_catalog.pg_operator o where o.oprnamespace = n.oid and o.oprowner <> n.nspowner"
	"       and o.oprowner not in (select oid from su) limit 1),"
	"   (select pg_catalog.format('relation %s has trigger %s (PgQue makes none; any role with TRIGGER on the table can add one, and it would run as the caller, PgQue''s owner)',"
	"                             t.tgrelid::pg_catalog.regclass, t.tgname)"
	"      from pg_catalog.pg_trigger t join pg_catalog.pg_class c on c.oid = t.tgrelid"
	"     where c.relnamespace = n.oid and not t.tgisinternal limit 1)),"
	"  n.oid,"
	"  pg_catalog.to_regprocedure('pgque.ticker()'),"
	"  pg_catalog.to_regprocedure('pgque.maint_retry_events()'),"
	"  pg_catalog.to_regprocedure('pgque.maint()'),"
	"  pg_catalog.to_regprocedure('pgque.maint_rotate_tables_step2()'),"
	"  pg_catalog.to_regclass('pgque.config')"
	" from n";

/* What we call (columns 6-10 above): while they keep their names, a change
 * elsewhere in pg_proc or pg_type keeps "PgQue is here". */
#define NREQUIRED 5
static const char *const required_names[NREQUIRED] = {
	"ticker", "maint_retry_events", "maint", "maint_rotate_tables_step2", "config"
};
static Oid	required[NREQUIRED];

/*
 * Functions, types and operators changed since the last check, a bit per
 * catalog. A tenant can change them at will (a function in pg_temp, a
 * domain in its own schema) and each change reaches every process of the
 * database; before, each meant the full check (15 ms with a thousand
 * queues, mostly pg_class). Now it means a scan of that catalog for the
 * objects of schema pgque (new ones too: an overload PgQue's code would
 * pick, created by a role with CREATE there, such as pgque_admin) and a
 * look at what we call.
 */
#define CHANGED_PROC 1
#define CHANGED_TYPE 2
#define CHANGED_OPER 4
static int	changed_objects = 0;
/* Bumped by each such change: the bits are cleared only by a check that
 * ended without error and saw no change come while it ran. */
static uint64 object_changes = 0;

static void
invalidate(Datum arg, int cacheid, uint32 hashvalue)
{
	(void) arg;
	(void) cacheid;
	(void) hashvalue;
	inval_count++;
	trust_valid = false;
}

/* A schema changed: only schema pgque's row (its owner, its name) can
 * change the answer; a role with CREATE on the database can make and drop
 * schemas of its own at will. */
static uint32 pgque_nsp_hash = 0;

static void
namespace_changed(Datum arg, int cacheid, uint32 hashvalue)
{
	if (checking || hashvalue == 0 || !OidIsValid(pgque_nsp) || hashvalue == pgque_nsp_hash)
		invalidate(arg, cacheid, hashvalue);
}

/* A function, type or operator changed: noted, checked at the next
 * pqw_pgque_trust() by objects_keep_trust(). */
static void
object_changed(Datum arg, int cacheid, uint32 hashvalue)
{
	if (checking)
	{
		/* the full check under way may have read the old row */
		invalidate(arg, cacheid, hashvalue);
		return;
	}
	changed_objects |= cacheid == PROCOID ? CHANGED_PROC
		: cacheid == TYPEOID ? CHANGED_TYPE : CHANGED_OPER;
	object_changes++;
}

/*
 * Roles changed since the last check. The answer depends on roles only
 * through which of them are superusers (an object of schema pgque may
 * belong to one) and the owner's name; before, any ALTER ROLE (a password)
 * meant the full check in every database, and a role changing its own
 * password in a loop slowed every database's ticks (p50 13 -> 54 ms with
 * 500 queues, found by a review). So a role change compares the
 * superusers with those the last full check saw.
 */
#define MAX_SUPERUSERS 64
static Oid	superusers[MAX_SUPERUSERS];
static int	nsuperusers = -1;	/* -1: not known, or more than fit */
static bool roles_changed = false;
static uint64 role_changes = 0; /* as object_changes, for roles_changed */

static void
role_changed(Datum arg, int cacheid, uint32 hashvalue)
{
	(void) arg;
	(void) cacheid;
	(void) hashvalue;
	if (checking)
	{
		/* the full check under way may have read the old roles */
		inval_count++;
		trust_valid = false;
		return;
	}
	roles_changed = true;
	role_changes++;
}

/* The superusers' OIDs in order into out[max]; -1 if more than max. */
static int
read_superusers(Oid *out, int max)
{
	Relation	rel = table_open(AuthIdRelationId, AccessShareLock);
	SysScanDesc scan = systable_beginscan(rel, InvalidOid, false, NULL, 0, NULL);
	HeapTuple	tup;
	int			n = 0;

	while (n >= 0 && HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		Form_pg_authid a = (Form_pg_authid) GETSTRUCT(tup);

		if (!a->rolsuper)
			continue;
		if (n == max)
			n = -1;
		else
			out[n++] = a->oid;
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	if (n > 1)
		qsort(out, n, sizeof(Oid), oid_cmp);
	return n;
}

/* Do the role changes since the last check keep the answer? Only an "ok"
 * is kept; the owner's name is read again. */
static bool
roles_keep_trust(void)
{
	Oid			now[MAX_SUPERUSERS];
	int			n;
	char	   *name;

	if (trust != PQW_TRUST_OK || nsuperusers < 0)
		return false;
	n = read_superusers(now, MAX_SUPERUSERS);
	if (n != nsuperusers || (n > 0 && memcmp(now, superusers, sizeof(Oid) * n) != 0))
		return false;
	name = GetUserNameFromId(owner, true);
	if (name == NULL)
		return false;
	strlcpy(owner_name, quote_identifier(name), sizeof(owner_name));
	return true;
}

/* A relation changed (InvalidOid: all of them): noted, checked by itself
 * at the next pqw_pgque_trust(). No catalog access here. */
static void
relation_changed(Datum arg, Oid relid)
{
	(void) arg;
	if (!trust_valid && !checking)
		return;					/* the full check runs next anyway */
	if (!OidIsValid(relid) || nchanged_rels == MAX_CHANGED_RELS)
	{
		inval_count++;
		trust_valid = false;
		return;
	}
	for (int i = 0; i < nchanged_rels; i++)
		if (changed_rels[i] == relid)
			return;
	changed_rels[nchanged_rels++] = relid;
}

/* Has the relation a trigger a role made (not one of a constraint's)? A
 * CREATE TRIGGER changes no pg_class row once the table has triggers, only
 * its relcache entry: this is how such a change is seen. */
static bool
has_user_trigger(Oid relid)
{
	Relation	rel = table_open(TriggerRelationId, AccessShareLock);
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	bool		found = false;

	ScanKeyInit(&key, Anum_pg_trigger_tgrelid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(relid));
	scan = systable_beginscan(rel, TriggerRelidNameIndexId, true, NULL, 1, &key);
	while (!found && HeapTupleIsValid(tup = systable_getnext(scan)))
		found = !((Form_pg_trigger) GETSTRUCT(tup))->tgisinternal;
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return found;
}

/* Do the relations changed since the last check keep the answer? Only an
 * "ok" is kept (a refusal or "no PgQue" is read again in full). */
static bool
changed_rels_keep_trust(void)
{
	bool		keep = trust == PQW_TRUST_OK;

	for (int i = 0; keep && i < nchanged_rels; i++)
	{
		HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(changed_rels[i]));
		Form_pg_class c;

		if (!HeapTupleIsValid(tup))
			continue;			/* dropped */
		c = (Form_pg_class) GETSTRUCT(tup);
		if (c->relnamespace == pgque_nsp &&
			((c->relowner != owner && !superuser_arg(c->relowner)) ||
			 (c->relhastriggers && has_user_trigger(changed_rels[i]))))
			keep = false;
		ReleaseSysCache(tup);
	}
	nchanged_rels = 0;
	return keep;
}

/* Is an object of catalog `catalog` in schema pgque owned by a role other
 * than its owner or a superuser? (nspattr, ownerattr: its columns) A heap
 * scan: no catalog has an index on the schema alone. */
static bool
untrusted_object_in(Oid catalog, AttrNumber nspattr, AttrNumber ownerattr)
{
	Relation	rel = table_open(catalog, AccessShareLock);
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	bool		found = false;

	ScanKeyInit(&key, nspattr, BTEqualStrategyNumber, F_OIDEQ, ObjectIdGetDatum(pgque_nsp));
	scan = systable_beginscan(rel, InvalidOid, false, NULL, 1, &key);
	while (!found && HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		bool		isnull;
		Oid			o = DatumGetObjectId(heap_getattr(tup, ownerattr, RelationGetDescr(rel), &isnull));

		found = o != owner && !superuser_arg(o);
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return found;
}

/* Is what we call still there, under its name in schema pgque? */
static bool
required_still_there(void)
{
	for (int i = 0; i < NREQUIRED; i++)
	{
		bool		there = false;
		HeapTuple	tup;

		if (i < NREQUIRED - 1)
		{
			tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(required[i]));
			if (HeapTupleIsValid(tup))
			{
				Form_pg_proc p = (Form_pg_proc) GETSTRUCT(tup);

				there = p->pronamespace == pgque_nsp &&
					strcmp(NameStr(p->proname), required_names[i]) == 0;
				ReleaseSysCache(tup);
			}
		}
		else
		{
			tup = SearchSysCache1(RELOID, ObjectIdGetDatum(required[i]));
			if (HeapTupleIsValid(tup))
			{
				Form_pg_class c = (Form_pg_class) GETSTRUCT(tup);

				there = c->relnamespace == pgque_nsp &&
					strcmp(NameStr(c->relname), required_names[i]) == 0;
				ReleaseSysCache(tup);
			}
		}
		if (!there)
			return false;
	}
	return true;
}

/* Do the function, type and operator changes since the last check keep
 * the answer? Only an "ok" is kept. The changes stay noted until a check
 * of them ends: one that raises (a lock timeout behind a lock any role can
 * queue on pg_proc) is made again at the next call. */
static bool
objects_keep_trust(void)
{
	int			changed = changed_objects;
	uint64		seen = object_changes;
	bool		keep;

	if (trust != PQW_TRUST_OK || !required_still_there())
		return false;
	elog(DEBUG1, "pgque_worker: checked the%s%s%s of schema pgque",
		 (changed & CHANGED_PROC) ? " functions" : "",
		 (changed & CHANGED_TYPE) ? " types" : "",
		 (changed & CHANGED_OPER) ? " operators" : "");
	keep = !((changed & CHANGED_PROC) &&
			 untrusted_object_in(ProcedureRelationId, Anum_pg_proc_pronamespace, Anum_pg_proc_proowner)) &&
		!((changed & CHANGED_TYPE) &&
		  untrusted_object_in(TypeRelationId, Anum_pg_type_typnamespace, Anum_pg_type_typowner)) &&
		!((changed & CHANGED_OPER) &&
		  untrusted_object_in(OperatorRelationId, Anum_pg_operator_oprnamespace, Anum_pg_operator_oprowner));
	if (keep && object_changes == seen)
		changed_objects = 0;
	return keep;
}

PqwTrust
pqw_pgque_trust(void)
{
	bool		isnull;
	HeapTuple	tup;
	TupleDesc	desc;
	int			nest;
	int			rc;
	uint64		count_before;

	checking = false;			/* an earlier check may have raised */
	/* what other sessions committed up to now (a long statement or a
	 * REPEATABLE READ caller may not have looked in a while) */
	AcceptInvalidationMessages();
	if (trust_valid && nchanged_rels > 0 && !changed_rels_keep_trust())
		trust_valid = false;
	if (trust_valid && changed_objects != 0 && !objects_keep_trust())
		trust_valid = false;
	if (trust_valid && roles_changed)
	{
		/* cleared once compared without error, unless a change came
		 * meanwhile: that one is looked at next time */
		uint64		seen = role_changes;

		if (!roles_keep_trust())
			trust_valid = false;
		else if (role_changes == seen)
			roles_changed = false;
	}
	if (trust_valid)
		return trust;
	roles_changed = false;
	nchanged_rels = 0;
	changed_objects = 0;
	count_before = inval_count;
	/* also called in users' sessions (_queue_exists): resolve names in the
	 * catalog only, whatever their search_path says; read the catalogs as
	 * committed now, not as the caller's snapshot saw them */
	nest = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	PushActiveSnapshot(GetLatestSnapshot());
	checking = true;
	/* first: a role changed from here on makes this check not kept */
	nsuperusers = read_superusers(superusers, MAX_SUPERUSERS);
	elog(DEBUG1, "pgque_worker: full trust check of schema pgque");
	rc = SPI_execute(trust_sql, true, 1);
	checking = false;
	PopActiveSnapshot();
	AtEOXact_GUC(false, nest);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "could not read the owners of schema pgque");
	trust = PQW_TRUST_NO_PGQUE;
	owner = InvalidOid;
	pgque_nsp = InvalidOid;
	owner_name[0] = '\0';
	refusal[0] = '\0';
	if (SPI_processed == 1)
	{
		tup = SPI_tuptable->vals[0];
		desc = SPI_tuptable->tupdesc;
		owner = DatumGetObjectId(SPI_getbinval(tup, desc, 1, &isnull));
		pgque_nsp = DatumGetObjectId(SPI_getbinval(tup, desc, 5, &isnull));
		pgque_nsp_hash = GetSysCacheHashValue1(NAMESPACEOID, ObjectIdGetDatum(pgque_nsp));
		for (int i = 0; i < NREQUIRED; i++)
		{
			required[i] = DatumGetObjectId(SPI_getbinval(tup, desc, 6 + i, &isnull));
			if (isnull)
				required[i] = InvalidOid;
		}
		strlcpy(owner_name, SPI_getvalue(tup, desc, 2), sizeof(owner_name));
		if (DatumGetBool(SPI_getbinval(tup, desc, 3, &isnull)) && !isnull)
		{
			char	   *why = SPI_getvalue(tup, desc, 4);

			if (why == NULL)
				trust = PQW_TRUST_OK;
			else
			{
				trust = PQW_TRUST_REFUSED;
				pqw_strlcpy_text(refusal, why, sizeof(refusal));
			}
		}
	}
	/* Set last: an error above leaves the answer to be checked again; a
	 * catalog change committed while the check ran makes the next call
	 * check again (this call answers from what it read). */
	trust_valid = inval_count == count_before;
	return trust;
}

Oid
pqw_pgque_owner(void)
{
	return owner;
}

const char *
pqw_pgque_owner_name(void)
{
	return owner_name;
}

const char *
pqw_pgque_refusal(void)
{
	return refusal;
}

Oid
pqw_extension_relation(const char *extname, const char *nspname, const char *relname)
{
	Oid			ext = get_extension_oid(extname, true);
	Oid			nsp = get_namespace_oid(nspname, true);
	Oid			rel = OidIsValid(nsp) ? get_relname_relid(relname, nsp) : InvalidOid;

	if (!OidIsValid(ext) || !OidIsValid(rel) ||
		getExtensionOfObject(RelationRelationId, rel) != ext)
		return InvalidOid;
	return rel;
}

/* ACCESS SHARE on `rel` to the end of the transaction, if free now. */
static bool
try_read_lock(Oid rel)
{
	return ConditionalLockRelationOid(rel, AccessShareLock);
}

const char *
pqw_lock_registry(Oid *rel)
{
	*rel = InvalidOid;
	/* pqw_extension_relation scans them (pg_depend without a cache) */
	if (!try_read_lock(ExtensionRelationId))
		return "catalog pg_extension";
	if (!try_read_lock(DependRelationId))
		return "catalog pg_depend";
	*rel = pqw_extension_relation("pgque_worker", "pgque_worker_internal", "handler");
	if (OidIsValid(*rel) && !try_read_lock(*rel))
		return "table pgque_worker_internal.handler";
	return NULL;
}

void
pqw_trust_install(void)
{
	/* Owners, schemas and objects of PgQue live in these catalogs. */
	CacheRegisterSyscacheCallback(NAMESPACEOID, namespace_changed, (Datum) 0);
	CacheRegisterSyscacheCallback(PROCOID, object_changed, (Datum) 0);
	CacheRegisterRelcacheCallback(relation_changed, (Datum) 0);
	CacheRegisterSyscacheCallback(TYPEOID, object_changed, (Datum) 0);
	CacheRegisterSyscacheCallback(OPEROID, object_changed, (Datum) 0);
	CacheRegisterSyscacheCallback(AUTHOID, role_changed, (Datum) 0);
}
