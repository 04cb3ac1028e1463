/*
 * trust.h: may pgque_worker call the PgQue of this database, and as whom?
 *
 * PgQue is plain SQL in schema pgque: whoever owns that schema (or an
 * object in it) can replace the code the workers call. So every PgQue call
 * runs as the owner of schema pgque, security-restricted (spi_txn.h,
 * PQW_AS_PGQUE_OWNER), and a database whose PgQue objects belong to
 * anyone else than that owner or a superuser is refused: nothing is called
 * there. The answer is kept per process and looked at again only after a
 * catalog change (syscache invalidation), so checking costs nothing per call.
 */
#pragma once

#include "pg.h"

typedef enum PqwTrust
{
	PQW_TRUST_NO_PGQUE = 0,		/* no (complete) PgQue here */
	PQW_TRUST_OK,				/* PgQue calls run as pqw_pgque_owner() */
	PQW_TRUST_REFUSED			/* objects of other owners: call nothing */
} PqwTrust;

/* Inside a transaction with SPI connected, as the worker's role. */
PqwTrust	pqw_pgque_trust(void);

/* The owner of schema pgque, as last checked (valid when trusted). */
Oid			pqw_pgque_owner(void);

/* Its name (usable outside a transaction). */
const char *pqw_pgque_owner_name(void);

/* Why PgQue here was refused, as last checked ("" otherwise). */
const char *pqw_pgque_refusal(void);

/* Inside a transaction: the relation nspname.relname if extension
 * `extname` made it, else InvalidOid. A hand-made schema and table of the
 * same names are not the extension's: only pg_depend says so. */
Oid			pqw_extension_relation(const char *extname, const char *nspname,
								   const char *relname);

/* Inside a transaction: finds our registry table (pgque_worker_internal.
 * handler, if our extension made it; else InvalidOid) into *rel and locks
 * it for reading, without waiting. NULL if done, else what could not be
 * read without waiting: the table, or a catalog that says whose it is
 * (pg_depend, pg_extension: every role can name those). A lock conflicts
 * if it is ACCESS EXCLUSIVE, held or queued: any role that can name a
 * relation can queue one (CREATE RULE requests it before it checks
 * ownership), and it holds up every reader after it. */
const char *pqw_lock_registry(Oid *rel);

/* SQL: the registrations are those of database `datid` (an SQL
 * expression), not copied from another database by CREATE DATABASE ...
 * TEMPLATE (a table of pqw_lock_registry's extension: read after it). */
#define PQW_HOME_IS(datid) \
	"exists (select 1 from pgque_worker_internal.home home" \
	" where home.datid operator(pg_catalog.=) " datid ")"
#define PQW_HOME_IS_HERE_SQL \
	"select " PQW_HOME_IS("(select d.oid from pg_catalog.pg_database d" \
						  " where d.datname operator(pg_catalog.=) pg_catalog.current_database())")

/* _PG_init: catalog changes make the next call check again. */
void		pqw_trust_install(void);
