/*
 * auth: who is calling the REST gateway, and what they may do. It loads the credentials
 * file of `sagad --auth FILE` (API keys stored as SHA-256 hashes, and one JWT verifier:
 * HS256 with a shared secret or RS256 with a public key, checked with libjwt) and
 * checks the credential a request carries:
 *
 *   Authorization: Bearer <JWT>       three base64url parts separated by dots
 *   Authorization: Bearer <API key>   no dot: an API key
 *   X-API-Key: <API key>
 *
 * Scopes: read (workflows, instances, history), start (start sagas), operate (cancel,
 * retry), admin (everything). Implications: admin implies every scope; start and operate
 * each imply read (a caller that starts or repairs a saga must be able to look at it);
 * start and operate do not imply each other.
 *
 * The file (JSON; unknown members are errors; relative paths are relative to the file):
 *   {
 *     "keys": [ {"name": "ci", "sha256": "<64 hex digits, `sagad --hash-key`>",
 *                "scopes": ["start"], "rate_limit": {"rate": 5, "burst": 10}} ],
 *     "jwt": {"algorithm": "RS256", "public_key_file": "jwt.pub.pem",
 *             "issuer": "https://idp.example", "audience": "sagad",
 *             "scope_claim": "scope", "leeway": 30, "require_exp": true},
 *     "rate_limit": {"rate": 100, "burst": 200}
 *   }
 * HS256 takes "secret" (at least 32 bytes) or "secret_file" instead of public_key_file.
 * "rate" is requests per second (0 = unlimited), "burst" the bucket size; a key's own
 * rate_limit overrides the file's, which defaults to 100/s with a burst of 200.
 *
 * It must never keep or log a presented credential, compare key hashes other than in
 * constant time, accept a token whose "alg" is not the configured algorithm (so neither
 * alg=none nor an HS256 token signed with the RS256 public key), or fetch a key a token
 * names (jku, x5u, kid are ignored).
 */
#ifndef SG_AUTH_H
#define SG_AUTH_H

#include "orchestrator/base/base.h"

#include <stdio.h>

/* Scopes are bits; a route needs one, a caller holds a set. 0 = an open route. */
typedef enum {
    SG_SCOPE_READ = 1u << 0,
    SG_SCOPE_START = 1u << 1,
    SG_SCOPE_OPERATE = 1u << 2,
    SG_SCOPE_ADMIN = 1u << 3,
} sg_scope_t;

#define SG_SCOPE_ALL (SG_SCOPE_READ | SG_SCOPE_START | SG_SCOPE_OPERATE | SG_SCOPE_ADMIN)

/* The name of one scope bit ("read", ...), or "none" for anything else. */
const char *sg_scope_name(unsigned scope);
/* "read" -> SG_SCOPE_READ and so on; false for an unknown name. */
bool sg_scope_parse(const char *name, unsigned *out);
/* granted plus what it implies (see above). */
unsigned sg_scope_implied(unsigned granted);
/* Whether a caller holding granted may use a route that needs need (0 = open). */
bool sg_scope_allows(unsigned granted, unsigned need);

typedef struct sg_auth sg_auth_t;

/* Default limit for every caller when the file sets none. */
#define SG_AUTH_DEFAULT_RATE 100.0
#define SG_AUTH_DEFAULT_BURST 200.0

/*
 * Loads and checks a credentials file. Returns SG_OK with *out set (free with
 * sg_auth_free), SG_ERR_IO when it or a key file it names cannot be read, SG_ERR_INVALID
 * (with "FILE: where: what" in err) for anything malformed, or when it configures no
 * credential at all, SG_ERR_NOMEM. Any thread.
 */
sg_err_t sg_auth_load(const char *path, sg_auth_t **out, char *err, size_t errlen);
/* The same from text; dir resolves relative file names, name prefixes messages. */
sg_err_t sg_auth_parse(const char *text, size_t len, const char *name, const char *dir,
                       sg_auth_t **out, char *err, size_t errlen);
/* NULL is a no-op. */
void sg_auth_free(sg_auth_t *a);

/* One line for the log: "2 API keys, JWT RS256". */
void sg_auth_describe(const sg_auth_t *a, char *out, size_t outlen);

typedef enum {
    SG_AUTH_OK = 0,
    SG_AUTH_MISSING,   /* the request carries no credential */
    SG_AUTH_MALFORMED, /* a credential that is not well-formed */
    SG_AUTH_INVALID,   /* unknown key, bad signature, wrong algorithm, issuer or audience */
    SG_AUTH_EXPIRED,   /* a token past its exp (plus the leeway) */
} sg_auth_verdict_t;

/* What a check found out about the caller. */
typedef struct {
    unsigned scopes;     /* granted, implications applied */
    char principal[144]; /* "key:NAME" or "jwt:SUBJECT" (printable ASCII): logs, limits */
    double rate, burst;  /* the caller's rate limit; rate 0 = unlimited */
    char detail[192];    /* why, when not OK; never contains the credential */
} sg_auth_caller_t;

/*
 * Checks a request's credential: authorization and api_key are the values of the
 * Authorization and X-API-Key headers (NULL when absent); now_s is the wall clock in
 * seconds since the epoch (for exp and nbf). Fills *who and returns the verdict. Sending
 * both headers is MALFORMED (one credential per request). Any thread, concurrently.
 */
sg_auth_verdict_t sg_auth_check(const sg_auth_t *a, const char *authorization, const char *api_key,
                                int64_t now_s, sg_auth_caller_t *who);

/* Whether key has the form of an API key: 16 to 256 characters of A-Z a-z 0-9 - _ ~ + / =
 * (RFC 6750's token68 without the dot, which marks a JWT). */
bool sg_auth_key_valid(const char *key);

/*
 * `sagad --hash-key`: reads one API key from in (a trailing newline is dropped), checks
 * its form and writes its SHA-256 (64 hex digits and a newline) to out, for the "sha256"
 * member of a key. Returns the exit status: 0, or 2 with the reason on errout.
 */
int sg_auth_hash_key_cli(FILE *in, FILE *out, FILE *errout);

#endif
