/*
 * driver registry: every definition sagad knows, by (name, version). Stored
 * definitions come first (running instances need the exact version they started
 * with, even if its file is gone); then the workflows folder adds new versions.
 * Definitions are never removed or replaced while sagad runs, so readers may keep
 * pointers to them.
 */
#include "orchestrator/driver/driver_int.h"
#include "orchestrator/log/log.h"

#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

void drv__registry_init(registry_t *r)
{
    memset(r, 0, sizeof(*r));
    pthread_rwlock_init(&r->lock, NULL);
}

void drv__registry_fini(registry_t *r)
{
    for (size_t i = 0; i < r->count; i++) {
        sg_def_free(r->defs[i]);
    }
    sg_free(r->defs);
    pthread_rwlock_destroy(&r->lock);
}

static const sg_def_t *find_locked(const registry_t *r, const char *name, int64_t version)
{
    const sg_def_t *best = NULL;
    for (size_t i = 0; i < r->count; i++) {
        const sg_def_t *def = r->defs[i];
        if (strcmp(def->name, name) != 0) {
            continue;
        }
        if (version != 0 ? def->version == version
                         : (best == NULL || def->version > best->version)) {
            best = def;
        }
    }
    return best;
}

const sg_def_t *drv__registry_find(registry_t *r, const char *name, int64_t version)
{
    pthread_rwlock_rdlock(&r->lock);
    const sg_def_t *def = find_locked(r, name, version);
    pthread_rwlock_unlock(&r->lock);
    return def;
}

/* Adds def (taking ownership) unless that (name, version) is known; returns true when added. */
static bool add(registry_t *r, sg_def_t *def)
{
    pthread_rwlock_wrlock(&r->lock);
    const sg_def_t *old = find_locked(r, def->name, def->version);
    bool added = false;
    if (old == NULL && sg_grow((void **)&r->defs, &r->cap, r->count, sizeof(*r->defs))) {
        r->defs[r->count++] = def;
        added = true;
    }
    pthread_rwlock_unlock(&r->lock);
    if (!added) {
        if (old != NULL && strcmp(old->sha256, def->sha256) != 0) {
            sg_log(SG_LOG_ERROR, &(sg_log_ctx_t){.workflow = def->name},
                   "%s changed but kept version %lld: bump the version to register it; "
                   "running instances keep the old one",
                   def->path, (long long)def->version);
        }
        sg_def_free(def);
    }
    return added;
}

static bool load_stored(void *ctx, const char *name, int64_t version, const char *sha,
                        const char *source)
{
    registry_t *r = ctx;
    (void)sha;
    sg_diags_t diags;
    sg_diags_init(&diags, 1);
    sg_def_t *def = NULL;
    char path[160];
    snprintf(path, sizeof(path), "<stored %s v%lld>", name, (long long)version);
    if (sg_def_load(path, source, strlen(source), NULL, &def, &diags) == SG_OK) {
        add(r, def);
    } else {
        sg_log(SG_LOG_ERROR, &(sg_log_ctx_t){.workflow = name},
               "stored definition v%lld no longer loads: %s", (long long)version,
               diags.count ? diags.items[0].message : "out of memory");
    }
    sg_diags_fini(&diags);
    return true;
}

static void load_file(registry_t *r, sg_store_t *st, const char *path)
{
    sg_diags_t diags;
    sg_diags_init(&diags, SG_DIAGS_DEFAULT_CAP);
    sg_def_t *def = NULL;
    if (sg_def_load_file(path, NULL, &def, &diags) != SG_OK) {
        sg_buf_t b;
        sg_buf_init(&b);
        sg_diags_format(&diags, path, &b);
        sg_log(SG_LOG_ERROR, NULL, "workflow not loaded:\n%s", b.data ? b.data : "out of memory");
        sg_buf_fini(&b);
        sg_diags_fini(&diags);
        return;
    }
    sg_diags_fini(&diags);
    sg_err_t rc = sg_store_def_put(st, def->name, def->version, def->sha256, def->source,
                                   (int64_t)sg_now_ms());
    if (rc == SG_ERR_EXISTS) {
        sg_log(SG_LOG_ERROR, &(sg_log_ctx_t){.workflow = def->name},
               "%s: version %lld is already registered with other content; bump the version", path,
               (long long)def->version);
        sg_def_free(def);
        return;
    }
    if (rc != SG_OK) {
        sg_log(SG_LOG_ERROR, NULL, "cannot store %s: %s", path, sg_store_errmsg(st));
        sg_def_free(def);
        return;
    }
    char name[96];
    snprintf(name, sizeof(name), "%s", def->name);
    int64_t version = def->version;
    if (add(r, def)) {
        sg_log(SG_LOG_INFO, &(sg_log_ctx_t){.workflow = name}, "registered version %lld from %s",
               (long long)version, path);
    }
}

static void scan_dir(registry_t *r, sg_store_t *st, const char *dir, int depth)
{
    DIR *dh = opendir(dir);
    if (dh == NULL) {
        sg_log(SG_LOG_ERROR, NULL, "cannot open workflows folder %s", dir);
        return;
    }
    struct dirent *e;
    while ((e = readdir(dh)) != NULL) {
        if (e->d_name[0] == '.') {
            continue;
        }
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        struct stat sb;
        if (stat(path, &sb) != 0) {
            continue;
        }
        size_t len = strlen(e->d_name);
        if (S_ISDIR(sb.st_mode) && depth < 8) {
            scan_dir(r, st, path, depth + 1);
        } else if (S_ISREG(sb.st_mode) && len > 5 &&
                   (strcmp(e->d_name + len - 5, ".yaml") == 0 ||
                    strcmp(e->d_name + len - 4, ".yml") == 0)) {
            load_file(r, st, path);
        }
    }
    closedir(dh);
}

void drv__registry_load(registry_t *r, sg_store_t *st, const char *dir)
{
    sg_store_def_scan(st, load_stored, r);
    if (dir != NULL) {
        if (sg_store_begin(st) != SG_OK) {
            return;
        }
        scan_dir(r, st, dir, 0);
        if (sg_store_commit(st) != SG_OK) {
            sg_log(SG_LOG_ERROR, NULL, "cannot store definitions: %s", sg_store_errmsg(st));
            sg_store_rollback(st);
        }
    }
}
