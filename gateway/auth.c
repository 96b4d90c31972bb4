/*
 * auth: the credentials file and the check of one request's credential (see auth.h for
 * the file format, the headers and the scope rules).
 *
 * A JWT is checked in this order, so that nothing unsigned is believed: form (three
 * base64url parts), header (alg must be the configured one, no "crit"), signature
 * (libjwt), then the claims (exp and nbf with the leeway, iss, aud, scopes). An API key
 * is hashed and compared with every configured hash in constant time.
 *
 * It must never keep, log or echo a presented credential, and never read a file named by
 * a request: the only files it reads are the ones the operator's file names, at load.
 */
#include "gateway/auth.h"
#include "orchestrator/log/log.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <jwt.h>
#include <stdarg.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#define AUTH_FILE_MAX ((size_t)1 << 20)
#define KEY_FILE_MAX ((size_t)64 << 10)
#define KEY_MIN 16
#define KEY_MAX 256
#define NAME_MAX_LEN 64
#define TOKEN_MAX 8192
#define HS256_SECRET_MIN 32
#define LEEWAY_DEFAULT 30
#define LEEWAY_MAX 300
#define CLAIM_MAX 64
#define RATE_MAX 1e6

typedef struct {
    char name[NAME_MAX_LEN + 1];
    char hash[65]; /* lower-case hex SHA-256 of the key */
    unsigned scopes;
    double rate, burst;
} api_key_t;

typedef struct {
    bool on;
    jwt_alg_t alg;
    unsigned char *key; /* HS256: the secret; RS256: the PEM public key */
    size_t key_len;
    bool inline_secret;
    char *issuer, *audience; /* NULL: not checked */
    char claim[CLAIM_MAX + 1];
    int64_t leeway;
    bool require_exp;
} jwt_conf_t;

struct sg_auth {
    api_key_t *keys;
    size_t n_keys;
    jwt_conf_t jwt;
    double rate, burst;
};

/* Parses exactly one JSON value from s[0..len): trailing bytes other than whitespace
 * make it NULL, as does anything cJSON refuses. */
static cJSON *parse_whole(const char *s, size_t len)
{
    const char *end = NULL;
    cJSON *doc = cJSON_ParseWithLengthOpts(s, len, &end, false);
    size_t off = doc != NULL && end != NULL && end >= s ? (size_t)(end - s) : len;
    while (off < len && strchr(" \t\r\n", s[off]) != NULL && s[off] != '\0') {
        off++;
    }
    if (off < len) {
        cJSON_Delete(doc);
        return NULL;
    }
    return doc;
}

/* ---- scopes ---- */

static const struct {
    const char *name;
    unsigned bit;
} scopes[] = {
    {"read", SG_SCOPE_READ},
    {"start", SG_SCOPE_START},
    {"operate", SG_SCOPE_OPERATE},
    {"admin", SG_SCOPE_ADMIN},
};

const char *sg_scope_name(unsigned scope)
{
    for (size_t i = 0; i < SG_ARRAY_LEN(scopes); i++) {
        if (scopes[i].bit == scope) {
            return scopes[i].name;
        }
    }
    return "none";
}

bool sg_scope_parse(const char *name, unsigned *out)
{
    for (size_t i = 0; i < SG_ARRAY_LEN(scopes); i++) {
        if (strcmp(scopes[i].name, name) == 0) {
            *out = scopes[i].bit;
            return true;
        }
    }
    return false;
}

unsigned sg_scope_implied(unsigned granted)
{
    if (granted & SG_SCOPE_ADMIN) {
        return SG_SCOPE_ALL;
    }
    if (granted & (SG_SCOPE_START | SG_SCOPE_OPERATE)) {
        granted |= SG_SCOPE_READ;
    }
    return granted & SG_SCOPE_ALL;
}

bool sg_scope_allows(unsigned granted, unsigned need)
{
    return (sg_scope_implied(granted) & need) == need;
}

/* ---- loading the file ---- */

typedef struct {
    const char *name; /* the file, for messages */
    const char *dir;
    char *err;
    size_t errlen;
    sg_err_t rc;
} ctx_t;

static bool fail(ctx_t *c, const char *where, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static bool fail(ctx_t *c, const char *where, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(c->err, c->errlen, "%s: %s%s%s", c->name, where, where[0] ? ": " : "", msg);
    if (c->rc == SG_OK) {
        c->rc = SG_ERR_INVALID;
    }
    return false;
}

/* Every member of obj must be one of allowed (a config map rejects unknown keys). */
static bool only_members(ctx_t *c, const cJSON *obj, const char *where, const char *const *allowed,
                         size_t n)
{
    if (!cJSON_IsObject(obj)) {
        return fail(c, where, "expected an object");
    }
    const cJSON *m;
    cJSON_ArrayForEach(m, obj)
    {
        bool known = false;
        for (size_t i = 0; i < n && !known; i++) {
            known = strcmp(m->string, allowed[i]) == 0;
        }
        if (!known) {
            const char *near = sg_closest(m->string, allowed, n);
            return fail(c, where, "unknown member \"%.64s\"%s%s%s", m->string,
                        near ? " (did you mean \"" : "", near ? near : "", near ? "\"?)" : "");
        }
    }
    return true;
}

static bool number_in(ctx_t *c, const cJSON *v, const char *where, double min, double max,
                      double *out)
{
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= min && v->valuedouble <= max)) {
        return fail(c, where, "expected a number from %g to %g", min, max);
    }
    *out = v->valuedouble;
    return true;
}

static bool parse_rate(ctx_t *c, const cJSON *obj, const char *where, double *rate, double *burst)
{
    static const char *const members[] = {"rate", "burst"};
    char at[96];
    if (!only_members(c, obj, where, members, SG_ARRAY_LEN(members))) {
        return false;
    }
    snprintf(at, sizeof(at), "%s.rate", where);
    if (!number_in(c, cJSON_GetObjectItemCaseSensitive(obj, "rate"), at, 0, RATE_MAX, rate)) {
        return false;
    }
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(obj, "burst");
    snprintf(at, sizeof(at), "%s.burst", where);
    *burst = *rate * 2 >= 1 ? *rate * 2 : 1;
    return b == NULL || number_in(c, b, at, 1, RATE_MAX, burst);
}

static bool valid_name(const char *s)
{
    size_t n = strlen(s);
    for (const char *p = s; *p; p++) {
        if (!(*p >= 'a' && *p <= 'z') && !(*p >= 'A' && *p <= 'Z') && !(*p >= '0' && *p <= '9') &&
            *p != '-' && *p != '_' && *p != '.') {
            return false;
        }
    }
    return n > 0 && n <= NAME_MAX_LEN;
}

static bool parse_scopes(ctx_t *c, const cJSON *arr, const char *where, unsigned *out)
{
    *out = 0;
    if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) == 0) {
        return fail(c, where, "expected a non-empty array of read, start, operate, admin");
    }
    const cJSON *s;
    cJSON_ArrayForEach(s, arr)
    {
        unsigned bit;
        if (!cJSON_IsString(s) || !sg_scope_parse(s->valuestring, &bit)) {
            return fail(c, where, "unknown scope %s%.32s%s (read, start, operate, admin)",
                        cJSON_IsString(s) ? "\"" : "", cJSON_IsString(s) ? s->valuestring : "",
                        cJSON_IsString(s) ? "\"" : "(not a string)");
        }
        *out |= bit;
    }
    return true;
}

static bool parse_key(ctx_t *c, const sg_auth_t *a, const cJSON *obj, size_t idx, api_key_t *k)
{
    static const char *const members[] = {"name", "sha256", "scopes", "rate_limit"};
    char where[48], at[96];
    snprintf(where, sizeof(where), "keys[%zu]", idx);
    if (!only_members(c, obj, where, members, SG_ARRAY_LEN(members))) {
        return false;
    }
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(obj, "name");
    const cJSON *hash = cJSON_GetObjectItemCaseSensitive(obj, "sha256");
    if (!cJSON_IsString(name) || !valid_name(name->valuestring)) {
        return fail(c, where, "\"name\" must be 1 to %d of A-Z a-z 0-9 - _ .", NAME_MAX_LEN);
    }
    snprintf(k->name, sizeof(k->name), "%s", name->valuestring);
    bool hex = cJSON_IsString(hash) && strlen(hash->valuestring) == 64;
    for (size_t i = 0; hex && i < 64; i++) {
        char ch = hash->valuestring[i];
        hex = (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F');
        k->hash[i] = (char)(ch >= 'A' && ch <= 'F' ? ch - 'A' + 'a' : ch);
    }
    k->hash[64] = '\0';
    if (!hex) {
        return fail(c, where, "\"sha256\" must be 64 hex digits (make it with sagad --hash-key)");
    }
    for (size_t i = 0; i < a->n_keys; i++) {
        if (strcmp(a->keys[i].name, k->name) == 0) {
            return fail(c, where, "a second key named \"%s\"", k->name);
        }
        if (strcmp(a->keys[i].hash, k->hash) == 0) {
            return fail(c, where, "the same key as \"%s\"", a->keys[i].name);
        }
    }
    snprintf(at, sizeof(at), "%s.scopes", where);
    if (!parse_scopes(c, cJSON_GetObjectItemCaseSensitive(obj, "scopes"), at, &k->scopes)) {
        return false;
    }
    k->scopes = sg_scope_implied(k->scopes);
    const cJSON *rl = cJSON_GetObjectItemCaseSensitive(obj, "rate_limit");
    snprintf(at, sizeof(at), "%s.rate_limit", where);
    k->rate = a->rate;
    k->burst = a->burst;
    return rl == NULL || parse_rate(c, rl, at, &k->rate, &k->burst);
}

static bool parse_keys(ctx_t *c, sg_auth_t *a, const cJSON *arr)
{
    if (arr == NULL) {
        return true;
    }
    if (!cJSON_IsArray(arr)) {
        return fail(c, "keys", "expected an array");
    }
    size_t n = (size_t)cJSON_GetArraySize(arr);
    a->keys = n > 0 ? sg_calloc(n, sizeof(*a->keys)) : NULL;
    if (n > 0 && a->keys == NULL) {
        c->rc = SG_ERR_NOMEM;
        return fail(c, "keys", "out of memory");
    }
    const cJSON *k;
    cJSON_ArrayForEach(k, arr)
    {
        if (!parse_key(c, a, k, a->n_keys, &a->keys[a->n_keys])) {
            return false;
        }
        a->n_keys++;
    }
    return true;
}

/* Reads a file the operator named (relative to the credentials file's folder). */
static bool read_named_file(ctx_t *c, const char *where, const char *file, unsigned char **out,
                            size_t *len)
{
    char *path = file[0] == '/' ? sg_strdup(file) : sg_asprintf("%s/%s", c->dir, file);
    char *data = NULL;
    sg_err_t rc = path != NULL ? sg_file_read(path, KEY_FILE_MAX, &data, len) : SG_ERR_NOMEM;
    if (rc != SG_OK) {
        c->rc = rc == SG_ERR_NOMEM ? SG_ERR_NOMEM : rc == SG_ERR_LIMIT ? SG_ERR_INVALID : SG_ERR_IO;
        fail(c, where, "cannot read %s: %s", path != NULL ? path : file, sg_strerror(rc));
        sg_free(path);
        return false;
    }
    sg_free(path);
    *out = (unsigned char *)data;
    return true;
}

static bool opt_string(ctx_t *c, const cJSON *obj, const char *key, char **out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    char where[48];
    snprintf(where, sizeof(where), "jwt.%s", key);
    if (v == NULL) {
        return true;
    }
    if (!cJSON_IsString(v) || v->valuestring[0] == '\0' || strlen(v->valuestring) > 1024) {
        return fail(c, where, "expected a non-empty string");
    }
    *out = sg_strdup(v->valuestring);
    if (*out == NULL) {
        c->rc = SG_ERR_NOMEM;
        return fail(c, where, "out of memory");
    }
    return true;
}

/* HS256: "secret" or "secret_file" (at least 32 bytes); RS256: "public_key_file". */
static bool parse_jwt_key(ctx_t *c, jwt_conf_t *j, const cJSON *obj)
{
    const cJSON *secret = cJSON_GetObjectItemCaseSensitive(obj, "secret");
    const cJSON *sfile = cJSON_GetObjectItemCaseSensitive(obj, "secret_file");
    const cJSON *pfile = cJSON_GetObjectItemCaseSensitive(obj, "public_key_file");
    if (j->alg == JWT_ALG_RS256) {
        if (secret != NULL || sfile != NULL || !cJSON_IsString(pfile)) {
            return fail(c, "jwt", "RS256 takes \"public_key_file\" (a PEM public key) only");
        }
        if (!read_named_file(c, "jwt.public_key_file", pfile->valuestring, &j->key, &j->key_len)) {
            return false;
        }
        if (strstr((const char *)j->key, "-----BEGIN PUBLIC KEY-----") == NULL) {
            return fail(c, "jwt.public_key_file", "expected a PEM \"BEGIN PUBLIC KEY\" block%s",
                        strstr((const char *)j->key, "PRIVATE") ? " (never the private key)" : "");
        }
        return true;
    }
    if (pfile != NULL || (secret != NULL) == (sfile != NULL)) {
        return fail(c, "jwt", "HS256 takes one of \"secret\" or \"secret_file\"");
    }
    if (secret != NULL) {
        if (!cJSON_IsString(secret)) {
            return fail(c, "jwt.secret", "expected a string");
        }
        j->key = (unsigned char *)sg_strdup(secret->valuestring);
        j->key_len = strlen(secret->valuestring);
        j->inline_secret = true;
        if (j->key == NULL) {
            c->rc = SG_ERR_NOMEM;
            return fail(c, "jwt.secret", "out of memory");
        }
    } else if (!cJSON_IsString(sfile)) {
        return fail(c, "jwt.secret_file", "expected a file name");
    } else if (!read_named_file(c, "jwt.secret_file", sfile->valuestring, &j->key, &j->key_len)) {
        return false;
    }
    while (j->key_len > 0 && (j->key[j->key_len - 1] == '\n' || j->key[j->key_len - 1] == '\r')) {
        j->key[--j->key_len] = '\0'; /* a file written by echo ends in a newline */
    }
    if (j->key_len < HS256_SECRET_MIN) {
        return fail(c, secret != NULL ? "jwt.secret" : "jwt.secret_file",
                    "an HS256 secret needs at least %d bytes", HS256_SECRET_MIN);
    }
    return true;
}

static bool parse_jwt(ctx_t *c, jwt_conf_t *j, const cJSON *obj)
{
    static const char *const members[] = {"algorithm",       "secret", "secret_file",
                                          "public_key_file", "issuer", "audience",
                                          "scope_claim",     "leeway", "require_exp"};
    if (obj == NULL) {
        return true;
    }
    if (!only_members(c, obj, "jwt", members, SG_ARRAY_LEN(members))) {
        return false;
    }
    const cJSON *alg = cJSON_GetObjectItemCaseSensitive(obj, "algorithm");
    if (!cJSON_IsString(alg) ||
        (strcmp(alg->valuestring, "HS256") != 0 && strcmp(alg->valuestring, "RS256") != 0)) {
        return fail(c, "jwt.algorithm", "expected \"HS256\" or \"RS256\"");
    }
    j->on = true;
    j->alg = strcmp(alg->valuestring, "HS256") == 0 ? JWT_ALG_HS256 : JWT_ALG_RS256;
    if (!parse_jwt_key(c, j, obj) || !opt_string(c, obj, "issuer", &j->issuer) ||
        !opt_string(c, obj, "audience", &j->audience)) {
        return false;
    }
    const cJSON *claim = cJSON_GetObjectItemCaseSensitive(obj, "scope_claim");
    if (claim != NULL && (!cJSON_IsString(claim) || !valid_name(claim->valuestring))) {
        return fail(c, "jwt.scope_claim", "expected a claim name of A-Z a-z 0-9 - _ .");
    }
    snprintf(j->claim, sizeof(j->claim), "%s", claim != NULL ? claim->valuestring : "scope");
    double leeway = LEEWAY_DEFAULT;
    const cJSON *lw = cJSON_GetObjectItemCaseSensitive(obj, "leeway");
    if (lw != NULL && !number_in(c, lw, "jwt.leeway", 0, LEEWAY_MAX, &leeway)) {
        return false;
    }
    j->leeway = (int64_t)leeway;
    const cJSON *req = cJSON_GetObjectItemCaseSensitive(obj, "require_exp");
    if (req != NULL && !cJSON_IsBool(req)) {
        return fail(c, "jwt.require_exp", "expected true or false");
    }
    j->require_exp = req == NULL || cJSON_IsTrue(req);
    return true;
}

sg_err_t sg_auth_parse(const char *text, size_t len, const char *name, const char *dir,
                       sg_auth_t **out, char *err, size_t errlen)
{
    static const char *const members[] = {"keys", "jwt", "rate_limit"};
    ctx_t c = {.name = name, .dir = dir != NULL ? dir : ".", .err = err, .errlen = errlen};
    *out = NULL;
    sg_auth_t *a = sg_calloc(1, sizeof(*a));
    cJSON *doc = a != NULL ? parse_whole(text, len) : NULL;
    if (a == NULL) {
        snprintf(err, errlen, "%s: out of memory", name);
        return SG_ERR_NOMEM;
    }
    a->rate = SG_AUTH_DEFAULT_RATE;
    a->burst = SG_AUTH_DEFAULT_BURST;
    const cJSON *rl = cJSON_GetObjectItemCaseSensitive(doc, "rate_limit");
    if (doc == NULL) {
        fail(&c, "", "not valid JSON");
    } else if (only_members(&c, doc, "", members, SG_ARRAY_LEN(members)) &&
               (rl == NULL || parse_rate(&c, rl, "rate_limit", &a->rate, &a->burst)) &&
               parse_keys(&c, a, cJSON_GetObjectItemCaseSensitive(doc, "keys")) &&
               parse_jwt(&c, &a->jwt, cJSON_GetObjectItemCaseSensitive(doc, "jwt")) &&
               a->n_keys == 0 && !a->jwt.on) {
        fail(&c, "",
             "no credentials: add \"keys\" or \"jwt\" (or run without --auth, "
             "on loopback only)");
    }
    cJSON_Delete(doc);
    if (c.rc != SG_OK) {
        sg_auth_free(a);
        return c.rc;
    }
    *out = a;
    return SG_OK;
}

sg_err_t sg_auth_load(const char *path, sg_auth_t **out, char *err, size_t errlen)
{
    *out = NULL;
    char *text = NULL;
    size_t len = 0;
    sg_err_t rc = sg_file_read(path, AUTH_FILE_MAX, &text, &len);
    if (rc != SG_OK) {
        snprintf(err, errlen, "%s: cannot read: %s", path, sg_strerror(rc));
        return rc == SG_ERR_NOMEM ? rc : rc == SG_ERR_LIMIT ? SG_ERR_INVALID : SG_ERR_IO;
    }
    const char *slash = strrchr(path, '/');
    char *dir = slash != NULL ? sg_strndup(path, (size_t)(slash - path + (slash == path))) : NULL;
    if (slash != NULL && dir == NULL) {
        snprintf(err, errlen, "%s: out of memory", path);
        rc = SG_ERR_NOMEM;
    } else {
        rc = sg_auth_parse(text != NULL ? text : "", len, path, dir, out, err, errlen);
    }
    struct stat sb;
    if (rc == SG_OK && (*out)->jwt.inline_secret && stat(path, &sb) == 0 && (sb.st_mode & 077)) {
        sg_log(SG_LOG_WARN, NULL,
               "%s holds a JWT secret and can be read by other users: chmod 600 it", path);
    }
    sg_free(dir);
    sg_free(text);
    return rc;
}

void sg_auth_free(sg_auth_t *a)
{
    if (a == NULL) {
        return;
    }
    if (a->jwt.key != NULL) {
        memset(a->jwt.key, 0, a->jwt.key_len);
    }
    sg_free(a->jwt.key);
    sg_free(a->jwt.issuer);
    sg_free(a->jwt.audience);
    sg_free(a->keys);
    sg_free(a);
}

void sg_auth_describe(const sg_auth_t *a, char *out, size_t outlen)
{
    snprintf(out, outlen, "%zu API key%s, %s%s", a->n_keys, a->n_keys == 1 ? "" : "s",
             a->jwt.on ? "JWT " : "no JWT",
             !a->jwt.on                    ? ""
             : a->jwt.alg == JWT_ALG_HS256 ? "HS256"
                                           : "RS256");
}

/* ---- checking a request ---- */

static sg_auth_verdict_t verdict(sg_auth_caller_t *who, sg_auth_verdict_t v, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static sg_auth_verdict_t verdict(sg_auth_caller_t *who, sg_auth_verdict_t v, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(who->detail, sizeof(who->detail), fmt, ap);
    va_end(ap);
    return v;
}

static bool token68_char(char ch, bool dot)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '-' || ch == '_' || ch == '~' || ch == '+' || ch == '/' || ch == '=' ||
           (dot && ch == '.');
}

bool sg_auth_key_valid(const char *key)
{
    size_t n = 0;
    for (const char *p = key; *p; p++, n++) {
        if (n >= KEY_MAX || !token68_char(*p, false)) {
            return false;
        }
    }
    return n >= KEY_MIN;
}

/* Constant time in n: the time does not depend on where the strings differ. */
static bool ct_equal(const char *a, const char *b, size_t n)
{
    volatile unsigned char diff = 0;
    for (size_t i = 0; i < n; i++) {
        diff |= (unsigned char)(a[i] ^ b[i]);
    }
    return diff == 0;
}

static sg_auth_verdict_t check_key(const sg_auth_t *a, const char *key, sg_auth_caller_t *who)
{
    if (!sg_auth_key_valid(key)) {
        return verdict(who, SG_AUTH_MALFORMED,
                       "an API key is %d to %d characters of A-Z a-z 0-9 - _ ~ + / =", KEY_MIN,
                       KEY_MAX);
    }
    if (a->n_keys == 0) {
        return verdict(who, SG_AUTH_INVALID, "API keys are not accepted here");
    }
    char hash[65];
    sg_sha256_hex(key, strlen(key), hash);
    /* Every hash is compared, whichever matches, so the time says nothing about which. */
    size_t found = a->n_keys;
    for (size_t i = 0; i < a->n_keys; i++) {
        if (ct_equal(hash, a->keys[i].hash, 64)) {
            found = i;
        }
    }
    if (found == a->n_keys) {
        return verdict(who, SG_AUTH_INVALID, "unknown API key");
    }
    const api_key_t *k = &a->keys[found];
    who->scopes = k->scopes;
    who->rate = k->rate;
    who->burst = k->burst;
    snprintf(who->principal, sizeof(who->principal), "key:%s", k->name);
    return SG_AUTH_OK;
}

static int b64url_value(char ch)
{
    if (ch >= 'A' && ch <= 'Z') {
        return ch - 'A';
    }
    if (ch >= 'a' && ch <= 'z') {
        return ch - 'a' + 26;
    }
    if (ch >= '0' && ch <= '9') {
        return ch - '0' + 52;
    }
    return ch == '-' ? 62 : ch == '_' ? 63 : -1;
}

/* One unpadded base64url part as a JSON object, or NULL (not base64url, not an object). */
static cJSON *b64url_json(const char *s, size_t len)
{
    if (len == 0 || len % 4 == 1) {
        return NULL;
    }
    char *plain = sg_malloc(len);
    size_t o = 0;
    uint32_t acc = 0;
    for (size_t i = 0; plain != NULL && i < len; i++) {
        int v = b64url_value(s[i]);
        if (v < 0) {
            sg_free(plain);
            return NULL;
        }
        acc = (acc << 6) | (uint32_t)v;
        if (i % 4 == 3) {
            plain[o++] = (char)(acc >> 16);
            plain[o++] = (char)(acc >> 8);
            plain[o++] = (char)acc;
        }
    }
    if (plain != NULL && len % 4 == 2) {
        plain[o++] = (char)(acc >> 4);
    } else if (plain != NULL && len % 4 == 3) {
        plain[o++] = (char)(acc >> 10);
        plain[o++] = (char)(acc >> 2);
    }
    cJSON *doc = plain != NULL ? parse_whole(plain, o) : NULL;
    sg_free(plain);
    if (!cJSON_IsObject(doc)) {
        cJSON_Delete(doc);
        return NULL;
    }
    return doc;
}

static const char *alg_name(jwt_alg_t alg)
{
    return alg == JWT_ALG_HS256 ? "HS256" : "RS256";
}

/* The header: the configured alg exactly (so never "none", never HS256 made with the
 * RS256 public key as its secret), a JWT typ if any, and no critical extensions. */
static sg_auth_verdict_t check_header(const jwt_conf_t *j, const cJSON *head, sg_auth_caller_t *who)
{
    const cJSON *alg = cJSON_GetObjectItemCaseSensitive(head, "alg");
    const cJSON *typ = cJSON_GetObjectItemCaseSensitive(head, "typ");
    if (!cJSON_IsString(alg)) {
        return verdict(who, SG_AUTH_MALFORMED, "the token header has no alg");
    }
    if (strcmp(alg->valuestring, alg_name(j->alg)) != 0) {
        return verdict(who, SG_AUTH_INVALID, "the token is signed with %.16s, not %s",
                       alg->valuestring, alg_name(j->alg));
    }
    if (typ != NULL && (!cJSON_IsString(typ) || strcasecmp(typ->valuestring, "JWT") != 0)) {
        return verdict(who, SG_AUTH_INVALID, "the token's typ is not JWT");
    }
    if (cJSON_GetObjectItemCaseSensitive(head, "crit") != NULL) {
        return verdict(who, SG_AUTH_INVALID, "the token has critical extensions");
    }
    return SG_AUTH_OK;
}

/* A NumericDate claim: absent (false, *present false), a number, or malformed. */
static bool time_claim(const cJSON *claims, const char *name, bool *present, int64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(claims, name);
    *present = v != NULL;
    if (v == NULL) {
        return true;
    }
    if (!cJSON_IsNumber(v) || !(v->valuedouble > -1e15 && v->valuedouble < 1e15)) {
        return false;
    }
    *out = (int64_t)v->valuedouble;
    return true;
}

static bool audience_ok(const cJSON *aud, const char *want)
{
    if (cJSON_IsString(aud)) {
        return strcmp(aud->valuestring, want) == 0;
    }
    if (!cJSON_IsArray(aud)) {
        return false;
    }
    const cJSON *e;
    cJSON_ArrayForEach(e, aud)
    {
        if (cJSON_IsString(e) && strcmp(e->valuestring, want) == 0) {
            return true;
        }
    }
    return false;
}

/* The scope claim: "read start" (OAuth 2) or ["read", "start"]; unknown names are
 * scopes of other services and are ignored. */
static bool claim_scopes(const cJSON *v, unsigned *out)
{
    *out = 0;
    if (cJSON_IsString(v)) {
        const char *p = v->valuestring;
        while (*p) {
            size_t n = strcspn(p, " ");
            char word[16];
            unsigned bit;
            if (n > 0 && n < sizeof(word)) {
                memcpy(word, p, n);
                word[n] = '\0';
                *out |= sg_scope_parse(word, &bit) ? bit : 0;
            }
            p += n + (p[n] == ' ');
        }
        return true;
    }
    if (v != NULL && !cJSON_IsArray(v)) {
        return false;
    }
    const cJSON *e;
    cJSON_ArrayForEach(e, v)
    {
        unsigned bit;
        if (cJSON_IsString(e) && sg_scope_parse(e->valuestring, &bit)) {
            *out |= bit;
        }
    }
    return true;
}

static sg_auth_verdict_t check_claims(const sg_auth_t *a, const cJSON *claims, int64_t now,
                                      sg_auth_caller_t *who)
{
    const jwt_conf_t *j = &a->jwt;
    bool has_exp, has_nbf;
    int64_t exp = 0, nbf = 0;
    if (!time_claim(claims, "exp", &has_exp, &exp) || !time_claim(claims, "nbf", &has_nbf, &nbf)) {
        return verdict(who, SG_AUTH_MALFORMED, "exp and nbf must be numbers");
    }
    if (!has_exp && j->require_exp) {
        return verdict(who, SG_AUTH_INVALID, "the token has no exp");
    }
    if (has_exp && now > exp + j->leeway) {
        return verdict(who, SG_AUTH_EXPIRED, "the token expired %lld s ago",
                       (long long)(now - exp));
    }
    if (has_nbf && now + j->leeway < nbf) {
        return verdict(who, SG_AUTH_INVALID, "the token is not valid for another %lld s",
                       (long long)(nbf - now));
    }
    const cJSON *iss = cJSON_GetObjectItemCaseSensitive(claims, "iss");
    if (j->issuer != NULL && (!cJSON_IsString(iss) || strcmp(iss->valuestring, j->issuer) != 0)) {
        return verdict(who, SG_AUTH_INVALID, "the token's issuer is not %.64s", j->issuer);
    }
    if (j->audience != NULL &&
        !audience_ok(cJSON_GetObjectItemCaseSensitive(claims, "aud"), j->audience)) {
        return verdict(who, SG_AUTH_INVALID, "the token is not for audience %.64s", j->audience);
    }
    unsigned granted;
    if (!claim_scopes(cJSON_GetObjectItemCaseSensitive(claims, j->claim), &granted)) {
        return verdict(who, SG_AUTH_MALFORMED, "the %s claim must be a string or an array",
                       j->claim);
    }
    who->scopes = sg_scope_implied(granted);
    who->rate = a->rate;
    who->burst = a->burst;
    const cJSON *sub = cJSON_GetObjectItemCaseSensitive(claims, "sub");
    const char *s = cJSON_IsString(sub) ? sub->valuestring : "";
    size_t n = (size_t)snprintf(who->principal, sizeof(who->principal), "jwt:%s", s);
    for (size_t i = 4; i < n && i < sizeof(who->principal) - 1; i++) {
        char ch = who->principal[i];
        who->principal[i] = ch > 0x20 && ch < 0x7f ? ch : '?'; /* it goes into log lines */
    }
    return SG_AUTH_OK;
}

static sg_auth_verdict_t check_jwt(const sg_auth_t *a, const char *token, int64_t now,
                                   sg_auth_caller_t *who)
{
    const jwt_conf_t *j = &a->jwt;
    if (!j->on) {
        return verdict(who, SG_AUTH_INVALID, "bearer tokens (JWT) are not accepted here");
    }
    const char *dot1 = strchr(token, '.');
    const char *dot2 = dot1 != NULL ? strchr(dot1 + 1, '.') : NULL;
    size_t len = strlen(token);
    if (dot2 == NULL || strchr(dot2 + 1, '.') != NULL || dot1 == token || dot2 == dot1 + 1 ||
        dot2[1] == '\0' || len > TOKEN_MAX) {
        return verdict(who, SG_AUTH_MALFORMED, "not a signed JWT (three base64url parts)");
    }
    cJSON *head = b64url_json(token, (size_t)(dot1 - token));
    cJSON *claims = head != NULL ? b64url_json(dot1 + 1, (size_t)(dot2 - dot1 - 1)) : NULL;
    sg_auth_verdict_t v =
        claims == NULL ? verdict(who, SG_AUTH_MALFORMED, "the token's parts are not base64url JSON")
                       : check_header(j, head, who);
    if (v == SG_AUTH_OK) {
        jwt_t *jwt = NULL;
        int rc = jwt_decode(&jwt, token, j->key, (int)j->key_len);
        if (rc == ENOMEM) {
            v = verdict(who, SG_AUTH_INVALID, "out of memory checking the token");
        } else if (rc != 0 || jwt == NULL || jwt_get_alg(jwt) != j->alg) {
            v = verdict(who, SG_AUTH_INVALID, "the token's signature does not verify");
        } else {
            v = check_claims(a, claims, now, who);
        }
        jwt_free(jwt);
    }
    cJSON_Delete(head);
    cJSON_Delete(claims);
    return v;
}

sg_auth_verdict_t sg_auth_check(const sg_auth_t *a, const char *authorization, const char *api_key,
                                int64_t now_s, sg_auth_caller_t *who)
{
    memset(who, 0, sizeof(*who));
    if (authorization == NULL && api_key == NULL) {
        return verdict(who, SG_AUTH_MISSING,
                       "this route needs credentials: Authorization: Bearer <token or API key>, "
                       "or X-API-Key");
    }
    if (authorization != NULL && api_key != NULL) {
        return verdict(who, SG_AUTH_MALFORMED, "send one credential: Authorization or X-API-Key");
    }
    if (api_key != NULL) {
        return check_key(a, api_key, who);
    }
    const char *p = authorization;
    while (*p == ' ') {
        p++;
    }
    if (strncasecmp(p, "Bearer ", 7) != 0) {
        return verdict(who, SG_AUTH_MALFORMED, "expected Authorization: Bearer <credential>");
    }
    p += 7;
    while (*p == ' ') {
        p++;
    }
    size_t n = strlen(p);
    if (n == 0 || n > TOKEN_MAX) {
        return verdict(who, SG_AUTH_MALFORMED, "an empty or oversized bearer credential");
    }
    for (size_t i = 0; i < n; i++) {
        if (!token68_char(p[i], true)) {
            return verdict(who, SG_AUTH_MALFORMED, "a bearer credential is base64url or token68");
        }
    }
    return strchr(p, '.') != NULL ? check_jwt(a, p, now_s, who) : check_key(a, p, who);
}

/* ---- sagad --hash-key ---- */

int sg_auth_hash_key_cli(FILE *in, FILE *out, FILE *errout)
{
    char key[KEY_MAX + 4];
    size_t n = fread(key, 1, sizeof(key) - 1, in);
    key[n] = '\0';
    if (n > 0 && key[n - 1] == '\n') {
        key[--n] = '\0';
    }
    if (n > 0 && key[n - 1] == '\r') {
        key[--n] = '\0';
    }
    bool ok = strlen(key) == n && sg_auth_key_valid(key);
    if (!ok) {
        fprintf(errout,
                "sagad: --hash-key reads one API key on stdin: %d to %d characters of "
                "A-Z a-z 0-9 - _ ~ + / = (e.g. openssl rand -hex 32)\n",
                KEY_MIN, KEY_MAX);
        memset(key, 0, sizeof(key));
        return 2;
    }
    char hash[65];
    sg_sha256_hex(key, n, hash);
    memset(key, 0, sizeof(key));
    fprintf(out, "%s\n", hash);
    return 0;
}
