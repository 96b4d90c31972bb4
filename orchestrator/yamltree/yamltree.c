/*
 * yamltree: libyaml event stream -> located node tree, inside an arena.
 *
 * All nodes of a document live in one arena and are freed together, which is what
 * makes aliases cheap (they share the anchored node) and error unwinding trivial.
 * Limits are checked while parsing, so a hostile file costs at most the limits.
 */
#include "orchestrator/yamltree/yamltree.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <yaml.h>

const sg_ylimits_t sg_ylimits_default = {
    .max_bytes = 1u << 20,
    .max_depth = 64,
    .max_nodes = 200000,
};

struct sg_ydoc {
    sg_arena_t arena;
    const sg_ynode_t *root;
};

static void *arena_alloc(sg_ydoc_t *doc, size_t n)
{
    return sg_arena_alloc(&doc->arena, n);
}

void sg_ydoc_free(sg_ydoc_t *doc)
{
    if (doc == NULL) {
        return;
    }
    sg_arena_fini(&doc->arena);
    sg_free(doc);
}

const sg_ynode_t *sg_ydoc_root(const sg_ydoc_t *doc)
{
    return doc->root;
}

/* ---- parse state ---- */

typedef struct {
    const char *name;
    const sg_ynode_t *node;
    size_t weight; /* nodes in the anchored subtree, charged again at each alias */
} anchor_t;

typedef struct {
    sg_ydoc_t *doc;
    yaml_parser_t parser;
    const sg_ylimits_t *limits;
    sg_diags_t *diags;
    const char *buf; /* the input, to look at the character libyaml complains about */
    size_t len;
    size_t nodes; /* budget used, aliases counted at full weight */
    anchor_t *anchors;
    size_t n_anchors, cap_anchors;
    sg_err_t err;
} parse_t;

static sg_pos_t mark_pos(yaml_mark_t m)
{
    return (sg_pos_t){.line = (uint32_t)m.line + 1, .col = (uint32_t)m.column + 1};
}

static void fail(parse_t *p, sg_err_t code, sg_pos_t pos, const char *hint, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* Records the first error only: past it the event stream cannot be trusted. */
static void fail(parse_t *p, sg_err_t code, sg_pos_t pos, const char *hint, const char *fmt, ...)
{
    if (p->err != SG_OK) {
        return;
    }
    p->err = code;
    va_list ap;
    va_start(ap, fmt);
    if (sg_diags_addv(p->diags, code, pos, hint, fmt, ap) != SG_OK) {
        p->err = SG_ERR_NOMEM;
    }
    va_end(ap);
}

static void fail_nomem(parse_t *p)
{
    if (p->err == SG_OK) {
        p->err = SG_ERR_NOMEM;
    }
}

/* The byte at a libyaml mark (line and column count characters), or 0. */
static char char_at(const parse_t *p, yaml_mark_t m)
{
    size_t i = 0, line = 0;
    while (i < p->len && line < m.line) {
        line += p->buf[i++] == '\n';
    }
    for (size_t col = 0; i < p->len && col < m.column; i++) {
        col += ((unsigned char)p->buf[i] & 0xC0) != 0x80;
    }
    while (i < p->len && ((unsigned char)p->buf[i] & 0xC0) == 0x80) {
        i++;
    }
    return i < p->len ? p->buf[i] : 0;
}

/* Returns false (and records the error) when the event stream is broken. */
static bool next_event(parse_t *p, yaml_event_t *ev)
{
    if (yaml_parser_parse(&p->parser, ev)) {
        return true;
    }
    if (p->parser.error == YAML_MEMORY_ERROR) {
        fail_nomem(p);
        return false;
    }
    yaml_mark_t m = p->parser.problem_mark;
    const char *problem = p->parser.problem ? p->parser.problem : "malformed YAML";
    const char *hint = NULL;
    if (char_at(p, m) == '\t') {
        fail(p, SG_ERR_INVALID, mark_pos(m), "indent with spaces; YAML does not allow tabs there",
             "YAML syntax: tab character where only spaces are allowed");
        return false;
    }
    if (strstr(problem, "mapping values are not allowed") != NULL) {
        hint = "a value containing ': ' must be quoted";
    }
    if (p->parser.context != NULL) {
        char msg[256];
        snprintf(msg, sizeof(msg), "%s %s", problem, p->parser.context);
        fail(p, SG_ERR_INVALID, mark_pos(m), hint, "YAML syntax: %s", msg);
    } else {
        fail(p, SG_ERR_INVALID, mark_pos(m), hint, "YAML syntax: %s", problem);
    }
    return false;
}

static bool charge_nodes(parse_t *p, size_t n, sg_pos_t pos)
{
    if (n > p->limits->max_nodes || p->nodes > p->limits->max_nodes - n) {
        fail(p, SG_ERR_LIMIT, pos, "avoid aliases that expand to very large structures",
             "document expands to more than %zu nodes", p->limits->max_nodes);
        return false;
    }
    p->nodes += n;
    return true;
}

static bool add_anchor(parse_t *p, const char *name, const sg_ynode_t *node, size_t weight)
{
    if (!sg_grow((void **)&p->anchors, &p->cap_anchors, p->n_anchors, sizeof(*p->anchors))) {
        fail_nomem(p);
        return false;
    }
    char *copy = arena_alloc(p->doc, strlen(name) + 1);
    if (copy == NULL) {
        fail_nomem(p);
        return false;
    }
    strcpy(copy, name);
    /* A later anchor of the same name wins, as YAML says. */
    p->anchors[p->n_anchors++] = (anchor_t){.name = copy, .node = node, .weight = weight};
    return true;
}

static const anchor_t *find_anchor(const parse_t *p, const char *name)
{
    for (size_t i = p->n_anchors; i > 0; i--) {
        if (strcmp(p->anchors[i - 1].name, name) == 0) {
            return &p->anchors[i - 1];
        }
    }
    return NULL;
}

static const sg_ynode_t *parse_node(parse_t *p, yaml_event_t *ev, size_t depth, size_t *weight);

static sg_ynode_t *new_node(parse_t *p, sg_ynode_kind_t kind, yaml_mark_t m)
{
    sg_ynode_t *n = arena_alloc(p->doc, sizeof(*n));
    if (n == NULL) {
        fail_nomem(p);
        return NULL;
    }
    memset(n, 0, sizeof(*n));
    n->kind = kind;
    n->pos = mark_pos(m);
    return n;
}

static const sg_ynode_t *parse_scalar(parse_t *p, yaml_event_t *ev)
{
    sg_ynode_t *n = new_node(p, SG_YNODE_SCALAR, ev->start_mark);
    if (n == NULL) {
        return NULL;
    }
    size_t len = ev->data.scalar.length;
    char *s = arena_alloc(p->doc, len + 1);
    if (s == NULL) {
        fail_nomem(p);
        return NULL;
    }
    memcpy(s, ev->data.scalar.value, len);
    s[len] = '\0';
    n->str = s;
    n->len = len;
    n->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
    switch (ev->data.scalar.style) {
    case YAML_SINGLE_QUOTED_SCALAR_STYLE:
        n->style = SG_YSTYLE_SINGLE;
        break;
    case YAML_DOUBLE_QUOTED_SCALAR_STYLE:
        n->style = SG_YSTYLE_DOUBLE;
        break;
    case YAML_LITERAL_SCALAR_STYLE:
    case YAML_FOLDED_SCALAR_STYLE:
        n->style = SG_YSTYLE_BLOCK;
        break;
    default:
        n->style = SG_YSTYLE_PLAIN;
    }
    return n;
}

/* Growable array of pointers used while a collection is open; copied into the arena. */
typedef struct {
    void *items;
    size_t count, cap, size;
} vec_t;

static bool vec_push(parse_t *p, vec_t *v, const void *item)
{
    if (!sg_grow(&v->items, &v->cap, v->count, v->size)) {
        fail_nomem(p);
        return false;
    }
    memcpy((char *)v->items + v->count * v->size, item, v->size);
    v->count++;
    return true;
}

static void *vec_to_arena(parse_t *p, vec_t *v)
{
    void *out = arena_alloc(p->doc, v->count * v->size + 1);
    if (out == NULL) {
        fail_nomem(p);
    } else if (v->count > 0) {
        memcpy(out, v->items, v->count * v->size);
    }
    sg_free(v->items);
    v->items = NULL;
    return out;
}

static bool check_duplicate_key(parse_t *p, const vec_t *pairs, const sg_ynode_t *key)
{
    const sg_ypair_t *items = pairs->items;
    for (size_t i = 0; i < pairs->count; i++) {
        if (items[i].key->len == key->len && memcmp(items[i].key->str, key->str, key->len) == 0) {
            char hint[64];
            snprintf(hint, sizeof(hint), "the first \"%.*s\" is at line %u",
                     (int)(key->len > 30 ? 30 : key->len), key->str, items[i].key->pos.line);
            fail(p, SG_ERR_INVALID, key->pos, hint, "duplicate key \"%s\"", key->str);
            return false;
        }
    }
    return true;
}

static const sg_ynode_t *parse_collection(parse_t *p, yaml_event_t *start, size_t depth,
                                          size_t *weight)
{
    bool is_map = start->type == YAML_MAPPING_START_EVENT;
    yaml_event_type_t end_type = is_map ? YAML_MAPPING_END_EVENT : YAML_SEQUENCE_END_EVENT;
    if (depth >= p->limits->max_depth) {
        fail(p, SG_ERR_LIMIT, mark_pos(start->start_mark), NULL,
             "nesting is deeper than %zu levels", p->limits->max_depth);
        return NULL;
    }
    sg_ynode_t *n = new_node(p, is_map ? SG_YNODE_MAP : SG_YNODE_SEQ, start->start_mark);
    vec_t v = {.size = is_map ? sizeof(sg_ypair_t) : sizeof(sg_ynode_t *)};
    while (n != NULL && p->err == SG_OK) {
        yaml_event_t ev;
        if (!next_event(p, &ev)) {
            break;
        }
        if (ev.type == end_type) {
            yaml_event_delete(&ev);
            break;
        }
        size_t w = 0;
        const sg_ynode_t *item = parse_node(p, &ev, depth + 1, &w);
        yaml_event_delete(&ev);
        if (item == NULL) {
            break;
        }
        *weight += w;
        if (!is_map) {
            vec_push(p, &v, &item);
            continue;
        }
        if (item->kind != SG_YNODE_SCALAR) {
            fail(p, SG_ERR_INVALID, item->pos, NULL, "only plain keys are supported, not %s",
                 sg_ynode_kind_name(item));
            break;
        }
        if (!check_duplicate_key(p, &v, item) || !next_event(p, &ev)) {
            break;
        }
        w = 0;
        const sg_ynode_t *value = parse_node(p, &ev, depth + 1, &w);
        yaml_event_delete(&ev);
        if (value == NULL) {
            break;
        }
        *weight += w;
        sg_ypair_t pair = {.key = item, .value = value};
        vec_push(p, &v, &pair);
    }
    if (p->err != SG_OK || n == NULL) {
        sg_free(v.items);
        return NULL;
    }
    n->count = v.count;
    void *items = vec_to_arena(p, &v);
    if (is_map) {
        n->pairs = items;
    } else {
        n->items = items;
    }
    return p->err == SG_OK ? n : NULL;
}

/* Parses the node that starts with ev; *weight gets the nodes it stands for. */
static const sg_ynode_t *parse_node(parse_t *p, yaml_event_t *ev, size_t depth, size_t *weight)
{
    const sg_ynode_t *n = NULL;
    const char *anchor = NULL;
    *weight = 1;
    switch (ev->type) {
    case YAML_ALIAS_EVENT: {
        const anchor_t *a = find_anchor(p, (const char *)ev->data.alias.anchor);
        if (a == NULL) {
            fail(p, SG_ERR_INVALID, mark_pos(ev->start_mark),
                 "define the anchor (&name) before using it", "undefined alias \"%s\"",
                 (const char *)ev->data.alias.anchor);
            return NULL;
        }
        *weight = a->weight;
        return charge_nodes(p, a->weight, mark_pos(ev->start_mark)) ? a->node : NULL;
    }
    case YAML_SCALAR_EVENT:
        anchor = (const char *)ev->data.scalar.anchor;
        if (!charge_nodes(p, 1, mark_pos(ev->start_mark))) {
            return NULL;
        }
        n = parse_scalar(p, ev);
        break;
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT:
        anchor =
            (const char *)(ev->type == YAML_MAPPING_START_EVENT ? ev->data.mapping_start.anchor
                                                                : ev->data.sequence_start.anchor);
        if (!charge_nodes(p, 1, mark_pos(ev->start_mark))) {
            return NULL;
        }
        n = parse_collection(p, ev, depth, weight);
        break;
    default:
        fail(p, SG_ERR_INVALID, mark_pos(ev->start_mark), NULL, "unexpected YAML event %d",
             (int)ev->type);
        return NULL;
    }
    if (n != NULL && anchor != NULL && !add_anchor(p, anchor, n, *weight)) {
        return NULL;
    }
    return n;
}

/* Rejects invalid UTF-8 and control characters with their position, before libyaml,
 * whose reader reports such errors without a line. */
static bool check_text(parse_t *p, const unsigned char *s, size_t len)
{
    uint32_t line = 1, col = 1;
    size_t i = 0;
    if (len >= 3 && s[0] == 0xEF && s[1] == 0xBB && s[2] == 0xBF) {
        i = 3;
    }
    while (i < len) {
        unsigned c = s[i];
        size_t n = c < 0x80           ? 1
                   : (c >> 5) == 0x6  ? 2
                   : (c >> 4) == 0xE  ? 3
                   : (c >> 3) == 0x1E ? 4
                                      : 0;
        uint32_t cp = n == 1 ? c : n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
        bool ok = n > 0 && i + n <= len;
        for (size_t k = 1; ok && k < n; k++) {
            ok = (s[i + k] & 0xC0) == 0x80;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (ok && n > 1) {
            static const uint32_t min_cp[] = {0, 0, 0x80, 0x800, 0x10000};
            ok = cp >= min_cp[n] && cp <= 0x10FFFF && (cp < 0xD800 || cp > 0xDFFF);
        }
        sg_pos_t pos = {line, col};
        if (!ok) {
            fail(p, SG_ERR_INVALID, pos, "save the file as UTF-8", "invalid UTF-8 byte 0x%02x", c);
            return false;
        }
        if (cp < 0x20 && cp != '\n' && cp != '\r' && cp != '\t') {
            fail(p, SG_ERR_INVALID, pos, NULL, "control character U+%04X is not allowed", cp);
            return false;
        }
        if (cp == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
        i += n;
    }
    return true;
}

static void parse_stream(parse_t *p)
{
    yaml_event_t ev;
    bool seen_doc = false;
    for (;;) {
        if (!next_event(p, &ev)) {
            return;
        }
        yaml_event_type_t t = ev.type;
        sg_pos_t pos = mark_pos(ev.start_mark);
        if (t == YAML_STREAM_END_EVENT) {
            yaml_event_delete(&ev);
            return;
        }
        if (t == YAML_DOCUMENT_START_EVENT) {
            yaml_event_delete(&ev);
            if (seen_doc) {
                fail(p, SG_ERR_INVALID, pos, "put each saga in a file of its own",
                     "only one YAML document per file is allowed");
                return;
            }
            seen_doc = true;
            if (!next_event(p, &ev)) {
                return;
            }
            size_t w = 0;
            if (ev.type != YAML_DOCUMENT_END_EVENT) {
                p->doc->root = parse_node(p, &ev, 0, &w);
                yaml_event_delete(&ev);
                if (p->err != SG_OK || !next_event(p, &ev)) {
                    return;
                }
            }
        }
        yaml_event_delete(&ev);
    }
}

sg_err_t sg_ydoc_parse(const char *buf, size_t len, const sg_ylimits_t *limits, sg_ydoc_t **out,
                       sg_diags_t *diags)
{
    *out = NULL;
    if (limits == NULL) {
        limits = &sg_ylimits_default;
    }
    parse_t p = {.limits = limits, .diags = diags, .buf = buf, .len = len};
    if (len > limits->max_bytes) {
        fail(&p, SG_ERR_LIMIT, (sg_pos_t){1, 1}, "split the saga or shorten it",
             "file is larger than the limit of %zu bytes", limits->max_bytes);
        return p.err;
    }
    if (!check_text(&p, (const unsigned char *)buf, len)) {
        return p.err;
    }
    p.doc = sg_calloc(1, sizeof(*p.doc));
    if (p.doc == NULL) {
        return SG_ERR_NOMEM;
    }
    if (!yaml_parser_initialize(&p.parser)) {
        sg_free(p.doc);
        return SG_ERR_NOMEM;
    }
    yaml_parser_set_input_string(&p.parser, (const unsigned char *)buf, len);
    yaml_parser_set_encoding(&p.parser, YAML_UTF8_ENCODING);
    parse_stream(&p);
    yaml_parser_delete(&p.parser);
    sg_free(p.anchors);
    if (p.err != SG_OK) {
        sg_ydoc_free(p.doc);
        return p.err;
    }
    *out = p.doc;
    return SG_OK;
}

const sg_ynode_t *sg_ymap_get(const sg_ynode_t *map, const char *key)
{
    if (map == NULL || map->kind != SG_YNODE_MAP) {
        return NULL;
    }
    size_t klen = strlen(key);
    for (size_t i = 0; i < map->count; i++) {
        const sg_ynode_t *k = map->pairs[i].key;
        if (k->len == klen && memcmp(k->str, key, klen) == 0) {
            return map->pairs[i].value;
        }
    }
    return NULL;
}

const char *sg_ynode_kind_name(const sg_ynode_t *node)
{
    if (node->kind == SG_YNODE_MAP) {
        return "a mapping";
    }
    if (node->kind == SG_YNODE_SEQ) {
        return "a list";
    }
    return sg_ynode_is_null(node) ? "null" : "a scalar";
}

bool sg_ynode_is_null(const sg_ynode_t *node)
{
    if (node == NULL) {
        return true;
    }
    if (node->kind != SG_YNODE_SCALAR || !node->plain) {
        return false;
    }
    return node->len == 0 || strcmp(node->str, "null") == 0 || strcmp(node->str, "~") == 0 ||
           strcmp(node->str, "Null") == 0 || strcmp(node->str, "NULL") == 0;
}
