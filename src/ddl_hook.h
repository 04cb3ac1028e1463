/*
 * ddl_hook.h: keeps pgque_worker out of the way of database-level DDL.
 */
#pragma once

#include "pg.h"

/* Installs the ProcessUtility hook; called from _PG_init. */
void		pqw_ddl_hook_install(void);
