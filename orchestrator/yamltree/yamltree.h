/*
 * yamltree: parses one YAML document (libyaml) into an immutable tree of scalars,
 * sequences and mappings in which every node knows its line and column, so that the
 * definition checker can point at the exact place of every problem.
 *
 * It defends against hostile input before anything else sees it: a size limit,
 * a nesting limit, a budget on alias expansion (libyaml 0.2.5 has none: "billion
 * laughs"), invalid UTF-8, duplicate keys, undefined aliases, several documents.
 * It must never interpret what the YAML means; that is the dsl module's job.
 */
#ifndef SG_YAMLTREE_H
#define SG_YAMLTREE_H

#include "orchestrator/base/base.h"

typedef enum { SG_YNODE_SCALAR, SG_YNODE_SEQ, SG_YNODE_MAP } sg_ynode_kind_t;

typedef struct sg_ynode sg_ynode_t;

/* How a scalar was written; expressions use it to map offsets back to columns. */
typedef enum { SG_YSTYLE_PLAIN, SG_YSTYLE_SINGLE, SG_YSTYLE_DOUBLE, SG_YSTYLE_BLOCK } sg_ystyle_t;

typedef struct {
    const sg_ynode_t *key; /* always a scalar: complex keys are rejected */
    const sg_ynode_t *value;
} sg_ypair_t;

/* A node; read-only, owned by its document. Aliases share the anchored node. */
struct sg_ynode {
    sg_ynode_kind_t kind;
    sg_pos_t pos; /* where the node starts */
    bool plain;   /* scalar written without quotes or block style: may be a number/bool/null */
    sg_ystyle_t style;
    const char *str; /* scalar text, NUL-terminated (may contain NUL only if len says so) */
    size_t len;
    const sg_ynode_t *const *items; /* sequence items */
    const sg_ypair_t *pairs;        /* mapping pairs, in document order */
    size_t count;                   /* number of items or pairs */
};

typedef struct {
    size_t max_bytes; /* whole document */
    size_t max_depth; /* nesting of collections */
    size_t max_nodes; /* nodes including every alias expansion */
} sg_ylimits_t;

/* The limits sagad uses for workflow files: 1 MiB, depth 64, 200,000 nodes. */
extern const sg_ylimits_t sg_ylimits_default;

typedef struct sg_ydoc sg_ydoc_t;

/*
 * Parses buf[0..len) as one YAML document. On success returns SG_OK and *out holds the
 * document (free with sg_ydoc_free). On failure returns SG_ERR_INVALID or SG_ERR_LIMIT
 * with located diagnostics added to diags (the first problem only: a broken YAML
 * stream cannot be trusted past it), or SG_ERR_NOMEM. Any thread; no global state.
 */
sg_err_t sg_ydoc_parse(const char *buf, size_t len, const sg_ylimits_t *limits, sg_ydoc_t **out,
                       sg_diags_t *diags);
void sg_ydoc_free(sg_ydoc_t *doc);
/* The root node; NULL for an empty document. Valid until sg_ydoc_free. */
const sg_ynode_t *sg_ydoc_root(const sg_ydoc_t *doc);

/* The value of key in a mapping, or NULL. */
const sg_ynode_t *sg_ymap_get(const sg_ynode_t *map, const char *key);
/* Name of a node kind for messages: "a string", "a list", "a mapping". */
const char *sg_ynode_kind_name(const sg_ynode_t *node);
/* Plain scalar spelled null, ~, or empty. */
bool sg_ynode_is_null(const sg_ynode_t *node);

#endif
