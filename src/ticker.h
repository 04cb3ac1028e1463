/*
 * ticker.h: the per-database worker that calls pgque.ticker() and PgQue's
 * maintenance functions on schedule.
 */
#pragma once

#include "pg.h"

PQW_EXPORT void pqw_ticker_main(Datum main_arg);
