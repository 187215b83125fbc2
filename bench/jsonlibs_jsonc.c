/*
 * jsonlibs_jsonc.c - the json-c wrapper of kappalog-jsonlibs (bench/jsonlibs.c
 * says what is measured). One tokener, reused with json_tokener_reset, in
 * strict mode with UTF-8 validation and the views' nesting limit; strict
 * mode refuses trailing bytes other than whitespace by itself.
 */
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "jsonlibs.h"

static struct json_tokener *g_tok;

void jl_jsonc_setup(void) {
    g_tok = json_tokener_new_ex(KL_JSON_MAX_NESTING);
    if (!g_tok)
        abort();
    json_tokener_set_flags(g_tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
}

void jl_jsonc_teardown(void) {
    json_tokener_free(g_tok);
    g_tok = NULL;
}

const char *jl_jsonc_version(void) {
    return json_c_version();
}

static struct json_object *walk(struct json_object *v, const char *const *parts) {
    for (int i = 0; v && parts[i]; i++)
        if (!json_object_is_type(v, json_type_object) ||
            !json_object_object_get_ex(v, parts[i], &v))
            return NULL;
    return v;
}

static int only_space(const char *p, const char *end) {
    for (; p < end; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
            return 0;
    return 1;
}

kl_jstatus jl_jsonc_extract(const char *rec, size_t n, const char *const *key,
                            const char *const *value, char *key_buf, size_t key_cap,
                            size_t *key_len, double *num) {
    json_tokener_reset(g_tok);
    struct json_object *root = json_tokener_parse_ex(g_tok, rec, (int)n);
    if (!root)
        return KL_JSON_INVALID; /* also json_tokener_continue: the record is cut short */
    kl_jstatus st = KL_JSON_INVALID;
    if (!only_space(rec + json_tokener_get_parse_end(g_tok), rec + n) ||
        !json_object_is_type(root, json_type_object))
        goto out;
    struct json_object *k = walk(root, key), *v = NULL;
    st = !k                                         ? KL_JSON_MISSING
         : json_object_is_type(k, json_type_string) ? KL_JSON_OK
                                                    : KL_JSON_BAD_KEY;
    if (st != KL_JSON_OK)
        goto out;
    *key_len = (size_t)json_object_get_string_len(k);
    memcpy(key_buf, json_object_get_string(k), *key_len < key_cap ? *key_len : key_cap);
    v = walk(root, value);
    st = !v ? KL_JSON_MISSING
         : json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double)
             ? KL_JSON_OK
             : KL_JSON_NOT_NUMBER;
    if (st == KL_JSON_OK)
        *num = json_object_get_double(v);
out:
    json_object_put(root);
    return st;
}
