/*
 * spi_txn.cpp: transactions around SPI calls, with timeouts, activity
 * reporting and error capture (see spi_txn.h).
 *
 * Plain C-style code on purpose: these functions contain PG_TRY blocks and
 * call functions that longjmp, so no C++ object with a destructor may live
 * in their frames.
 */
#include "spi_txn.h"

#include "guc.h"

#include "shmem.h"
#include "trust.h"

extern "C" {
#include "access/genam.h"
#include "access/table.h"
#include "catalog/indexing.h"
#include "catalog/pg_db_role_setting.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_language.h"
#include "nodes/nodeFuncs.h"
#include "parser/analyze.h"
#include "utils/regproc.h"
#include "utils/varlena.h"
#include "tcop/utility.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"
}

Oid			pqw_worker_roleid = InvalidOid;

/*
 * Settings a database owner (ALTER DATABASE ... SET) or a role's settings
 * could otherwise give the workers: each would stall them (read-only or
 * serializable defaults, exit_on_error and, from PostgreSQL 17,
 * transaction_timeout, which end the session; plpgsql extra checks that reject
 * PgQue's code) or redirect name resolution (search_path, role). Pinned at
 * session level, so a reload or a per-database value cannot change them
 * and code run under pqw_begin_as can change them only until it returns.
 */
static const char *const pinned_settings[][2] = {
	{"role", "none"},
	{"search_path", PQW_PINNED_SEARCH_PATH},
	{"default_transaction_read_only", "off"},
	{"default_transaction_isolation", "read committed"},
	{"default_transaction_deferrable", "off"},
	{"statement_timeout", "0"},		/* armed per call instead */
	{"idle_in_transaction_session_timeout", "0"},
	{"exit_on_error", "off"},
	{"transform_null_equals", "off"},
	{"row_security", "on"},
	{"jit", "off"},
	{"session_replication_role", "origin"},
	{"DateStyle", "ISO, MDY"},
	{"IntervalStyle", "postgres"},
	{"plpgsql.extra_errors", "none"},
	{"plpgsql.extra_warnings", "none"},
	{"plpgsql.variable_conflict", "error"},
};

/*
 * The value of setting `name` that pg_db_role_setting holds for (db, role)
 * (InvalidOid: any database / every role), or NULL.
 */
static char *
role_setting(Relation rel, Oid db, Oid role, const char *name)
{
	char	   *found = NULL;
	HeapTuple	tup;
	ScanKeyData key[2];
	SysScanDesc scan;
	size_t		len = strlen(name);

	ScanKeyInit(&key[0], Anum_pg_db_role_setting_setdatabase, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(db));
	ScanKeyInit(&key[1], Anum_pg_db_role_setting_setrole, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(role));
	scan = systable_beginscan(rel, DbRoleSettingDatidRolidIndexId, true, NULL, 2, key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
	{
		bool		isnull;
		Datum		d = heap_getattr(tup, Anum_pg_db_role_setting_setconfig,
									 RelationGetDescr(rel), &isnull);

		if (!isnull)
		{
			ArrayType  *a = DatumGetArrayTypeP(d);
			Datum	   *elems;
			int			n;

			deconstruct_array(a, TEXTOID, -1, false, TYPALIGN_INT, &elems, NULL, &n);
			for (int i = 0; i < n && found == NULL; i++)
			{
				char	   *kv = TextDatumGetCString(elems[i]);

				if (strncmp(kv, name, len) == 0 && kv[len] == '=')
					found = pstrdup(kv + len + 1);
			}
		}
	}
	systable_endscan(scan);
	return found;
}

/*
 * pgque_worker.database_paused as pause() stored it for this database.
 * Read from the catalog: PostgreSQL applies a superuser-only setting of a
 * database only to superuser sessions, and the worker's role may not be one.
 */
static bool
database_paused_in_catalog(void)
{
	bool		paused = false;
	Relation	rel;
	char	   *val;

	StartTransactionCommand();
	rel = table_open(DbRoleSettingRelationId, AccessShareLock);
	val = role_setting(rel, MyDatabaseId, InvalidOid, "pgque_worker.database_paused");
	if (val != NULL)
		(void) parse_bool(val, &paused);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	return paused;
}

/*
 * May only `owner` (or roles it trusts: superusers, roles with its
 * privileges) create objects in schema `nsp`? Its owner may, and the
 * grantees of CREATE, PUBLIC included.
 */
static bool
only_owner_creates_in(Oid nsp, Oid owner)
{
	HeapTuple	tup = SearchSysCache1(NAMESPACEOID, ObjectIdGetDatum(nsp));
	Form_pg_namespace n;
	bool		isnull;
	Datum		acl;
	bool		only = true;

	if (!HeapTupleIsValid(tup))
		return false;
	n = (Form_pg_namespace) GETSTRUCT(tup);
#define PQW_TRUSTED_BY_OWNER(r) ((r) == owner || superuser_arg(r) || has_privs_of_role((r), owner))
	only = PQW_TRUSTED_BY_OWNER(n->nspowner);
	acl = SysCacheGetAttr(NAMESPACEOID, tup, Anum_pg_namespace_nspacl, &isnull);
	if (only && !isnull)
	{
		Acl		   *a = DatumGetAclP(acl);
		AclItem    *items = ACL_DAT(a);

		for (int i = 0; only && i < ACL_NUM(a); i++)
			if ((ACLITEM_GET_PRIVS(items[i]) & ACL_CREATE) != 0)
				only = items[i].ai_grantee != ACL_ID_PUBLIC &&
					PQW_TRUSTED_BY_OWNER(items[i].ai_grantee);
	}
#undef PQW_TRUSTED_BY_OWNER
	ReleaseSysCache(tup);
	return only;
}

/*
 * `path` as another role's function gets it when the current user calls
 * it (see pqw_handler_call_role): "$user" spelled as the owner's name, so
 * it names the same schemas whoever calls; cut before the first schema
 * the current user or the owner may not use (PostgreSQL would skip it
 * for one of them, and a later schema would supply the owner's
 * unqualified names: found by a review); without the schemas where a role
 * the owner does not trust may create objects (`public` where tenants
 * may: the first caller, or any such role, would otherwise supply them,
 * found by a second review); pg_temp dropped where named and put last.
 * What the function cannot find then fails the call, and nothing is
 * compiled.
 */
static char *
path_for_caller(const char *path, Oid owner)
{
	char	   *owner_name = GetUserNameFromId(owner, true);
	char	   *raw = pstrdup(path);
	List	   *names;
	ListCell   *lc;
	StringInfoData buf;

	initStringInfo(&buf);
	if (SplitIdentifierString(raw, ',', &names))
	{
		foreach(lc, names)
		{
			const char *name = (const char *) lfirst(lc);
			Oid			nsp;

			if (strcmp(name, "$user") == 0)
			{
				if (owner_name == NULL)
					continue;
				name = owner_name;
			}
			if (strcmp(name, "pg_temp") == 0)
				continue;
			nsp = get_namespace_oid(name, true);
			if (!OidIsValid(nsp))
				continue;		/* skipped for everyone alike */
			if (pqw_object_aclcheck(NamespaceRelationId, nsp, GetUserId(), ACL_USAGE) != ACLCHECK_OK ||
				pqw_object_aclcheck(NamespaceRelationId, nsp, owner, ACL_USAGE) != ACLCHECK_OK)
				break;
			if (nsp != PG_CATALOG_NAMESPACE && !only_owner_creates_in(nsp, owner))
				continue;
			appendStringInfo(&buf, "%s, ", quote_identifier(name));
		}
	}
	appendStringInfoString(&buf, "pg_temp");
	return buf.data;
}

/*
 * The search_path a session of `owner` gets in this database: ALTER ROLE
 * ... IN DATABASE, ALTER ROLE, ALTER DATABASE, ALTER ROLE ALL, in
 * PostgreSQL's order, else its default.
 */
static char *
owner_search_path(Oid owner)
{
	const Oid	order[4][2] = {{MyDatabaseId, owner}, {InvalidOid, owner},
	{MyDatabaseId, InvalidOid}, {InvalidOid, InvalidOid}};
	Relation	rel = table_open(DbRoleSettingRelationId, AccessShareLock);
	char	   *path = NULL;

	for (int i = 0; i < 4 && path == NULL; i++)
		path = role_setting(rel, order[i][0], order[i][1], "search_path");
	table_close(rel, AccessShareLock);
	return path != NULL ? path : pstrdup("\"$user\", public");
}

static bool check_pgque_relations(PQW_CHECK_PERMS_PARAMS);
static ExecutorCheckPerms_hook_type prev_check_perms = NULL;
static void check_pgque_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
								ProcessUtilityContext context, ParamListInfo params,
								QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc);
static ProcessUtility_hook_type prev_utility = NULL;
static void check_pgque_analyzed(ParseState *pstate, Query *query, JumbleState *jstate);
static post_parse_analyze_hook_type prev_post_parse_analyze = NULL;

/* What the workers' fmgr hook does with a function (see spi_txn.h). */
typedef enum PgqueFnKind
{
	FN_OTHER,
	FN_PGQUE,					/* of schema pgque, no search_path of its own */
	FN_PGQUE_OWN_PATH,			/* of schema pgque, SET search_path */
	FN_VALIDATOR,				/* a procedural language's validator */
	FN_PROCEDURAL,				/* another, in a language other than C,
								 * internal or SQL, no search_path of its own */
	FN_PROCEDURAL_OWN_PATH		/* the same, SET search_path */
} PgqueFnKind;

Oid			pqw_handler_call_role = InvalidOid;

/* Does a proconfig array set search_path? */
static bool
config_sets_search_path(Datum config)
{
	ArrayType  *arr = DatumGetArrayTypeP(config);
	Datum	   *items;
	bool	   *nulls;
	int			n;
	bool		found = false;

	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &items, &nulls, &n);
	for (int i = 0; i < n && !found; i++)
		found = !nulls[i] && strncmp(TextDatumGetCString(items[i]), "search_path=",
									 strlen("search_path=")) == 0;
	return found;
}

static PgqueFnKind
pgque_fn_kind(Oid fn_oid, Oid *owner)
{
	HeapTuple	tup;
	Form_pg_proc p;
	PgqueFnKind kind = FN_OTHER;
	Oid			pgque_ns;
	bool		isnull;
	Datum		config;
	bool		own_path;

	/* (built-in functions never get here: fmgr_info takes them first) */
	if (!OidIsValid(pqw_worker_roleid) || !OidIsValid(fn_oid) || !IsTransactionState())
		return FN_OTHER;
	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn_oid));
	if (!HeapTupleIsValid(tup))
		return FN_OTHER;
	p = (Form_pg_proc) GETSTRUCT(tup);
	*owner = p->proowner;
	config = SysCacheGetAttr(PROCOID, tup, Anum_pg_proc_proconfig, &isnull);
	own_path = !isnull && config_sets_search_path(config);
	pgque_ns = get_namespace_oid("pgque", true);
	if (OidIsValid(pgque_ns) && p->pronamespace == pgque_ns)
		kind = own_path ? FN_PGQUE_OWN_PATH : FN_PGQUE;
	/* a C function validator(oid) returns void: plpgsql_validator and the
	 * like compile the function they are given and keep the result */
	else if (p->prolang == ClanguageId && p->prorettype == VOIDOID && p->pronargs == 1 &&
			 p->proargtypes.values[0] == OIDOID)
	{
		const char *name = NameStr(p->proname);
		size_t		len = strlen(name);

		if (len >= strlen("validator") && strcmp(name + len - strlen("validator"), "validator") == 0)
			kind = FN_VALIDATOR;
	}
	else if (p->prolang != ClanguageId && p->prolang != INTERNALlanguageId &&
			 p->prolang != SQLlanguageId)
		kind = own_path ? FN_PROCEDURAL_OWN_PATH : FN_PROCEDURAL;
	ReleaseSysCache(tup);
	return kind;
}

/* The handler function pqw_handler_fmgr_info is looking up, and its role. */
static Oid	handler_lookup_fn = InvalidOid;
static Oid	handler_lookup_role = InvalidOid;

bool
pqw_pgque_fn_needs_path(Oid fn_oid)
{
	Oid			owner = InvalidOid;
	PgqueFnKind kind = pgque_fn_kind(fn_oid, &owner);

	/* a handler's own function, called only as its own role: its calls
	 * keep the handler's path, with no hook on each message */
	if ((kind == FN_PROCEDURAL || kind == FN_PROCEDURAL_OWN_PATH) &&
		fn_oid == handler_lookup_fn && owner == handler_lookup_role)
		return false;
	return kind != FN_OTHER;
}

void
pqw_handler_fmgr_info(Oid fn, Oid run_as, FmgrInfo *flinfo)
{
	/* an error leaves them set until the next transaction starts */
	handler_lookup_fn = fn;
	handler_lookup_role = run_as;
	fmgr_info(fn, flinfo);
	handler_lookup_fn = InvalidOid;
	handler_lookup_role = InvalidOid;
}

/*
 * The PgQue calls under way, innermost last: the call (its FmgrInfo) and
 * the settings nest level it opened. What a function is gets decided
 * once, at its start; its end or abort pops its own frame and nothing
 * else, so a function that changes schema or settings during its call
 * cannot unbalance the stack. Each worker transaction starts with none.
 */
typedef struct PgqueFnFrame
{
	const FmgrInfo *flinfo;
	int			nest;
} PgqueFnFrame;
static PgqueFnFrame *pgque_fn_frames = NULL;	/* in TopMemoryContext */
static int	pgque_fn_room = 0;
static int	pgque_fn_depth = 0;

static void
pgque_fn_frames_reset(void)
{
	if (pgque_fn_depth != 0)
		elog(LOG, "pgque_worker: %d PgQue call frames left from an earlier transaction, dropped",
			 pgque_fn_depth);
	pgque_fn_depth = 0;
	handler_lookup_fn = InvalidOid;
	handler_lookup_role = InvalidOid;
}

void
pqw_pgque_fn_path(FmgrHookEventType event, FmgrInfo *flinfo)
{
	if (event != FHET_START)
	{
		/* after an error, the (sub)transaction's abort unwinds the level */
		if (pgque_fn_depth > 0 && pgque_fn_frames[pgque_fn_depth - 1].flinfo == flinfo)
		{
			pgque_fn_depth--;
			if (event == FHET_END)
				AtEOXact_GUC(true, pgque_fn_frames[pgque_fn_depth].nest);
		}
		return;
	}

	Oid			owner = InvalidOid;
	PgqueFnKind kind = pgque_fn_kind(flinfo->fn_oid, &owner);
	const char *pinned;

	if (kind == FN_VALIDATOR && pqw_handler_call_active)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("a handler may not call a procedural language's validator"),
				 errdetail("It would compile a function under the handler's search_path for every later caller in this process, PgQue's owner included.")));
	/* the function's own search_path (applied already), else the pinned
	 * one; pg_temp named in either, so searched last */
	if (kind == FN_PGQUE_OWN_PATH)
	{
		const char *path = GetConfigOption("search_path", false, false);

		pinned = path != NULL ? psprintf("%s, pg_temp", path) : PQW_PGQUE_FN_SEARCH_PATH;
	}
	else if (kind == FN_PGQUE)
		pinned = PQW_PGQUE_FN_SEARCH_PATH;
	/*
	 * During a handler call, the function of a role whose privileges the
	 * current user lacks (inside a SECURITY DEFINER function the current
	 * user is the definer, not the handler's role; a member of the owning
	 * group role is as good as the owner): its owner's path, or its own SET
	 * path ("$user" in it meant the caller), as path_for_caller spells it
	 */
	else if ((kind == FN_PROCEDURAL || kind == FN_PROCEDURAL_OWN_PATH) &&
			 OidIsValid(pqw_handler_call_role) && owner != GetUserId() &&
			 !has_privs_of_role(GetUserId(), owner))
	{
		const char *own = kind == FN_PROCEDURAL_OWN_PATH ?
			GetConfigOption("search_path", false, false) : NULL;

		pinned = path_for_caller(own != NULL ? own : owner_search_path(owner), owner);
	}
	else
		return;
	/* room first: a START that raises gets no END (recursion deeper than
	 * this stops at max_stack_depth) */
	if (pgque_fn_depth == pgque_fn_room)
	{
		int			room = pgque_fn_room == 0 ? 16 : 2 * pgque_fn_room;

		pgque_fn_frames = pgque_fn_frames == NULL ?
			(PgqueFnFrame *) MemoryContextAlloc(TopMemoryContext, sizeof(PgqueFnFrame) * room) :
			(PgqueFnFrame *) repalloc(pgque_fn_frames, sizeof(PgqueFnFrame) * room);
		pgque_fn_room = room;
	}

	int			nest = NewGUCNestLevel();

	(void) set_config_option("search_path", pinned,
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	/* pushed once nothing above can fail: a START that raises gets no END */
	pgque_fn_frames[pgque_fn_depth].flinfo = flinfo;
	pgque_fn_frames[pgque_fn_depth].nest = nest;
	pgque_fn_depth++;
}

void
pqw_worker_session_init(void)
{
	/* the login role, whatever "role" the database's settings named */
	pqw_worker_roleid = GetSessionUserId();
	prev_check_perms = ExecutorCheckPerms_hook;
	ExecutorCheckPerms_hook = check_pgque_relations;
	prev_utility = ProcessUtility_hook;
	ProcessUtility_hook = check_pgque_utility;
	prev_post_parse_analyze = post_parse_analyze_hook;
	post_parse_analyze_hook = check_pgque_analyzed;
	for (size_t i = 0; i < lengthof(pinned_settings); i++)
		(void) set_config_option(pinned_settings[i][0], pinned_settings[i][1],
								 PGC_SUSET, PGC_S_SESSION, GUC_ACTION_SET, true,
								 WARNING, false);
	if (PQW_TRANSACTION_TIMEOUT_GUC != NULL)
		(void) set_config_option(PQW_TRANSACTION_TIMEOUT_GUC, "0", PGC_SUSET, PGC_S_SESSION,
								 GUC_ACTION_SET, true, WARNING, false);
	(void) set_config_option("pgque_worker.database_paused",
							 database_paused_in_catalog() ? "on" : "off",
							 PGC_SUSET, PGC_S_SESSION, GUC_ACTION_SET, true, WARNING, false);
}

/* The role `run_as` stands for; ERROR when PgQue here is not trusted. */
static Oid
resolve_role(Oid run_as)
{
	if (run_as == PQW_AS_WORKER)
		return pqw_worker_roleid;
	if (run_as == PQW_AS_PGQUE_OWNER)
	{
		PqwTrust	t = pqw_pgque_trust();

		if (t == PQW_TRUST_REFUSED)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("PgQue in database \"%s\" is untrusted: %s",
							get_database_name(MyDatabaseId), pqw_pgque_refusal()),
					 errhint("Every object in schema pgque must belong to the schema's owner (or a superuser): pgque_worker runs PgQue as that owner.")));
		if (t == PQW_TRUST_NO_PGQUE)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_FUNCTION),
					 errmsg("PgQue is not installed in database \"%s\"",
							get_database_name(MyDatabaseId))));
		return pqw_pgque_owner();
	}
	return run_as;
}

/*
 * What PgQue's calls read. PgQue builds queries from its rows: a batch's
 * event tables from its queue's queue_data_pfx, which pgque_admin may
 * UPDATE. Pointed at a view or a table of another role, the query would
 * run that role's code (a view's functions, a row policy) as PgQue's
 * owner. While the workers run PgQue as its owner (not a handler, not our
 * own queries), every relation a query reads or writes must belong to
 * that owner or to a superuser, and have no trigger (PgQue makes none, and
 * pgque_admin holds TRIGGER on its tables); anything else is refused
 * before it runs.
 *
 * The trust check (pqw_pgque_trust) ran when the call began; a statement
 * that then waited for a lock let other sessions commit meanwhile: a
 * trigger created in a transaction that held the lock, or an operator or
 * function in schema pgque that the statement's names now resolve to
 * (PgQue's functions put pgque before pg_catalog in search_path, and
 * pgque_admin may CREATE in the schema). So what each statement PgQue runs
 * uses is checked once its names are resolved and its locks are held:
 * after parse analysis, the owner of every function (operators' and
 * casts' too) and domain it resolved to (before the planner may run or
 * inline one); when the executor starts, the owner and the triggers of
 * every relation of its range table, inheritance children included; and
 * before a TRUNCATE, its tables locked first, as TRUNCATE would, children
 * included. Only the objects used, a cache look-up each: a full trust
 * check per statement after every catalog change (a temporary table's
 * CREATE is one) cost each PgQue call the whole catalog scan.
 * Installed in the workers only (pqw_worker_session_init).
 */
static bool pgque_guard = false;
static Oid	guard_owner = InvalidOid;	/* whom pgque_guard runs PgQue as */
static bool guard_refused = false;	/* the guard raised since the last reset */

bool
pqw_pgque_guard_refused(void)
{
	return guard_refused;
}

void
pqw_pgque_guard_reset(void)
{
	guard_refused = false;
}

/* Objects of trusted roles only: PgQue's owner and superusers. */
static bool
trusted_owner(Oid owner)
{
	return owner == guard_owner || superuser_arg(owner);
}

static void
refuse_object(const char *what, const char *name, Oid owner)
{
	guard_refused = true;
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("PgQue's call would run %s %s, owned by role \"%s\"", what, name,
					GetUserNameFromId(owner, true)),
			 errdetail("pgque_worker runs PgQue as its owner, \"%s\", with code of that owner or of a superuser only.",
					   pqw_pgque_owner_name()),
			 errhint("Every object in schema pgque must belong to the schema's owner (or a superuser).")));
}

/* check_functions_in_node's callback: the function's owner is trusted
 * (else ERROR). */
static bool
untrusted_function(Oid func, void *context)
{
	HeapTuple	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(func));
	Oid			owner;

	(void) context;
	if (!HeapTupleIsValid(tup))
		return false;
	owner = ((Form_pg_proc) GETSTRUCT(tup))->proowner;
	ReleaseSysCache(tup);
	if (!trusted_owner(owner))
		refuse_object("function", format_procedure(func), owner);
	return false;
}

static bool check_relation_owner(Oid relid, bool ereport_on_violation);

/* Every function (operators' and casts' too) and domain an analyzed
 * statement of PgQue's names. */
static bool
check_analyzed_node(Node *node, void *context)
{
	if (node == NULL)
		return false;
	if (IsA(node, Query))
	{
		ListCell   *lc;

		/* its relations (views too) before the planner runs: it folds
		 * the IMMUTABLE functions of a view's quals (found by a review:
		 * a pgque_admin member's view read a role's password hash) */
		foreach(lc, ((Query *) node)->rtable)
		{
			RangeTblEntry *rte = lfirst_node(RangeTblEntry, lc);

			if (rte->rtekind == RTE_RELATION && OidIsValid(rte->relid))
				(void) check_relation_owner(rte->relid, true);
		}
		return query_tree_walker((Query *) node, PQW_WALKER(check_analyzed_node), context, 0);
	}
	(void) check_functions_in_node(node, untrusted_function, context);
	if (IsA(node, CoerceToDomain))
	{
		Oid			domain = ((CoerceToDomain *) node)->resulttype;
		HeapTuple	tup = SearchSysCache1(TYPEOID, ObjectIdGetDatum(domain));

		if (HeapTupleIsValid(tup))
		{
			Oid			owner = ((Form_pg_type) GETSTRUCT(tup))->typowner;

			ReleaseSysCache(tup);
			if (!trusted_owner(owner))
				refuse_object("domain", format_type_be(domain), owner);
		}
	}
	return expression_tree_walker(node, PQW_WALKER(check_analyzed_node), context);
}

/* A trigger a role made on the relation (not a constraint's), or NULL.
 * The statement holds its lock on the relation, so the relcache shows
 * every trigger committed before that lock was granted. */
static char *
user_trigger(Oid relid)
{
	Relation	rel = RelationIdGetRelation(relid);
	char	   *name = NULL;

	if (!RelationIsValid(rel))
		return NULL;
	if (rel->trigdesc != NULL)
		for (int i = 0; i < rel->trigdesc->numtriggers && name == NULL; i++)
			if (!rel->trigdesc->triggers[i].tgisinternal)
				name = pstrdup(rel->trigdesc->triggers[i].tgname);
	RelationClose(rel);
	return name;
}

static bool
check_relation_owner(Oid relid, bool ereport_on_violation)
{
	HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Oid			relowner;
	char	   *trigger = NULL;

	if (!HeapTupleIsValid(tup))
		return true;
	relowner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	if ((relowner == pqw_pgque_owner() || superuser_arg(relowner)) &&
		(trigger = user_trigger(relid)) == NULL)
		return true;
	guard_refused = true;
	if (ereport_on_violation && (relowner == pqw_pgque_owner() || superuser_arg(relowner)))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("PgQue's call would fire trigger \"%s\" of relation \"%s\"",
						trigger, get_rel_name(relid)),
				 errdetail("pgque_worker runs PgQue as its owner, \"%s\", and a trigger would run as that owner; PgQue makes none.",
						   pqw_pgque_owner_name()),
				 errhint("Drop the trigger: any role with TRIGGER on PgQue's tables (pgque_admin) can make one.")));
	if (ereport_on_violation)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("PgQue's call would read relation \"%s\", owned by role \"%s\"",
						get_rel_name(relid), GetUserNameFromId(relowner, true)),
				 errdetail("pgque_worker runs PgQue as its owner, \"%s\", over relations of that owner or of a superuser only.",
						   pqw_pgque_owner_name()),
				 errhint("A queue's storage names (pgque.queue: queue_data_pfx, queue_event_seq, queue_tick_seq) must name PgQue's own tables.")));
	return false;
}

/*
 * Every relation the statement reads or writes, once: those of the
 * permission list (16+: views too), then the range table's relations not
 * in it (on 15 all of them; from 16 on inheritance children).
 */
static bool
check_pgque_relations(PQW_CHECK_PERMS_PARAMS)
{
	ListCell   *lc;

	if (prev_check_perms != NULL && !prev_check_perms(PQW_CHECK_PERMS_ARGS))
		return false;
	if (!pgque_guard)
		return true;
	foreach(lc, PQW_PERM_INFOS)
	{
		Oid			relid = PQW_PERM_INFO_RELID(lfirst(lc));

		if (OidIsValid(relid) && !check_relation_owner(relid, ereport_on_violation))
			return false;
	}
	foreach(lc, rangeTable)
	{
		RangeTblEntry *rte = lfirst_node(RangeTblEntry, lc);

		if (rte->rtekind == RTE_RELATION && PQW_RTE_NOT_IN_PERM_INFOS(rte) &&
			OidIsValid(rte->relid) && !check_relation_owner(rte->relid, ereport_on_violation))
			return false;
	}
	return true;
}

/* Names resolved, before planning (which may run a function, or inline a
 * SQL function's body): every function, operator, cast and domain the
 * statement resolved to must be of PgQue's owner or a superuser. */
static void
check_pgque_analyzed(ParseState *pstate, Query *query, JumbleState *jstate)
{
	if (prev_post_parse_analyze != NULL)
		prev_post_parse_analyze(pstate, query, jstate);
	if (pgque_guard)
		(void) check_analyzed_node((Node *) query, NULL);
}

/*
 * The same for the utility statements PgQue runs on relations it names
 * from its rows: LOCK and TRUNCATE, in its rotation. A TRUNCATE trigger of
 * another role on such a table would run as PgQue's owner.
 */
static void
check_pgque_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
					ProcessUtilityContext context, ParamListInfo params,
					QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	if (pgque_guard)
	{
		Node	   *stmt = pstmt->utilityStmt;
		List	   *rels = NIL;
		ListCell   *lc;

		bool		truncate = IsA(stmt, TruncateStmt);

		if (truncate)
			rels = ((TruncateStmt *) stmt)->relations;
		else if (IsA(stmt, LockStmt))
			rels = ((LockStmt *) stmt)->relations;
		foreach(lc, rels)
		{
			RangeVar   *rv = lfirst_node(RangeVar, lc);
			/* TRUNCATE fires triggers: its tables locked now, as it locks
			 * them, so that none is added before it runs; LOCK fires none */
			Oid			relid = RangeVarGetRelid(rv, truncate ? AccessExclusiveLock : NoLock, true);
			List	   *all;
			ListCell   *lc2;

			if (!OidIsValid(relid))
				continue;
			all = truncate && rv->inh ? find_all_inheritors(relid, AccessExclusiveLock, NULL)
				: list_make1_oid(relid);
			foreach(lc2, all)
				(void) check_relation_owner(lfirst_oid(lc2), true);
		}
	}
	if (prev_utility != NULL)
		prev_utility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params, queryEnv,
								dest, qc);
}

void
pqw_begin_as(Oid role, const char *search_path, PqwAs *as)
{
	Oid			uid = resolve_role(role);

	as->save_guard = pgque_guard;
	as->save_guard_owner = guard_owner;
	pgque_guard = role == PQW_AS_PGQUE_OWNER;
	if (pgque_guard)
		guard_owner = uid;
	GetUserIdAndSecContext(&as->save_uid, &as->save_sec);
	SetUserIdAndSecContext(uid, as->save_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	as->nest = NewGUCNestLevel();
	(void) set_config_option("search_path", search_path, PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	if (role == PQW_AS_WORKER && pqw_lock_timeout_ms > 0)
	{
		char		ms[16];

		snprintf(ms, sizeof(ms), "%d", pqw_lock_timeout_ms);
		(void) set_config_option("lock_timeout", ms, PGC_SUSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
	}
}

void
pqw_end_as(PqwAs *as)
{
	/* false: even a plain SET or set_config(..., false) is undone */
	AtEOXact_GUC(false, as->nest);
	SetUserIdAndSecContext(as->save_uid, as->save_sec);
	pqw_restore_guard(as);
}

void
pqw_restore_guard(const PqwAs *as)
{
	pgque_guard = as->save_guard;
	guard_owner = as->save_guard_owner;
}

void
pqw_capture_error(MemoryContext keep, PqwCallResult *result)
{
	ErrorData  *edata;

	MemoryContextSwitchTo(keep);
	edata = CopyErrorData();
	FlushErrorState();

	result->ok = false;
	result->sqlerrcode = edata->sqlerrcode;
	pqw_strlcpy_text(result->message, edata->message ? edata->message : "unknown error",
			sizeof(result->message));
	result->detail[0] = '\0';
	if (edata->detail)
		pqw_strlcpy_text(result->detail, edata->detail, sizeof(result->detail));
	if (edata->context)
		pqw_strlcpy_text(result->detail,
						 psprintf("%s%s%s", result->detail, result->detail[0] ? "; " : "", edata->context),
						 sizeof(result->detail));
	FreeErrorData(edata);
}

/* Integer value of a result column; false for other types (void, ...). */
static bool
datum_to_int64(Datum d, Oid type, int64 *out)
{
	switch (type)
	{
		case INT8OID:
			*out = DatumGetInt64(d);
			return true;
		case INT4OID:
			*out = DatumGetInt32(d);
			return true;
		case INT2OID:
			*out = DatumGetInt16(d);
			return true;
		case BOOLOID:
			*out = DatumGetBool(d) ? 1 : 0;
			return true;
		default:
			*out = 0;
			return false;
	}
}

/* The statement's kept plan, prepared at its first use. */
static SPIPlanPtr
kept_plan(PqwStatement *stmt, int nargs, Oid *argtypes, int cursor_options)
{
	SPIPlanPtr	plan;

	if (stmt->plan != NULL)
		return stmt->plan;
	plan = SPI_prepare_cursor(stmt->sql, nargs, argtypes, cursor_options);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "SPI_keepplan failed");
	stmt->plan = plan;
	return plan;
}

int
pqw_exec_cached(PqwStatement *stmt, int nargs, Oid *argtypes, Datum *values,
				const char *nulls, bool read_only, long tcount)
{
	return SPI_execute_plan(kept_plan(stmt, nargs, argtypes, 0), values, nulls,
							read_only, tcount);
}

Portal
pqw_cursor_open_cached(const char *name, PqwStatement *stmt, int nargs, Oid *argtypes,
					   Datum *values, int cursor_options)
{
	return SPI_cursor_open(name, kept_plan(stmt, nargs, argtypes, cursor_options),
						   values, NULL, false);
}

typedef struct CallArgs
{
	PqwStatement *stmt;
	int			nargs;
	Oid		   *argtypes;
	Datum	   *values;
	PqwCallResult *result;
} CallArgs;

void
pqw_exec_into(PqwStatement *stmt, int nargs, Oid *argtypes, Datum *values, PqwCallResult *result)
{
	int			rc;

	rc = pqw_exec_cached(stmt, nargs, argtypes, values, NULL, false, 1);
	if (rc < 0)
		elog(ERROR, "SPI_execute_plan failed: %s", SPI_result_code_string(rc));
	result->has_row = false;
	for (int i = 0; i < PQW_MAX_COLS; i++)
		result->isnull[i] = true;
	if (SPI_processed > 0 && SPI_tuptable != NULL)
	{
		TupleDesc	desc = SPI_tuptable->tupdesc;
		HeapTuple	tup = SPI_tuptable->vals[0];
		int			n = desc->natts < PQW_MAX_COLS ? desc->natts : PQW_MAX_COLS;

		result->has_row = true;
		for (int i = 0; i < n; i++)
		{
			bool		isnull;
			Datum		d = SPI_getbinval(tup, desc, i + 1, &isnull);

			result->value[i] = 0;
			/* a column of another type (e.g. void) reads as NULL */
			result->isnull[i] = isnull ||
				!datum_to_int64(d, TupleDescAttr(desc, i)->atttypid, &result->value[i]);
		}
	}
	result->ok = true;
}

bool
pqw_in_subtransaction(PqwTxnFn fn, void *arg, PqwTxnFn on_error, PqwCallResult *result)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	volatile bool ok = false;
	bool		guard = pgque_guard;	/* an error skips the pqw_end_as inside */
	Oid			owner_then = guard_owner;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		fn(arg);
		ReleaseCurrentSubTransaction();
		ok = true;
	}
	PG_CATCH();
	{
		if (on_error)
			on_error(arg);
		pqw_capture_error(cxt, result);
		RollbackAndReleaseCurrentSubTransaction();
		pgque_guard = guard;
		guard_owner = owner_then;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	result->ok = ok;
	return ok;
}

typedef struct ExecInto
{
	PqwStatement *stmt;
	int			nargs;
	Oid		   *argtypes;
	Datum	   *values;
	PqwCallResult *result;
} ExecInto;

static void
exec_into_fn(void *arg)
{
	ExecInto   *e = (ExecInto *) arg;

	pqw_exec_into(e->stmt, e->nargs, e->argtypes, e->values, e->result);
}

bool
pqw_try_exec_into(PqwStatement *stmt, int nargs, Oid *argtypes, Datum *values,
				  PqwCallResult *result)
{
	ExecInto	e;
	bool		ok;

	e.stmt = stmt;
	e.nargs = nargs;
	e.argtypes = argtypes;
	e.values = values;
	e.result = result;
	ok = pqw_in_subtransaction(exec_into_fn, &e, NULL, result);

	/* SPI's tuple table of the subtransaction is gone with it */
	SPI_tuptable = NULL;
	return ok;
}

static void
call_fn(void *arg)
{
	CallArgs   *a = (CallArgs *) arg;

	pqw_exec_into(a->stmt, a->nargs, a->argtypes, a->values, a->result);
}

static bool run_in_transaction(const char *activity, Oid run_as, PqwTxnFn fn, void *arg,
							   int timeout_ms, const char *synchronous_commit, PqwCallResult *result);

static bool
call_in_transaction(PqwStatement *stmt, Oid run_as, int nargs, Oid *argtypes, Datum *values,
					int timeout_ms, const char *synchronous_commit, PqwCallResult *result)
{
	CallArgs	args;

	args.stmt = stmt;
	args.nargs = nargs;
	args.argtypes = argtypes;
	args.values = values;
	args.result = result;
	return run_in_transaction(stmt->sql, run_as, call_fn, &args, timeout_ms, synchronous_commit, result);
}

bool
pqw_call(PqwStatement *stmt, Oid run_as, int nargs, Oid *argtypes, Datum *values,
		 int timeout_ms, PqwCallResult *result)
{
	return call_in_transaction(stmt, run_as, nargs, argtypes, values, timeout_ms, NULL, result);
}

bool
pqw_call_async_commit(PqwStatement *stmt, Oid run_as, int nargs, Oid *argtypes, Datum *values,
					  int timeout_ms, PqwCallResult *result)
{
	return call_in_transaction(stmt, run_as, nargs, argtypes, values, timeout_ms, "off", result);
}

bool
pqw_in_transaction(const char *activity, Oid run_as, PqwTxnFn fn, void *arg,
				   int timeout_ms, const char *synchronous_commit, PqwCallResult *result)
{
	return run_in_transaction(activity, run_as, fn, arg, timeout_ms, synchronous_commit, result);
}

static bool
run_in_transaction(const char *activity, Oid run_as, PqwTxnFn fn, void *arg,
				   int timeout_ms, const char *synchronous_commit, PqwCallResult *result)
{
	MemoryContext volatile keep = CurrentMemoryContext;
	volatile bool ok = false;
	PqwAs		as;

	memset(result, 0, sizeof(*result));
	for (int i = 0; i < PQW_MAX_COLS; i++)
		result->isnull[i] = true;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	pgque_fn_frames_reset();
	PG_TRY();
	{
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, activity);
		debug_query_string = activity;
		/* The transaction's own level, outside pqw_begin_as's: it holds
		 * through the commit and ends with it. */
		if (synchronous_commit != NULL)
			(void) set_config_option("synchronous_commit", synchronous_commit, PGC_SUSET, PGC_S_SESSION,
									 GUC_ACTION_LOCAL, true, 0, false);
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		/* SPI does not arm statement_timeout in a background worker. */
		if (timeout_ms > 0)
			enable_timeout_after(STATEMENT_TIMEOUT, timeout_ms);
		pqw_begin_as(run_as, PQW_PINNED_SEARCH_PATH, &as);
		fn(arg);
		disable_timeout(STATEMENT_TIMEOUT, false);
		SPI_finish();
		PopActiveSnapshot();
		/* Settings undone before the commit (which would keep a SET); the
		 * commit itself still runs as run_as, security-restricted: it may
		 * run that role's code (a holdable cursor's query, a deferred
		 * trigger). An abort restores the user by itself. */
		AtEOXact_GUC(false, as.nest);
		CommitTransactionCommand();
		SetUserIdAndSecContext(as.save_uid, as.save_sec);
		pgque_guard = false;
		ok = true;
	}
	PG_CATCH();
	{
		HOLD_INTERRUPTS();
		pgque_guard = false;
		disable_timeout(STATEMENT_TIMEOUT, false);
		pqw_capture_error(keep, result);
		AbortCurrentTransaction();
		RESUME_INTERRUPTS();
	}
	PG_END_TRY();

	MemoryContextSwitchTo(keep);
	debug_query_string = NULL;
	pgstat_report_activity(STATE_IDLE, NULL);
	pgstat_report_stat(false);
	result->ok = ok;
	return ok;
}
