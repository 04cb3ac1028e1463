/*
 * dispatcher.h: the per-database worker that runs registered handlers on
 * consumed batches.
 */
#pragma once

#include "pg.h"

PQW_EXPORT void pqw_dispatcher_main(Datum main_arg);
