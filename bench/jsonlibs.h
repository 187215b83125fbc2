/*
 * jsonlibs.h - what bench/jsonlibs.c shares with bench/jsonlibs_jsonc.c.
 * json-c and jansson both define json_object_get (with different types), so
 * the json-c wrapper lives in a file of its own.
 */
#ifndef KL_BENCH_JSONLIBS_H
#define KL_BENCH_JSONLIBS_H

#include <stddef.h>

#include "consumers/json_field.h"

void jl_jsonc_setup(void);
void jl_jsonc_teardown(void);
/* One record: key/value are NULL-terminated parts; the key's first key_cap bytes are copied. */
kl_jstatus jl_jsonc_extract(const char *rec, size_t n, const char *const *key,
                            const char *const *value, char *key_buf, size_t key_cap,
                            size_t *key_len, double *num);
const char *jl_jsonc_version(void);

#endif
