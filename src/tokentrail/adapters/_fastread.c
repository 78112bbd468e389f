/* tokentrail.adapters._fastread: the provider-name reader of `usage_from_response`, run as data.
 *
 * `_mapped.MappedReaders` compiles, per provider name, the reads of the usual Anthropic message, Responses
 * object and chat completion into straight-line Python (`_compile.fast_read`), and the same reads into a
 * short list of operations (`_fast.Ops`). A `Reader` runs those operations on a body and builds the `Usage`;
 * on anything it does not take as the usual body it calls the Python reader with the body instead, and
 * returns what that returns (or raises what that raises). So whenever a `Reader` builds a `Usage`
 * itself, the Python reader would have built the same one; everything else is the Python reader's.
 *
 * Safety: every object read is an exact dict, list, str or int (never a subclass: no user code runs on
 * them); every container is held by a strong reference while it is read (a dict key's `__eq__` may run
 * during a lookup); any error (a lookup that raised, no memory) hands the body to the Python reader.
 * The plans are checked when a Reader is made, so the loop trusts its register numbers.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#define FASTREAD_VERSION 1
#define MAX_REGS 64
#define MAX_SLOTS 64
#define MAX_LIST 32
#define MAX_RULE_TERMS 16
#define COUNT_LIMIT ((1LL << 30) - 1)

/* Operation codes: the same numbers as tokentrail.adapters._fast. */
enum {
    OP_OBJ = 1,          /* c[a] = c[b][key]: an exact dict; absent/None reads as empty unless d (required) */
    OP_COUNT = 2,        /* r[a] = c[b][key]: an exact int in 0..2**30-1, or absent (bail if d, required) */
    OP_HAS_BAIL = 3,     /* bail when key is in c[b] */
    OP_NONZERO_BAIL = 4, /* bail when r[a] is present and not 0 */
    OP_MOVE = 5,         /* r[a] = r[b] */
    OP_ADD = 6,          /* r[a] += r[b] when r[b] is present (r[a] = r[b] when r[a] is absent) */
    OP_DERIVE = 7,       /* r[a] absent and one of list present: r[a] = sum(list); then r[b] += r[a] if b >= 0 */
    OP_ALL_ABSENT_BAIL = 8, /* bail when every register of list is absent */
    OP_PART_BAIL = 9,    /* bail when r[a] is present, not 0, and r[b] absent or r[a] > r[b] */
    OP_FIELD = 10,       /* count field a = sum of the present registers of list */
    OP_INT_POSITIVE_BAIL = 11, /* bail when c[b][key] is an exact int > 0 */
    OP_SCAN_ITEMS = 12,  /* c[b][key] an exact list of exact dicts whose "type" is none of extra: else bail */
};

typedef struct {
    int code;
    int a, b, d;
    PyObject *key;   /* borrowed from the plan tuple the Reader keeps */
    PyObject *extra; /* borrowed likewise: a tuple of exact str */
    int n;
    int list[MAX_LIST];
} Op;

typedef struct {
    Op *ops; /* NULL: bodies of this shape go to the Python reader */
    Py_ssize_t n;
    int c_regs, r_regs;
    int n_rules;    /* the subset rules a count of this block can break (see keep_rules) */
    int *rules;
    int n_fields;   /* the count fields it sets */
    int fields[MAX_SLOTS];
} Block;

enum { SHAPE_ANTHROPIC = 0, SHAPE_RESPONSES = 1, SHAPE_CHAT = 2, N_SHAPES = 3 };

typedef struct {
    int n;
    int field[MAX_RULE_TERMS];
    int coef[MAX_RULE_TERMS];
} Rule; /* holds when sum(coef * count) <= 0 */

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *fallback;       /* the Python reader */
    PyTypeObject *usage_type; /* Usage */
    PyObject *defaults;       /* tuple: each slot's default object */
    PyObject *plans;          /* tuple of the plans (keeps the keys the ops borrow) */
    Py_ssize_t n_slots, n_counts, rare_start, rare_slot;
    Py_ssize_t offsets[MAX_SLOTS];
    long long default_counts[MAX_SLOTS];
    Rule *rules;
    Py_ssize_t n_rules;
    Block blocks[N_SHAPES];
} Reader;

/* Keys and values of the dispatch, interned at module init. */
static PyObject *s_custom_id, *s_response, *s_recordId, *s_type, *s_object, *s_choices;
static PyObject *s_message, *s_response_done, *s_chat_completion, *s_chat_chunk, *s_text_completion;

/* -- reading ------------------------------------------------------------------------------------------- */

/* c[key], borrowed; NULL when absent (or c is the empty stand-in, Py_None). *err set when the lookup raised
 * (the error is cleared: the Python reader will meet it again). */
static inline PyObject *
get(PyObject *c, PyObject *key, int *err)
{
    if (c == Py_None) {
        return NULL;
    }
    PyObject *v = PyDict_GetItemWithError(c, key);
    if (v == NULL && PyErr_Occurred()) {
        PyErr_Clear();
        *err = 1;
    }
    return v;
}

static inline int
str_is(PyObject *value, PyObject *constant)
{
    /* both exact str: no user code (unicode_eq's test) */
    Py_ssize_t n;
    if (value == constant) {
        return 1;
    }
#if PY_VERSION_HEX < 0x030C0000
    if (!PyUnicode_IS_READY(value)) {
        return PyUnicode_Compare(value, constant) == 0;
    }
#endif
    n = PyUnicode_GET_LENGTH(value);
    if (n != PyUnicode_GET_LENGTH(constant) || PyUnicode_KIND(value) != PyUnicode_KIND(constant)) {
        return 0;
    }
    return memcmp(PyUnicode_DATA(value), PyUnicode_DATA(constant), (size_t)n * PyUnicode_KIND(value)) == 0;
}

/* 1 when the body was read (result in *out, a new Usage), 0 when it goes to the Python reader. */
static int
run_block(Reader *self, const Block *block, PyObject *body, PyObject **out)
{
    PyObject *c[MAX_REGS];
    long long r[MAX_REGS];
    unsigned char has[MAX_REGS];
    long long counts[MAX_SLOTS];
    int ok = 0, err = 0;
    Py_ssize_t i;
    int j;

    for (j = 0; j < block->c_regs; j++) {
        c[j] = NULL;
    }
    for (j = 0; j < block->r_regs; j++) {
        has[j] = 0;
        r[j] = 0;
    }
    memcpy(counts, self->default_counts, sizeof(long long) * (size_t)self->n_counts);
    Py_INCREF(body);
    c[0] = body;

    for (i = 0; i < block->n; i++) {
        const Op *op = &block->ops[i];
        PyObject *v;
        switch (op->code) {
        case OP_OBJ:
            v = get(c[op->b], op->key, &err);
            if (err) {
                goto done;
            }
            if (v != NULL && PyDict_CheckExact(v)) {
                Py_INCREF(v);
            }
            else if (op->d || (v != NULL && v != Py_None)) {
                goto done;
            }
            else {
                v = Py_None;
                Py_INCREF(v);
            }
            Py_XSETREF(c[op->a], v);
            break;
        case OP_COUNT:
            v = get(c[op->b], op->key, &err);
            if (err) {
                goto done;
            }
            if (v == NULL || v == Py_None) {
                if (op->d) {
                    goto done;
                }
                has[op->a] = 0;
            }
            else {
                int overflow = 0;
                long long x;
                if (!PyLong_CheckExact(v)) {
                    goto done;
                }
                x = PyLong_AsLongLongAndOverflow(v, &overflow);
                if (overflow || x < 0 || x > COUNT_LIMIT) {
                    if (x == -1 && PyErr_Occurred()) {
                        PyErr_Clear();
                    }
                    goto done;
                }
                r[op->a] = x;
                has[op->a] = 1;
            }
            break;
        case OP_HAS_BAIL:
            if (c[op->b] != Py_None) {
                int found = PyDict_Contains(c[op->b], op->key);
                if (found != 0) {
                    if (found < 0) {
                        PyErr_Clear();
                    }
                    goto done;
                }
            }
            break;
        case OP_NONZERO_BAIL:
            if (has[op->a] && r[op->a] != 0) {
                goto done;
            }
            break;
        case OP_MOVE:
            r[op->a] = r[op->b];
            has[op->a] = has[op->b];
            break;
        case OP_ADD:
            if (has[op->b]) {
                r[op->a] = has[op->a] ? r[op->a] + r[op->b] : r[op->b];
                has[op->a] = 1;
            }
            break;
        case OP_DERIVE:
            if (!has[op->a]) {
                long long sum = 0;
                int any = 0;
                for (j = 0; j < op->n; j++) {
                    if (has[op->list[j]]) {
                        any = 1;
                        sum += r[op->list[j]];
                    }
                }
                if (any) {
                    r[op->a] = sum;
                    has[op->a] = 1;
                    if (op->b >= 0 && has[op->b]) {
                        r[op->b] += sum;
                    }
                }
            }
            break;
        case OP_ALL_ABSENT_BAIL: {
            int any = 0;
            for (j = 0; j < op->n; j++) {
                any |= has[op->list[j]];
            }
            if (!any) {
                goto done;
            }
            break;
        }
        case OP_PART_BAIL:
            if (has[op->a] && r[op->a] != 0 && (!has[op->b] || r[op->a] > r[op->b])) {
                goto done;
            }
            break;
        case OP_FIELD: {
            long long sum = 0;
            for (j = 0; j < op->n; j++) {
                if (has[op->list[j]]) {
                    sum += r[op->list[j]];
                }
            }
            counts[op->a] = sum;
            break;
        }
        case OP_INT_POSITIVE_BAIL:
            v = get(c[op->b], op->key, &err);
            if (err) {
                goto done;
            }
            if (v != NULL && PyLong_CheckExact(v)) {
                int overflow = 0;
                long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
                if (overflow > 0 || x > 0) {
                    goto done;
                }
                if (x == -1 && PyErr_Occurred()) {
                    PyErr_Clear();
                }
            }
            break;
        case OP_SCAN_ITEMS: {
            PyObject *items = get(c[op->b], op->key, &err);
            Py_ssize_t k;
            int bail = 0;
            if (err || items == NULL || !PyList_CheckExact(items)) {
                goto done;
            }
            Py_INCREF(items);
            for (k = 0; !bail && k < PyList_GET_SIZE(items); k++) {
                PyObject *item = PyList_GET_ITEM(items, k);
                PyObject *kind;
                if (!PyDict_CheckExact(item)) {
                    bail = 1;
                    break;
                }
                Py_INCREF(item);
                kind = get(item, s_type, &err);
                if (err) {
                    bail = 1;
                }
                else if (kind != NULL && kind != Py_None) {
                    if (!PyUnicode_CheckExact(kind)) {
                        bail = 1; /* `in` would compare it by its own __eq__: the Python reader decides */
                    }
                    else {
                        Py_ssize_t m;
                        for (m = 0; m < PyTuple_GET_SIZE(op->extra); m++) {
                            if (str_is(kind, PyTuple_GET_ITEM(op->extra, m))) {
                                bail = 1;
                                break;
                            }
                        }
                    }
                }
                Py_DECREF(item);
            }
            Py_DECREF(items);
            if (bail) {
                goto done;
            }
            break;
        }
        default:
            goto done; /* never: the plans are checked */
        }
    }

    /* The subset rules `Usage(...)` checks: those a count this block sets can break. */
    for (i = 0; i < block->n_rules; i++) {
        const Rule *rule = &self->rules[block->rules[i]];
        long long sum = 0;
        for (j = 0; j < rule->n; j++) {
            sum += rule->coef[j] * counts[rule->field[j]];
        }
        if (sum > 0) {
            goto done;
        }
    }

    {
        PyTypeObject *type = self->usage_type;
        PyObject *u = type->tp_alloc(type, 0);
        int rare = 0;
        if (u == NULL) {
            PyErr_Clear();
            goto done;
        }
        for (i = 0; i < self->n_slots; i++) { /* every slot at its default (_rare_units False) */
            PyObject *value = PyTuple_GET_ITEM(self->defaults, i);
            Py_INCREF(value);
            *(PyObject **)((char *)u + self->offsets[i]) = value;
        }
        for (j = 0; j < block->n_fields; j++) { /* the counts this block sets */
            int f = block->fields[j];
            PyObject **slot, *value;
            if (counts[f] == self->default_counts[f]) {
                continue;
            }
            value = PyLong_FromLongLong(counts[f]);
            if (value == NULL) {
                PyErr_Clear();
                Py_DECREF(u);
                goto done;
            }
            slot = (PyObject **)((char *)u + self->offsets[f]);
            Py_SETREF(*slot, value);
            if (f >= self->rare_start && counts[f] != 0) {
                rare = 1;
            }
        }
        if (rare) {
            PyObject **slot = (PyObject **)((char *)u + self->offsets[self->rare_slot]);
            Py_INCREF(Py_True);
            Py_SETREF(*slot, Py_True);
        }
        *out = u;
        ok = 1;
    }

done:
    for (j = 0; j < block->c_regs; j++) {
        Py_XDECREF(c[j]);
    }
    return ok;
}

/* A value that compares unequal to every str without running user code (not a str, not a subclass). */
static inline int
plain_non_str(PyObject *v)
{
    return PyLong_CheckExact(v) || PyFloat_CheckExact(v) || PyBool_Check(v) || PyList_CheckExact(v)
           || PyDict_CheckExact(v) || PyTuple_CheckExact(v);
}

/* The shape of a body, as `_mapped.body_shape` finds the usual ones (the batch-result keys first); -1 for
 * anything else (the Python reader then reads it). */
static int
shape_of(PyObject *body)
{
    PyObject *keys[3] = {s_custom_id, s_response, s_recordId};
    PyObject *kind, *obj;
    int k, found;
    for (k = 0; k < 3; k++) {
        found = PyDict_Contains(body, keys[k]);
        if (found != 0) {
            if (found < 0) {
                PyErr_Clear();
            }
            return -1; /* perhaps a batch result */
        }
    }
    kind = PyDict_GetItemWithError(body, s_type); /* borrowed: compared before the next lookup */
    if (kind == NULL && PyErr_Occurred()) {
        PyErr_Clear();
        return -1;
    }
    if (kind != NULL && kind != Py_None) {
        if (PyUnicode_CheckExact(kind)) {
            if (str_is(kind, s_response_done)) {
                return -1;
            }
            if (str_is(kind, s_message)) {
                return SHAPE_ANTHROPIC;
            }
        }
        else if (!plain_non_str(kind)) {
            return -1; /* `==` would run its own __eq__: the Python reader decides */
        }
    }
    obj = PyDict_GetItemWithError(body, s_object);
    if (obj == NULL && PyErr_Occurred()) {
        PyErr_Clear();
        return -1;
    }
    if (obj != NULL && obj != Py_None) {
        if (PyUnicode_CheckExact(obj)) {
            if (str_is(obj, s_response)) {
                return SHAPE_RESPONSES;
            }
            if (str_is(obj, s_chat_completion) || str_is(obj, s_chat_chunk) || str_is(obj, s_text_completion)) {
                return SHAPE_CHAT;
            }
        }
        else if (!plain_non_str(obj)) {
            return -1;
        }
    }
    found = PyDict_Contains(body, s_choices);
    if (found < 0) {
        PyErr_Clear();
        return -1;
    }
    return found ? SHAPE_CHAT : -1;
}

/* 1 when the operations read the body (an exact dict) themselves (*usage a new Usage, *shape its shape), 0
 * when it goes to the Python reader. */
static int
read_itself(Reader *self, PyObject *body, PyObject **usage, int *shape)
{
    *shape = shape_of(body);
    return *shape >= 0 && self->blocks[*shape].ops != NULL && run_block(self, &self->blocks[*shape], body, usage);
}

static PyObject *
reader_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Reader *self = (Reader *)callable;
    if (self->fallback == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "this reader was cleared");
        return NULL;
    }
    if (PyVectorcall_NARGS(nargsf) == 1 && kwnames == NULL && PyDict_CheckExact(args[0])) {
        PyObject *usage = NULL;
        int shape;
        if (read_itself(self, args[0], &usage, &shape)) {
            return usage;
        }
    }
    return PyObject_Vectorcall(self->fallback, args, nargsf, kwnames);
}

/* -- making a Reader ----------------------------------------------------------------------------------- */

static int
as_int(PyObject *item, long lo, long hi, const char *what, int *out)
{
    long v;
    if (!PyLong_CheckExact(item)) {
        PyErr_Format(PyExc_TypeError, "%s must be an int", what);
        return -1;
    }
    v = PyLong_AsLong(item);
    if (v == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (v < lo || v > hi) {
        PyErr_Format(PyExc_ValueError, "%s out of range: %ld", what, v);
        return -1;
    }
    *out = (int)v;
    return 0;
}

/* The rules a block's counts can break: those with a part (a +1 term) the block sets, or at a default that is
 * not 0. Any other rule holds: its parts are 0 and its wholes >= 0. */
static int
keep_rules(Reader *self, Block *block)
{
    unsigned char set[MAX_SLOTS] = {0};
    Py_ssize_t i;
    int j;
    block->n_fields = 0;
    for (i = 0; i < block->n; i++) {
        if (block->ops[i].code == OP_FIELD && !set[block->ops[i].a]) {
            set[block->ops[i].a] = 1;
            block->fields[block->n_fields++] = block->ops[i].a;
        }
    }
    block->rules = PyMem_Calloc(self->n_rules ? (size_t)self->n_rules : 1, sizeof(int));
    if (block->rules == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    block->n_rules = 0;
    for (i = 0; i < self->n_rules; i++) {
        const Rule *rule = &self->rules[i];
        int keep = 0;
        for (j = 0; j < rule->n; j++) {
            if (rule->coef[j] > 0 && (set[rule->field[j]] || self->default_counts[rule->field[j]] != 0)) {
                keep = 1;
            }
        }
        if (keep) {
            block->rules[block->n_rules++] = (int)i;
        }
    }
    return 0;
}

/* One block: a tuple (c_regs, r_regs, ops), each op a tuple (code, a, b, d, key, extra, list). Checked: every
 * register in range, every container register written before it is read, keys exact str. */
static int
make_block(Reader *self, PyObject *plan, Block *block)
{
    Py_ssize_t i, n;
    PyObject *ops;
    unsigned char written[MAX_REGS] = {0};
    block->ops = NULL;
    block->n = 0;
    if (plan == Py_None) {
        return 0;
    }
    if (!PyTuple_CheckExact(plan) || PyTuple_GET_SIZE(plan) != 3) {
        PyErr_SetString(PyExc_TypeError, "a plan is a tuple (c_regs, r_regs, ops)");
        return -1;
    }
    if (as_int(PyTuple_GET_ITEM(plan, 0), 1, MAX_REGS, "c_regs", &block->c_regs) < 0
        || as_int(PyTuple_GET_ITEM(plan, 1), 0, MAX_REGS, "r_regs", &block->r_regs) < 0) {
        return -1;
    }
    ops = PyTuple_GET_ITEM(plan, 2);
    if (!PyTuple_CheckExact(ops)) {
        PyErr_SetString(PyExc_TypeError, "ops must be a tuple");
        return -1;
    }
    n = PyTuple_GET_SIZE(ops);
    block->ops = PyMem_Calloc(n ? (size_t)n : 1, sizeof(Op));
    if (block->ops == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    block->n = n;
    written[0] = 1; /* the body */
    for (i = 0; i < n; i++) {
        PyObject *t = PyTuple_GET_ITEM(ops, i);
        Op *op = &block->ops[i];
        PyObject *key, *extra, *list;
        int c = block->c_regs - 1, r = block->r_regs - 1, j;
        if (!PyTuple_CheckExact(t) || PyTuple_GET_SIZE(t) != 7) {
            PyErr_SetString(PyExc_TypeError, "an op is a tuple (code, a, b, d, key, extra, list)");
            return -1;
        }
        if (as_int(PyTuple_GET_ITEM(t, 0), OP_OBJ, OP_SCAN_ITEMS, "op code", &op->code) < 0
            || as_int(PyTuple_GET_ITEM(t, 1), -1, MAX_REGS - 1, "a", &op->a) < 0
            || as_int(PyTuple_GET_ITEM(t, 2), -1, MAX_REGS - 1, "b", &op->b) < 0
            || as_int(PyTuple_GET_ITEM(t, 3), 0, 1, "d", &op->d) < 0) {
            return -1;
        }
        key = PyTuple_GET_ITEM(t, 4);
        extra = PyTuple_GET_ITEM(t, 5);
        list = PyTuple_GET_ITEM(t, 6);
        if (key != Py_None && !PyUnicode_CheckExact(key)) {
            PyErr_SetString(PyExc_TypeError, "an op's key must be a str");
            return -1;
        }
        op->key = key == Py_None ? NULL : key;
        if (!PyTuple_CheckExact(list) || PyTuple_GET_SIZE(list) > MAX_LIST) {
            PyErr_SetString(PyExc_TypeError, "an op's list must be a short tuple");
            return -1;
        }
        op->n = (int)PyTuple_GET_SIZE(list);
        for (j = 0; j < op->n; j++) {
            if (as_int(PyTuple_GET_ITEM(list, j), 0, r, "list register", &op->list[j]) < 0) {
                return -1;
            }
        }
        op->extra = NULL;
        switch (op->code) {
        case OP_OBJ:
            if (op->a < 1 || op->a > c || op->b < 0 || op->b > c || !written[op->b] || op->key == NULL) {
                goto bad;
            }
            written[op->a] = 1;
            break;
        case OP_COUNT:
            if (op->a < 0 || op->a > r || op->b < 0 || op->b > c || !written[op->b] || op->key == NULL) {
                goto bad;
            }
            break;
        case OP_HAS_BAIL:
        case OP_INT_POSITIVE_BAIL:
            if (op->b < 0 || op->b > c || !written[op->b] || op->key == NULL) {
                goto bad;
            }
            break;
        case OP_NONZERO_BAIL:
            if (op->a < 0 || op->a > r) {
                goto bad;
            }
            break;
        case OP_MOVE:
        case OP_ADD:
        case OP_PART_BAIL:
            if (op->a < 0 || op->a > r || op->b < 0 || op->b > r) {
                goto bad;
            }
            break;
        case OP_DERIVE:
            if (op->a < 0 || op->a > r || op->b > r) {
                goto bad;
            }
            break;
        case OP_ALL_ABSENT_BAIL:
            break;
        case OP_FIELD:
            if (op->a < 0 || op->a >= self->n_counts) {
                goto bad;
            }
            break;
        case OP_SCAN_ITEMS:
            if (op->b < 0 || op->b > c || !written[op->b] || op->key == NULL || !PyTuple_CheckExact(extra)) {
                goto bad;
            }
            for (j = 0; j < PyTuple_GET_SIZE(extra); j++) {
                if (!PyUnicode_CheckExact(PyTuple_GET_ITEM(extra, j))) {
                    goto bad;
                }
            }
            op->extra = extra;
            break;
        default:
            goto bad;
        }
        continue;
    bad:
        PyErr_Format(PyExc_ValueError, "op %zd (code %d) is not well formed", i, op->code);
        return -1;
    }
    return keep_rules(self, block);
}

/* The layout of Usage: a tuple (usage_type, slots, defaults, n_counts, rare_start, rare_slot, rules), slots
 * the member descriptors of its fields in order, rules tuples of (field, coef) pairs. */
static int
read_layout(Reader *self, PyObject *layout)
{
    PyObject *slots, *defaults, *rules;
    Py_ssize_t i, n;
    int v;
    if (!PyTuple_CheckExact(layout) || PyTuple_GET_SIZE(layout) != 7) {
        PyErr_SetString(PyExc_TypeError, "layout is a tuple of 7");
        return -1;
    }
    if (!PyType_Check(PyTuple_GET_ITEM(layout, 0))) {
        PyErr_SetString(PyExc_TypeError, "layout[0] must be the Usage class");
        return -1;
    }
    self->usage_type = (PyTypeObject *)PyTuple_GET_ITEM(layout, 0);
    Py_INCREF(self->usage_type);
    slots = PyTuple_GET_ITEM(layout, 1);
    defaults = PyTuple_GET_ITEM(layout, 2);
    if (!PyTuple_CheckExact(slots) || !PyTuple_CheckExact(defaults)
        || PyTuple_GET_SIZE(slots) != PyTuple_GET_SIZE(defaults) || PyTuple_GET_SIZE(slots) > MAX_SLOTS) {
        PyErr_SetString(PyExc_TypeError, "slots and defaults: tuples of one length");
        return -1;
    }
    n = self->n_slots = PyTuple_GET_SIZE(slots);
    Py_INCREF(defaults);
    self->defaults = defaults;
    if (as_int(PyTuple_GET_ITEM(layout, 3), 0, (long)n, "n_counts", &v) < 0) {
        return -1;
    }
    self->n_counts = v;
    if (as_int(PyTuple_GET_ITEM(layout, 4), 0, (long)n, "rare_start", &v) < 0) {
        return -1;
    }
    self->rare_start = v;
    if (as_int(PyTuple_GET_ITEM(layout, 5), (long)self->n_counts, (long)n - 1, "rare_slot", &v) < 0) {
        return -1;
    }
    self->rare_slot = v;
    if (PyTuple_GET_ITEM(defaults, v) != Py_False) {
        PyErr_SetString(PyExc_ValueError, "_rare_units must default to False");
        return -1;
    }
    for (i = 0; i < n; i++) {
        PyObject *d = PyTuple_GET_ITEM(slots, i);
        PyMemberDef *member;
        if (!Py_IS_TYPE(d, &PyMemberDescr_Type) || ((PyDescrObject *)d)->d_type != self->usage_type) {
            PyErr_SetString(PyExc_TypeError, "slots must be the member descriptors of the Usage class");
            return -1;
        }
        member = ((PyMemberDescrObject *)d)->d_member;
        if (member->type != T_OBJECT_EX || member->offset < (Py_ssize_t)sizeof(PyObject)
            || member->offset + (Py_ssize_t)sizeof(PyObject *) > self->usage_type->tp_basicsize) {
            PyErr_SetString(PyExc_TypeError, "a slot of Usage is not an object slot");
            return -1;
        }
        self->offsets[i] = member->offset;
        if (i < self->n_counts) {
            PyObject *value = PyTuple_GET_ITEM(defaults, i);
            long long x;
            if (!PyLong_CheckExact(value)) {
                PyErr_SetString(PyExc_TypeError, "a count's default must be an int");
                return -1;
            }
            x = PyLong_AsLongLong(value);
            if (x == -1 && PyErr_Occurred()) {
                return -1;
            }
            self->default_counts[i] = x;
        }
    }
    rules = PyTuple_GET_ITEM(layout, 6);
    if (!PyTuple_CheckExact(rules)) {
        PyErr_SetString(PyExc_TypeError, "rules must be a tuple");
        return -1;
    }
    self->n_rules = PyTuple_GET_SIZE(rules);
    self->rules = PyMem_Calloc(self->n_rules ? (size_t)self->n_rules : 1, sizeof(Rule));
    if (self->rules == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (i = 0; i < self->n_rules; i++) {
        PyObject *terms = PyTuple_GET_ITEM(rules, i);
        Rule *rule = &self->rules[i];
        Py_ssize_t j;
        if (!PyTuple_CheckExact(terms) || PyTuple_GET_SIZE(terms) > MAX_RULE_TERMS) {
            PyErr_SetString(PyExc_TypeError, "a rule is a short tuple of (field, coef) pairs");
            return -1;
        }
        rule->n = (int)PyTuple_GET_SIZE(terms);
        for (j = 0; j < rule->n; j++) {
            PyObject *term = PyTuple_GET_ITEM(terms, j);
            if (!PyTuple_CheckExact(term) || PyTuple_GET_SIZE(term) != 2
                || as_int(PyTuple_GET_ITEM(term, 0), 0, (long)self->n_counts - 1, "rule field", &rule->field[j]) < 0
                || as_int(PyTuple_GET_ITEM(term, 1), -1, 1, "rule coef", &rule->coef[j]) < 0) {
                if (!PyErr_Occurred()) {
                    PyErr_SetString(PyExc_TypeError, "a rule term is (field, coef)");
                }
                return -1;
            }
        }
    }
    return 0;
}

static int reader_clear(Reader *self);

static PyObject *
reader_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *names[] = {"fallback", "layout", "anthropic", "responses", "chat", NULL};
    PyObject *fallback, *layout, *plans[N_SHAPES];
    Reader *self;
    int k;
    if (!PyArg_ParseTupleAndKeywords(
            args, kwds, "OOOOO:Reader", names, &fallback, &layout, &plans[0], &plans[1], &plans[2])) {
        return NULL;
    }
    if (!PyCallable_Check(fallback)) {
        PyErr_SetString(PyExc_TypeError, "fallback must be callable");
        return NULL;
    }
    self = (Reader *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->vectorcall = reader_vectorcall;
    Py_INCREF(fallback);
    self->fallback = fallback;
    self->plans = PyTuple_Pack(3, plans[0], plans[1], plans[2]);
    if (self->plans == NULL || read_layout(self, layout) < 0) {
        goto fail;
    }
    for (k = 0; k < N_SHAPES; k++) {
        if (make_block(self, plans[k], &self->blocks[k]) < 0) {
            goto fail;
        }
    }
    return (PyObject *)self;
fail:
    Py_DECREF(self);
    return NULL;
}

static int
reader_traverse(Reader *self, visitproc visit, void *arg)
{
    Py_VISIT(self->fallback);
    Py_VISIT(self->usage_type);
    Py_VISIT(self->defaults);
    Py_VISIT(self->plans);
    return 0;
}

static int
reader_clear(Reader *self)
{
    Py_CLEAR(self->fallback);
    return 0;
}

static void
reader_dealloc(Reader *self)
{
    int k;
    PyObject_GC_UnTrack(self);
    Py_CLEAR(self->fallback);
    Py_CLEAR(self->usage_type);
    Py_CLEAR(self->defaults);
    Py_CLEAR(self->plans);
    for (k = 0; k < N_SHAPES; k++) {
        PyMem_Free(self->blocks[k].ops);
        PyMem_Free(self->blocks[k].rules);
        self->blocks[k].ops = NULL;
        self->blocks[k].rules = NULL;
    }
    PyMem_Free(self->rules);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
reader_handles(Reader *self, PyObject *body)
{
    /* The shape a body would be read as by the operations, or None when it goes to the Python reader
     * (for tests: a Reader that gave every body to the Python reader would pass the comparisons). */
    static const char *shapes[N_SHAPES] = {"anthropic", "responses", "chat"};
    int shape;
    PyObject *usage = NULL;
    if (!PyDict_CheckExact(body) || !read_itself(self, body, &usage, &shape)) {
        Py_RETURN_NONE;
    }
    Py_DECREF(usage);
    return PyUnicode_FromString(shapes[shape]);
}

static PyMethodDef reader_methods[] = {
    {"handles", (PyCFunction)reader_handles, METH_O, "The shape the operations read this body as, or None."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef reader_members[] = {
    {"fallback", T_OBJECT, offsetof(Reader, fallback), READONLY, "The Python reader."},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject ReaderType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "tokentrail.adapters._fastread.Reader",
    .tp_basicsize = sizeof(Reader),
    .tp_dealloc = (destructor)reader_dealloc,
    .tp_vectorcall_offset = offsetof(Reader, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "Reader(fallback, layout, anthropic, responses, chat): a provider name's usage reader.",
    .tp_traverse = (traverseproc)reader_traverse,
    .tp_clear = (inquiry)reader_clear,
    .tp_methods = reader_methods,
    .tp_members = reader_members,
    .tp_new = reader_new,
};

/* -- named_read: `_mapped.named_read` ------------------------------------------------------------------- */

static PyObject *named_table = NULL; /* provider name → its reader (_mapped.NAMED_READERS) */
static PyObject *named_slow = NULL;  /* _mapped.named_usage(body, provider): makes and keeps a reader */

static PyObject *
set_named(PyObject *module, PyObject *args)
{
    PyObject *table, *slow;
    (void)module;
    if (!PyArg_ParseTuple(args, "O!O:set_named", &PyDict_Type, &table, &slow)) {
        return NULL;
    }
    if (!PyCallable_Check(slow)) {
        PyErr_SetString(PyExc_TypeError, "set_named(table, slow): slow must be callable");
        return NULL;
    }
    Py_INCREF(table);
    Py_XSETREF(named_table, table);
    Py_INCREF(slow);
    Py_XSETREF(named_slow, slow);
    Py_RETURN_NONE;
}

/* What `_mapped._named_read(body, provider)` returns (see there), with no Python frame of its own. */
static PyObject *
named_read(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *body, *provider, *read, *result;
    (void)module;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "named_read(body, provider) takes 2 arguments");
        return NULL;
    }
    body = args[0];
    provider = args[1];
    if (named_table == NULL || !PyDict_CheckExact(body) || !PyUnicode_CheckExact(provider)
        || PyUnicode_GET_LENGTH(provider) == 0) {
        Py_RETURN_NONE;
    }
    read = PyDict_GetItemWithError(named_table, provider);
    if (read == NULL) {
        PyObject *both[2] = {body, provider};
        if (PyErr_Occurred()) {
            return NULL;
        }
        result = PyObject_Vectorcall(named_slow, both, 2, NULL);
    }
    else {
        Py_INCREF(read); /* held: the table may be emptied while it runs */
        if (Py_IS_TYPE(read, &ReaderType) && ((Reader *)read)->fallback != NULL) {
            PyObject *usage = NULL;
            int shape;
            if (read_itself((Reader *)read, body, &usage, &shape)) {
                Py_DECREF(read);
                return usage;
            }
            result = PyObject_Vectorcall(((Reader *)read)->fallback, &body, 1, NULL);
        }
        else {
            result = PyObject_Vectorcall(read, &body, 1, NULL);
        }
        Py_DECREF(read);
    }
    if (result == NULL && PyErr_ExceptionMatches(PyExc_Exception)) {
        PyErr_Clear(); /* `capture` reads the body again, and says what is wrong */
        Py_RETURN_NONE;
    }
    return result;
}

static PyMethodDef module_methods[] = {
    {"set_named", (PyCFunction)set_named, METH_VARARGS, "set_named(table, slow): what named_read reads with."},
    {"named_read", (PyCFunction)(void (*)(void))named_read, METH_FASTCALL,
     "named_read(body, provider): the usage the kept reader reads, or None (see _mapped._named_read)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fastread", "The provider-name usage reader, run as data (see _fast.py).", -1,
    module_methods, NULL, NULL, NULL, NULL,
};

static int
intern(PyObject **slot, const char *text)
{
    *slot = PyUnicode_InternFromString(text);
    return *slot == NULL ? -1 : 0;
}

PyMODINIT_FUNC
PyInit__fastread(void)
{
    PyObject *m;
    if (intern(&s_custom_id, "custom_id") < 0 || intern(&s_response, "response") < 0
        || intern(&s_recordId, "recordId") < 0 || intern(&s_type, "type") < 0
        || intern(&s_object, "object") < 0 || intern(&s_choices, "choices") < 0
        || intern(&s_message, "message") < 0 || intern(&s_response_done, "response.done") < 0
        || intern(&s_chat_completion, "chat.completion") < 0
        || intern(&s_chat_chunk, "chat.completion.chunk") < 0
        || intern(&s_text_completion, "text_completion") < 0) {
        return NULL;
    }
    if (PyType_Ready(&ReaderType) < 0) {
        return NULL;
    }
    m = PyModule_Create(&module);
    if (m == NULL) {
        return NULL;
    }
    Py_INCREF(&ReaderType);
    if (PyModule_AddObject(m, "Reader", (PyObject *)&ReaderType) < 0) {
        Py_DECREF(&ReaderType);
        Py_DECREF(m);
        return NULL;
    }
    if (PyModule_AddIntConstant(m, "VERSION", FASTREAD_VERSION) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
