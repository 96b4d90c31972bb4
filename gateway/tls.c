/*
 * gateway tls: the certificate and private key for HTTPS, read once at start. The
 * checks here only make the common mistakes clear (one file of two, a file that is not
 * PEM, an encrypted key, a libmicrohttpd without TLS); GnuTLS inside libmicrohttpd
 * parses and matches them.
 *
 * It must never log a key or keep it after the gateway stops: the text is wiped before
 * it is freed.
 */
#include "gateway/gateway_int.h"
#include "orchestrator/log/log.h"

#include <microhttpd.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#define PEM_MAX ((size_t)1 << 20)

void gw__tls_free(char *cert, char *key)
{
    if (key != NULL) {
        /* volatile, so the wipe is not optimised away before the free */
        for (volatile char *p = key; *p; p++) {
            *p = 0;
        }
    }
    sg_free(key);
    sg_free(cert);
}

/* Reads one PEM file that must hold `marker`; false with err and *rc set. */
static bool read_pem(const char *what, const char *path, const char *marker, char **out,
                     sg_err_t *rc, char *err, size_t errlen)
{
    size_t len = 0;
    *rc = sg_file_read(path, PEM_MAX, out, &len);
    if (*rc != SG_OK) {
        snprintf(err, errlen, "TLS %s %s: %s", what, path, sg_strerror(*rc));
        *rc = *rc == SG_ERR_NOMEM ? SG_ERR_NOMEM : SG_ERR_IO;
        return false;
    }
    if (strstr(*out, marker) == NULL || strlen(*out) != len) {
        snprintf(err, errlen, "TLS %s %s: not a PEM file with a \"%s\" block", what, path, marker);
        *rc = SG_ERR_INVALID;
        return false;
    }
    return true;
}

bool gw__tls_load(const sg_gateway_opts_t *o, char **cert, char **key, sg_err_t *rc, char *err,
                  size_t errlen)
{
    *cert = *key = NULL;
    *rc = SG_OK;
    if (o->tls_cert_file == NULL && o->tls_key_file == NULL) {
        return true;
    }
    *rc = SG_ERR_INVALID;
    if (o->tls_cert_file == NULL || o->tls_key_file == NULL) {
        snprintf(err, errlen,
                 "TLS needs both a certificate and a private key (--tls-cert FILE "
                 "--tls-key FILE)");
        return false;
    }
    if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
        snprintf(err, errlen,
                 "this libmicrohttpd was built without TLS (GnuTLS): HTTPS is not "
                 "available; serve plain HTTP on loopback behind a TLS proxy");
        return false;
    }
    bool ok = read_pem("certificate", o->tls_cert_file, "-----BEGIN CERTIFICATE-----", cert, rc,
                       err, errlen) &&
              read_pem("key", o->tls_key_file, "PRIVATE KEY-----", key, rc, err, errlen);
    if (ok && strstr(*key, "ENCRYPTED PRIVATE KEY") != NULL) {
        snprintf(err, errlen, "TLS key %s is encrypted: give the key without a passphrase",
                 o->tls_key_file);
        *rc = SG_ERR_INVALID;
        ok = false;
    }
    if (!ok) {
        gw__tls_free(*cert, *key);
        *cert = *key = NULL;
        return false;
    }
    struct stat sb;
    if (stat(o->tls_key_file, &sb) == 0 && (sb.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
        sg_log(SG_LOG_WARN, NULL, "gateway: the TLS key %s can be read by other users (chmod 600)",
               o->tls_key_file);
    }
    *rc = SG_OK;
    return true;
}
