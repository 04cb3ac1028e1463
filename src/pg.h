/*
 * pg.h: the one place PostgreSQL's C headers enter the C++ build.
 *
 * Files that include this are "PostgreSQL-side": their functions that call
 * PostgreSQL may ereport(ERROR), which longjmps, so they keep no C++ objects
 * with non-trivial destructors on the stack. Files under src/core/ never
 * include it.
 */
#pragma once

extern "C" {
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "access/htup_details.h"
#include "catalog/pg_database.h"
#include "catalog/namespace.h"
#include "commands/dbcommands.h"
#include "commands/defrem.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/procsignal.h"
#include "storage/shmem.h"
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"
#include "utils/typcache.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "catalog/pg_authid.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"
}

/* Version differences (15..18): wrappers named pqw_*. */
#include "pg_compat.h"

/* strlcpy that cuts at a character boundary of the database's encoding: a
 * message cut inside a character would be stored (a nack's reason in
 * pgque.dead_letter, last_error) as text no dump can restore. Raises
 * nothing, allocates nothing (usable under a spinlock). */
static inline void
pqw_strlcpy_text(char *dst, const char *src, size_t size)
{
	size_t		len = strlen(src);
	int			n = len < size ? (int) len : pg_mbcliplen(src, (int) len, (int) size - 1);

	memcpy(dst, src, n);
	dst[n] = '\0';
}

/* Marks symbols PostgreSQL looks up by name (bgworker entry points, SQL
 * functions). */
#define PQW_EXPORT extern "C" PGDLLEXPORT
