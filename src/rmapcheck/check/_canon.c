/*
 * rmapcheck.check._canon: the bytes of world.canonical() marshalled, written in C.
 *
 * The canonical form of an explored state is built by a walk that numbers
 * every kernel object in the order it is first reached and encodes each one
 * as a tuple (rmapcheck/check/world.py, canonical()). This module builds the
 * very same tuples, object for object, without the interpreter's cost per
 * attribute and per call; world.py uses it when it is built and checks it
 * against the Python walk in its tests (tests/test_canon.py). Whatever this
 * file does not know (an object without an encoder, a process order that
 * needs the full signature, a kernel dict seen for the first time) it hands
 * to the Python functions world.py registers with configure().
 *
 * Evaluation order matters: objects are numbered when first named, so every
 * encoder names its references in the order the Python encoder does.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <marshal.h>
#include <structmember.h>

/* configured by world.py */
static PyObject *T_task, *T_mm, *T_vma, *T_av, *T_avc, *T_folio;
static PyObject *T_ri, *T_sn, *T_ms, *T_ksm, *T_cache;
static PyObject *ZERO_PAGE, *ENCODERS, *KERNEL_FIELDS, *ROOT_DICTS, *EMPTY_DICT, *FIELDS;
static PyObject *F_kernel_fields, *F_root_dict, *F_proc_order, *F_generic_fields;
static long TYPESAFE;

/* interned names */
enum {
    S_k, S_tasks, S_memory, S_mm, S_mmap, S_pgtable, S_faults, S_preempt, S_live, S_mm_users,
    S_mm_count, S_ksm_flags, S_ksm_rmap_items, S_ksm_merging_pages, S_ksm_zero_pages, S_vm_start,
    S_vm_end, S_vm_pgoff, S_vm_flags, S_anon_vma, S_anon_vma_chain, S_vm_mm, S_root, S_parent,
    S_refcount, S_num_children, S_num_active_vmas, S_rb_root, S_rwsem_writer, S_rwsem_readers,
    S_vma, S_mapping, S_index, S_mapcount, S_refcount_f, S_anon_exclusive, S_content, S_ksm,
    S_stable_node, S_locked, S_address, S_flags, S_oldchecksum, S_age, S_remaining_skips, S_head,
    S_key, S_hlist, S_kpfn, S_rmap_hlist_len, S_chain, S_nid, S_page_alloc, S_rmap_list,
    S_mm_list, S_scan_mm_slot, S_scan_address, S_scan_rmap_pos, S_seqnr, S_root_stable_tree,
    S_root_unstable_tree, S_pages_shared, S_pages_sharing, S_pages_unshared, S_rmap_items,
    S_stable_node_chains, S_stable_node_dups, S_pages_skipped, S_zero_pages, S_rmap_item_cache,
    S_stable_node_cache, S_mm_slot_cache, S_nr_live, S_freelist, S_objects, S_slot, S_name_,
    S_dict, S_set, S_cache, S_at, S_page, S_free, S_t, S_mmtag, S_v, S_a, S_c, S_f, S_ritag,
    S_sntag, S_mstag, S_ksmtag, S_get, S_slots, S_folio, S_items,
    NSTR
};
static const char *const NAMES[NSTR] = {
    "k", "tasks", "memory", "mm", "mmap", "pgtable", "faults", "preempt", "_live", "mm_users",
    "mm_count", "ksm_flags", "ksm_rmap_items", "ksm_merging_pages", "ksm_zero_pages", "vm_start",
    "vm_end", "vm_pgoff", "vm_flags", "anon_vma", "anon_vma_chain", "vm_mm", "root", "parent",
    "refcount", "num_children", "num_active_vmas", "rb_root", "rwsem_writer", "rwsem_readers",
    "vma", "mapping", "index", "_mapcount", "_refcount", "anon_exclusive", "content", "ksm",
    "stable_node", "locked", "address", "flags", "oldchecksum", "age", "remaining_skips", "head",
    "key", "hlist", "kpfn", "rmap_hlist_len", "chain", "nid", "page_alloc", "rmap_list",
    "mm_list", "scan_mm_slot", "scan_address", "scan_rmap_pos", "seqnr", "root_stable_tree",
    "root_unstable_tree", "pages_shared", "pages_sharing", "pages_unshared", "rmap_items",
    "stable_node_chains", "stable_node_dups", "pages_skipped", "zero_pages", "rmap_item_cache",
    "stable_node_cache", "mm_slot_cache", "nr_live", "freelist", "objects", "_slot", "__name__",
    "dict", "set", "cache", "@", "page", "free", "t", "mm", "v", "a", "c", "f", "ri",
    "sn", "ms", "ksm", "get", "__slots__", "folio", "items",
};
static PyObject *S[NSTR];

/*
 * getattr(o, S[name]), with a cache per name of the last type read and the
 * offset of its slot: most names belong to one class, and a slot read
 * through its member descriptor is a load. The cache holds while the type
 * is unchanged (its version tag) and uses the generic attribute lookup
 * (a member descriptor, a data descriptor, wins over an instance dict).
 */
static PyTypeObject *ic_type[NSTR];
static unsigned int ic_version[NSTR];
static Py_ssize_t ic_offset[NSTR];

static PyObject *ga_slow(PyObject *o, int name)
{
    PyTypeObject *t = Py_TYPE(o);
    if (t->tp_getattro == PyObject_GenericGetAttr) {
        PyObject *d = _PyType_Lookup(t, S[name]);
        if (d != NULL && Py_IS_TYPE(d, &PyMemberDescr_Type)
                && PyType_HasFeature(t, Py_TPFLAGS_VALID_VERSION_TAG)) {
            PyMemberDef *m = ((PyMemberDescrObject *)d)->d_member;
            if (m->type == T_OBJECT_EX) {
                ic_type[name] = t;
                ic_version[name] = t->tp_version_tag;
                ic_offset[name] = m->offset;
            }
        }
    }
    return PyObject_GetAttr(o, S[name]);
}

static inline PyObject *GA(PyObject *o, int name)
{
    PyTypeObject *t = Py_TYPE(o);
    if (t == ic_type[name] && t->tp_version_tag == ic_version[name]
            && PyType_HasFeature(t, Py_TPFLAGS_VALID_VERSION_TAG)) {
        PyObject *v = *(PyObject **)((char *)o + ic_offset[name]);
        if (v != NULL)
            return Py_NewRef(v);
    }
    return ga_slow(o, name);
}

/*
 * The numbering: object -> number in the order first named (world._Numbering).
 * world._Numbering is a dict; objects that hash by identity (every model
 * class) are kept here in an open-addressing table by address, any other
 * (none in the model; a tuple subclass a design might name) in a dict by
 * value, as the Python dict would. None is None and the zero page -1.
 */
typedef struct {
    PyObject *key;
    Py_ssize_t val;
} Slot;

typedef struct {
    PyObject_HEAD
    PyObject **objs;    /* the objects in order, strong references */
    Py_ssize_t n, cap;
    Slot *table;        /* mask + 1 slots, at most half full */
    Py_ssize_t mask;
    PyObject *byvalue;  /* dict, or NULL */
} Numbering;

static PyTypeObject NumberingType;

static inline size_t addr_hash(PyObject *o)
{
    return (size_t)(((uint64_t)(uintptr_t)o >> 4) * 0x9E3779B97F4A7C15ull >> 16);
}

static int table_grow(Numbering *c)
{
    Py_ssize_t size = (c->mask + 1) * 2;
    Slot *t = PyMem_Calloc(size, sizeof(Slot));
    if (t == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i <= c->mask; i++) {
        if (c->table[i].key == NULL)
            continue;
        size_t j = addr_hash(c->table[i].key) & (size - 1);
        while (t[j].key != NULL)
            j = (j + 1) & (size - 1);
        t[j] = c->table[i];
    }
    PyMem_Free(c->table);
    c->table = t;
    c->mask = size - 1;
    return 0;
}

static int append_obj(Numbering *c, PyObject *o)
{
    if (c->n == c->cap) {
        Py_ssize_t cap = c->cap ? 2 * c->cap : 64;
        PyObject **objs = PyMem_Realloc(c->objs, cap * sizeof(PyObject *));
        if (objs == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        c->objs = objs;
        c->cap = cap;
    }
    c->objs[c->n++] = Py_NewRef(o);
    return 0;
}

/* The number of o (not None), a new object getting the next one; -2 on error. */
static Py_ssize_t number(Numbering *c, PyObject *o)
{
    if (o == ZERO_PAGE)
        return -1;
    PyTypeObject *t = Py_TYPE(o);
    if (t->tp_hash != PyBaseObject_Type.tp_hash || t->tp_richcompare != PyBaseObject_Type.tp_richcompare) {
        if (c->byvalue == NULL && (c->byvalue = PyDict_New()) == NULL)
            return -2;
        PyObject *v = PyDict_GetItemWithError(c->byvalue, o);
        if (v != NULL)
            return PyLong_AsSsize_t(v);
        if (PyErr_Occurred())
            return -2;
        PyObject *n = PyLong_FromSsize_t(c->n);
        if (n == NULL)
            return -2;
        int rc = PyDict_SetItem(c->byvalue, o, n);
        Py_DECREF(n);
        if (rc < 0 || append_obj(c, o) < 0)
            return -2;
        return c->n - 1;
    }
    size_t j = addr_hash(o) & c->mask;
    while (c->table[j].key != NULL) {
        if (c->table[j].key == o)
            return c->table[j].val;
        j = (j + 1) & c->mask;
    }
    if (append_obj(c, o) < 0)
        return -2;
    c->table[j].key = o;
    c->table[j].val = c->n - 1;
    if (2 * c->n > c->mask && table_grow(c) < 0)
        return -2;
    return c->n - 1;
}

/* Empty again, for the next walk. */
static void numbering_reset(Numbering *c)
{
    for (Py_ssize_t i = 0; i < c->n; i++)
        Py_DECREF(c->objs[i]);
    c->n = 0;
    memset(c->table, 0, (c->mask + 1) * sizeof(Slot));
    Py_CLEAR(c->byvalue);
}

/* oid(o): its number as an int (None for None), a new reference */
static PyObject *oid(Numbering *c, PyObject *o)
{
    if (o == Py_None)
        return Py_NewRef(Py_None);
    Py_ssize_t n = number(c, o);
    return n == -2 ? NULL : PyLong_FromSsize_t(n);
}

static inline int is_scalar(PyTypeObject *t)
{
    return t == &PyLong_Type || t == &PyUnicode_Type || t == &PyBool_Type || t == &PyFloat_Type
        || t == &PyBytes_Type || t == Py_TYPE(Py_None);
}

static PyObject *ref(Numbering *c, PyObject *o);

/* tuple(map(oid, seq)) */
static PyObject *oid_seq(Numbering *c, PyObject *seq)
{
    PyObject *fast = PySequence_Fast(seq, "not iterable");
    if (fast == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    PyObject *out = PyTuple_New(n);
    if (out == NULL)
        goto fail;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *x = oid(c, PySequence_Fast_GET_ITEM(fast, i));
        if (x == NULL)
            goto fail;
        PyTuple_SET_ITEM(out, i, x);
    }
    Py_DECREF(fast);
    return out;
fail:
    Py_XDECREF(out);
    Py_DECREF(fast);
    return NULL;
}

/* Fill tuple slot i of t with expr (a new reference), or fail. */
#define SET(t, i, expr) do { PyObject *_x = (expr); if (_x == NULL) goto fail; PyTuple_SET_ITEM((t), (i), _x); } while (0)

/* ("cache", nr_live, tuple(map(oid, freelist)) if typesafe else len(freelist)) */
static PyObject *enc_cache(Numbering *c, PyObject *o)
{
    PyObject *t = PyTuple_New(3), *fl = NULL, *fv = NULL;
    if (t == NULL)
        return NULL;
    PyTuple_SET_ITEM(t, 0, Py_NewRef(S[S_cache]));
    SET(t, 1, GA(o, S_nr_live));
    fv = GA(o, S_flags);
    if (fv == NULL)
        goto fail;
    long flags = PyLong_AsLong(fv);
    if (flags == -1 && PyErr_Occurred())
        goto fail;
    fl = GA(o, S_freelist);
    if (fl == NULL)
        goto fail;
    if (flags & TYPESAFE) {
        SET(t, 2, oid_seq(c, fl));
    } else {
        Py_ssize_t n = PyObject_Length(fl);
        if (n < 0)
            goto fail;
        SET(t, 2, PyLong_FromSsize_t(n));
    }
    Py_DECREF(fv);
    Py_DECREF(fl);
    return t;
fail:
    Py_XDECREF(fv);
    Py_XDECREF(fl);
    Py_DECREF(t);
    return NULL;
}

static PyObject *tag_pair(int tag, PyObject *v)  /* steals v */
{
    if (v == NULL)
        return NULL;
    PyObject *t = PyTuple_New(2);
    if (t == NULL) {
        Py_DECREF(v);
        return NULL;
    }
    PyTuple_SET_ITEM(t, 0, Py_NewRef(S[tag]));
    PyTuple_SET_ITEM(t, 1, v);
    return t;
}

static int all_scalar(PyObject *fast)
{
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    PyObject **items = PySequence_Fast_ITEMS(fast);
    for (Py_ssize_t i = 0; i < n; i++)
        if (!is_scalar(Py_TYPE(items[i])))
            return 0;
    return 1;
}

/* sorted(list) as a tuple; steals list */
static PyObject *sorted_tuple(PyObject *list)
{
    if (list == NULL)
        return NULL;
    if (PyList_Sort(list) < 0) {
        Py_DECREF(list);
        return NULL;
    }
    PyObject *t = PyList_AsTuple(list);
    Py_DECREF(list);
    return t;
}

static PyObject *ref_dict(Numbering *c, PyObject *o)
{
    Py_ssize_t pos = 0;
    PyObject *key, *val;
    int scalar = 1;
    while (PyDict_Next(o, &pos, &key, &val))
        if (!is_scalar(Py_TYPE(key)) || !is_scalar(Py_TYPE(val))) {
            scalar = 0;
            break;
        }
    if (scalar)
        return tag_pair(S_dict, sorted_tuple(PyDict_Items(o)));
    PyObject *items = PyList_New(0);
    if (items == NULL)
        return NULL;
    /* keys and values numbered in the dict's order, as the Python loop does */
    PyObject *snap = PyDict_Items(o);
    if (snap == NULL)
        goto fail;
    Py_ssize_t n = PyList_GET_SIZE(snap);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *kv = PyList_GET_ITEM(snap, i);
        PyObject *kk = PyTuple_GET_ITEM(kv, 0), *v = PyTuple_GET_ITEM(kv, 1), *k2, *v2;
        if (is_scalar(Py_TYPE(kk))) {
            k2 = Py_NewRef(kk);
        } else {
            PyObject *r = ref(c, kk);
            if (r == NULL)
                goto fail;
            k2 = PyObject_Repr(r);
            Py_DECREF(r);
            if (k2 == NULL)
                goto fail;
        }
        v2 = is_scalar(Py_TYPE(v)) ? Py_NewRef(v) : ref(c, v);
        if (v2 == NULL) {
            Py_DECREF(k2);
            goto fail;
        }
        PyObject *pair = PyTuple_Pack(2, k2, v2);
        Py_DECREF(k2);
        Py_DECREF(v2);
        if (pair == NULL || PyList_Append(items, pair) < 0) {
            Py_XDECREF(pair);
            goto fail;
        }
        Py_DECREF(pair);
    }
    Py_DECREF(snap);
    return tag_pair(S_dict, sorted_tuple(items));
fail:
    Py_XDECREF(snap);
    Py_DECREF(items);
    return NULL;
}

static PyObject *ref_set(Numbering *c, PyObject *o)
{
    PyObject *items = PyList_New(0), *it = NULL, *x;
    if (items == NULL)
        return NULL;
    it = PyObject_GetIter(o);
    if (it == NULL)
        goto fail;
    while ((x = PyIter_Next(it)) != NULL) {
        PyObject *r = ref(c, x);
        Py_DECREF(x);
        if (r == NULL)
            goto fail;
        PyObject *s = PyObject_Repr(r);
        Py_DECREF(r);
        if (s == NULL || PyList_Append(items, s) < 0) {
            Py_XDECREF(s);
            goto fail;
        }
        Py_DECREF(s);
    }
    if (PyErr_Occurred())
        goto fail;
    Py_DECREF(it);
    return tag_pair(S_set, sorted_tuple(items));
fail:
    Py_XDECREF(it);
    Py_DECREF(items);
    return NULL;
}

/* world.canonical()'s ref() */
static PyObject *ref(Numbering *c, PyObject *o)
{
    PyTypeObject *t = Py_TYPE(o);
    if (is_scalar(t))
        return Py_NewRef(o);
    if (t == &PyList_Type || t == &PyTuple_Type) {
        PyObject *fast = PySequence_Tuple(o);
        if (fast == NULL)
            return NULL;
        if (all_scalar(fast))
            return fast;
        Py_ssize_t n = PyTuple_GET_SIZE(fast);
        PyObject *out = PyTuple_New(n);
        if (out == NULL) {
            Py_DECREF(fast);
            return NULL;
        }
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *x = ref(c, PyTuple_GET_ITEM(fast, i));
            if (x == NULL) {
                Py_DECREF(out);
                Py_DECREF(fast);
                return NULL;
            }
            PyTuple_SET_ITEM(out, i, x);
        }
        Py_DECREF(fast);
        return out;
    }
    if (t == &PyDict_Type)
        return ref_dict(c, o);
    if (t == &PySet_Type || t == &PyFrozenSet_Type)
        return ref_set(c, o);
    if ((PyObject *)t == T_cache)
        return enc_cache(c, o);
    return tag_pair(S_at, oid(c, o));
}

/* list(o.items()), sorted: a dict's directly */
static PyObject *sorted_items(PyObject *o)
{
    PyObject *items;
    if (PyDict_CheckExact(o)) {
        items = PyDict_Items(o);
    } else {
        PyObject *view = PyObject_CallMethodNoArgs(o, S[S_items]);
        items = view == NULL ? NULL : PySequence_List(view);
        Py_XDECREF(view);
    }
    if (items != NULL && PyList_Sort(items) < 0)
        Py_CLEAR(items);
    return items;
}

/* type(o).__name__, remembered for the last type asked */
static PyObject *type_name(PyObject *o)
{
    static PyTypeObject *last;
    static PyObject *name;
    PyTypeObject *t = Py_TYPE(o);
    if (t != last || name == NULL) {
        PyObject *n = PyObject_GetAttr((PyObject *)t, S[S_name_]);
        if (n == NULL)
            return NULL;
        Py_XSETREF(name, n);
        Py_INCREF(t);  /* kept alive: its address stays its own */
        Py_XSETREF(last, t);
    }
    return Py_NewRef(name);
}

/* ---- the bytes: marshal's version 2 format, written as the walk goes ---- */

typedef struct {
    char *p;
    Py_ssize_t len, cap;
} Buf;

static int grow(Buf *b, Py_ssize_t need)
{
    if (b->len + need <= b->cap)
        return 0;
    Py_ssize_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + need)
        cap *= 2;
    char *p = PyMem_Realloc(b->p, cap);
    if (p == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

static inline int w_raw(Buf *b, const char *s, Py_ssize_t n)
{
    if (grow(b, n) < 0)
        return -1;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    return 0;
}

static inline void put_i32(char *at, long x)
{
    uint32_t u = (uint32_t)x;
    at[0] = (char)(u & 0xff);
    at[1] = (char)((u >> 8) & 0xff);
    at[2] = (char)((u >> 16) & 0xff);
    at[3] = (char)((u >> 24) & 0xff);
}

/* a type code and a 4-byte little-endian number (marshal's w_long) */
static inline int w_code(Buf *b, char code, long x)
{
    if (grow(b, 5) < 0)
        return -1;
    b->p[b->len] = code;
    put_i32(b->p + b->len + 1, x);
    b->len += 5;
    return 0;
}

static inline int w_tuple(Buf *b, Py_ssize_t n) { return w_code(b, '(', (long)n); }
static inline int w_small(Buf *b, long x) { return w_code(b, 'i', x); }
static inline int w_none(Buf *b) { return w_raw(b, "N", 1); }

static int w_obj(Buf *b, PyObject *o);

/* what marshal.dumps(o, 2) writes, appended */
static int w_marshal(Buf *b, PyObject *o)
{
    PyObject *m = PyMarshal_WriteObjectToString(o, 2);
    if (m == NULL)
        return -1;
    int rc = w_raw(b, PyBytes_AS_STRING(m), PyBytes_GET_SIZE(m));
    Py_DECREF(m);
    return rc;
}

static int w_str(Buf *b, PyObject *o)
{
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(o, &n);
    if (s == NULL) {
        PyErr_Clear();  /* surrogates: marshal's own encoding */
        return w_marshal(b, o);
    }
    if (w_code(b, 'u', (long)n) < 0)
        return -1;
    return w_raw(b, s, n);
}

/* marshal.dumps(o, 2) for the scalars and tuples a canonical form is made of */
static int w_obj(Buf *b, PyObject *o)
{
    PyTypeObject *t = Py_TYPE(o);
    if (o == Py_None)
        return w_none(b);
    if (o == Py_True)
        return w_raw(b, "T", 1);
    if (o == Py_False)
        return w_raw(b, "F", 1);
    if (t == &PyLong_Type) {
        int overflow;
        long x = PyLong_AsLongAndOverflow(o, &overflow);
        if (x == -1 && PyErr_Occurred())
            return -1;
        if (!overflow && x >= -2147483648L && x <= 2147483647L)
            return w_small(b, x);
        return w_marshal(b, o);
    }
    if (t == &PyUnicode_Type)
        return w_str(b, o);
    if (t == &PyTuple_Type) {
        Py_ssize_t n = PyTuple_GET_SIZE(o);
        if (w_tuple(b, n) < 0)
            return -1;
        for (Py_ssize_t i = 0; i < n; i++)
            if (w_obj(b, PyTuple_GET_ITEM(o, i)) < 0)
                return -1;
        return 0;
    }
    if (t == &PyBytes_Type) {
        if (w_code(b, 's', (long)PyBytes_GET_SIZE(o)) < 0)
            return -1;
        return w_raw(b, PyBytes_AS_STRING(o), PyBytes_GET_SIZE(o));
    }
    return w_marshal(b, o);
}

/* w_obj(getattr(o, name)) */
static int w_attr(Buf *b, PyObject *o, int name)
{
    PyObject *v = GA(o, name);
    if (v == NULL)
        return -1;
    int rc = w_obj(b, v);
    Py_DECREF(v);
    return rc;
}

/* oid(o), as marshal writes it */
static int w_oid(Numbering *c, Buf *b, PyObject *o)
{
    if (o == Py_None)
        return w_none(b);
    Py_ssize_t n = number(c, o);
    return n == -2 ? -1 : w_small(b, (long)n);
}

static int w_oid_attr(Numbering *c, Buf *b, PyObject *o, int name)
{
    PyObject *v = GA(o, name);
    if (v == NULL)
        return -1;
    int rc = w_oid(c, b, v);
    Py_DECREF(v);
    return rc;
}

/* tuple(map(oid, seq)) */
static int w_oid_seq(Numbering *c, Buf *b, PyObject *seq)
{
    PyObject *fast = PySequence_Fast(seq, "not iterable");
    if (fast == NULL)
        return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    int rc = w_tuple(b, n);
    for (Py_ssize_t i = 0; rc == 0 && i < n; i++)
        rc = w_oid(c, b, PySequence_Fast_GET_ITEM(fast, i));
    Py_DECREF(fast);
    return rc;
}

static int w_oid_seq_attr(Numbering *c, Buf *b, PyObject *o, int name)
{
    PyObject *v = GA(o, name);
    if (v == NULL)
        return -1;
    int rc = w_oid_seq(c, b, v);
    Py_DECREF(v);
    return rc;
}

static inline int w_tag(Buf *b, Py_ssize_t n, int tag)
{
    if (w_tuple(b, n) < 0)
        return -1;
    return w_str(b, S[tag]);
}

/* ref(kmem_cache) */
static int w_cache(Numbering *c, Buf *b, PyObject *o)
{
    PyObject *t = enc_cache(c, o);
    if (t == NULL)
        return -1;
    int rc = w_obj(b, t);
    Py_DECREF(t);
    return rc;
}

/* world.canonical()'s ref(), written */
static int w_ref(Numbering *c, Buf *b, PyObject *o)
{
    PyTypeObject *t = Py_TYPE(o);
    if (is_scalar(t))
        return w_obj(b, o);
    if (t == &PyList_Type || t == &PyTuple_Type) {
        PyObject *fast = PySequence_Tuple(o);
        if (fast == NULL)
            return -1;
        Py_ssize_t n = PyTuple_GET_SIZE(fast);
        int rc = w_tuple(b, n);
        for (Py_ssize_t i = 0; rc == 0 && i < n; i++)
            rc = w_ref(c, b, PyTuple_GET_ITEM(fast, i));
        Py_DECREF(fast);
        return rc;
    }
    if (t == &PyDict_Type) {
        Py_ssize_t pos = 0;
        PyObject *key, *val;
        while (PyDict_Next(o, &pos, &key, &val))
            if (!is_scalar(Py_TYPE(key)) || !is_scalar(Py_TYPE(val)))
                goto built;
        /* ("dict", tuple(sorted(o.items()))) */
        PyObject *items = PyDict_Items(o);
        if (items == NULL || PyList_Sort(items) < 0) {
            Py_XDECREF(items);
            return -1;
        }
        int rc = w_tag(b, 2, S_dict);
        Py_ssize_t n = PyList_GET_SIZE(items);
        if (rc == 0)
            rc = w_tuple(b, n);
        for (Py_ssize_t i = 0; rc == 0 && i < n; i++)
            rc = w_obj(b, PyList_GET_ITEM(items, i));
        Py_DECREF(items);
        return rc;
    }
    if ((PyObject *)t == T_cache)
        return w_cache(c, b, o);
    if (t == &PySet_Type || t == &PyFrozenSet_Type)
        goto built;
    if (w_tag(b, 2, S_at) < 0)
        return -1;
    return w_oid(c, b, o);
built:;
    PyObject *r = ref(c, o);
    if (r == NULL)
        return -1;
    int rc = w_obj(b, r);
    Py_DECREF(r);
    return rc;
}

/* ---- the encoders of world.py, field for field ---- */

static int enc_task(Numbering *c, Buf *b, PyObject *o)
{
    if (w_tag(b, 2, S_t) < 0)
        return -1;
    return w_oid_attr(c, b, o, S_mm);
}

static int enc_mm(Numbering *c, Buf *b, PyObject *o)
{
    int rc = -1;
    PyObject *items = NULL, *nums = NULL, *pgtable = GA(o, S_pgtable);
    if (pgtable == NULL)
        return -1;
    items = sorted_items(pgtable);
    if (items == NULL)
        goto done;
    /* the page table first: its folios are numbered before the VMAs */
    Py_ssize_t n = PyList_GET_SIZE(items);
    nums = PyList_New(n);
    if (nums == NULL)
        goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *f = PySequence_GetItem(PyTuple_GET_ITEM(PyList_GET_ITEM(items, i), 1), 0);
        if (f == NULL)
            goto done;
        PyObject *id = f == Py_None ? Py_NewRef(Py_None) : oid(c, f);
        Py_DECREF(f);
        if (id == NULL)
            goto done;
        PyList_SET_ITEM(nums, i, id);
    }
    if (w_tag(b, 10, S_mmtag) < 0 || w_attr(b, o, S_live) < 0 || w_oid_seq_attr(c, b, o, S_mmap) < 0
            || w_tuple(b, n) < 0)
        goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *pte = PyTuple_GET_ITEM(PyList_GET_ITEM(items, i), 1);
        if (w_tuple(b, 4) < 0 || w_obj(b, PyTuple_GET_ITEM(PyList_GET_ITEM(items, i), 0)) < 0
                || w_obj(b, PyList_GET_ITEM(nums, i)) < 0)
            goto done;
        PyObject *w = PySequence_GetItem(pte, 1);
        if (w == NULL)
            goto done;
        int r2 = w_obj(b, w);
        Py_DECREF(w);
        if (r2 < 0)
            goto done;
        PyObject *tn = type_name(pte);
        if (tn == NULL)
            goto done;
        r2 = w_obj(b, tn);
        Py_DECREF(tn);
        if (r2 < 0)
            goto done;
    }
    if (w_attr(b, o, S_mm_users) < 0 || w_attr(b, o, S_mm_count) < 0 || w_attr(b, o, S_ksm_flags) < 0
            || w_attr(b, o, S_ksm_rmap_items) < 0 || w_attr(b, o, S_ksm_merging_pages) < 0
            || w_attr(b, o, S_ksm_zero_pages) < 0)
        goto done;
    rc = 0;
done:
    Py_XDECREF(nums);
    Py_XDECREF(items);
    Py_DECREF(pgtable);
    return rc;
}

static int enc_vma(Numbering *c, Buf *b, PyObject *o)
{
    if (w_tag(b, 9, S_v) < 0 || w_attr(b, o, S_live) < 0 || w_attr(b, o, S_vm_start) < 0
            || w_attr(b, o, S_vm_end) < 0 || w_attr(b, o, S_vm_pgoff) < 0 || w_attr(b, o, S_vm_flags) < 0
            || w_oid_attr(c, b, o, S_anon_vma) < 0 || w_oid_seq_attr(c, b, o, S_anon_vma_chain) < 0)
        return -1;
    return w_oid_attr(c, b, o, S_vm_mm);
}

static int enc_av(Numbering *c, Buf *b, PyObject *o)
{
    if (w_tag(b, 10, S_a) < 0 || w_attr(b, o, S_live) < 0 || w_oid_attr(c, b, o, S_root) < 0
            || w_oid_attr(c, b, o, S_parent) < 0 || w_attr(b, o, S_refcount) < 0
            || w_attr(b, o, S_num_children) < 0 || w_attr(b, o, S_num_active_vmas) < 0
            || w_oid_seq_attr(c, b, o, S_rb_root) < 0 || w_attr(b, o, S_rwsem_writer) < 0)
        return -1;
    return w_attr(b, o, S_rwsem_readers);
}

static int enc_avc(Numbering *c, Buf *b, PyObject *o)
{
    if (w_tag(b, 4, S_c) < 0 || w_attr(b, o, S_live) < 0 || w_oid_attr(c, b, o, S_vma) < 0)
        return -1;
    return w_oid_attr(c, b, o, S_anon_vma);
}

static int enc_folio(Numbering *c, Buf *b, PyObject *o)
{
    if (w_tag(b, 11, S_f) < 0 || w_attr(b, o, S_live) < 0 || w_oid_attr(c, b, o, S_mapping) < 0
            || w_attr(b, o, S_index) < 0 || w_attr(b, o, S_mapcount) < 0 || w_attr(b, o, S_refcount_f) < 0
            || w_attr(b, o, S_anon_exclusive) < 0 || w_attr(b, o, S_content) < 0 || w_attr(b, o, S_ksm) < 0
            || w_oid_attr(c, b, o, S_stable_node) < 0)
        return -1;
    return w_attr(b, o, S_locked);
}

static int enc_ri(Numbering *c, Buf *b, PyObject *o)
{
    if (w_tag(b, 11, S_ritag) < 0 || w_attr(b, o, S_live) < 0 || w_oid_attr(c, b, o, S_mm) < 0
            || w_attr(b, o, S_address) < 0 || w_attr(b, o, S_flags) < 0 || w_oid_attr(c, b, o, S_anon_vma) < 0
            || w_attr(b, o, S_oldchecksum) < 0 || w_attr(b, o, S_age) < 0 || w_attr(b, o, S_remaining_skips) < 0
            || w_oid_attr(c, b, o, S_head) < 0)
        return -1;
    return w_attr(b, o, S_key);
}

/* world._kpfn(): a page frame number as the folio in it or its place on the freelist */
static int w_kpfn(Numbering *c, Buf *b, PyObject *pfn, PyObject *k)
{
    PyObject *zero = PyLong_FromLong(0);
    if (zero == NULL)
        return -1;
    int neg = PyObject_RichCompareBool(pfn, zero, Py_LT);
    Py_DECREF(zero);
    if (neg < 0)
        return -1;
    if (neg)
        return w_obj(b, pfn);
    int rc = -1;
    PyObject *pa = GA(k, S_page_alloc), *objects = NULL, *f = NULL, *fl = NULL;
    if (pa == NULL)
        return -1;
    objects = GA(pa, S_objects);
    if (objects == NULL)
        goto done;
    if (PyDict_CheckExact(objects)) {
        f = Py_XNewRef(PyDict_GetItemWithError(objects, pfn));
        if (f == NULL && !PyErr_Occurred())
            f = Py_NewRef(Py_None);
    } else {
        f = PyObject_CallMethodObjArgs(objects, S[S_get], pfn, NULL);
    }
    if (f == NULL)
        goto done;
    if (f != Py_None) {
        rc = w_tag(b, 2, S_page) < 0 ? -1 : w_oid(c, b, f);
        goto done;
    }
    fl = GA(pa, S_freelist);
    if (fl == NULL)
        goto done;
    int in = PySequence_Contains(fl, pfn);
    if (in < 0 || w_tag(b, 2, S_free) < 0)
        goto done;
    if (in) {
        Py_ssize_t i = PySequence_Index(fl, pfn), n = PyObject_Length(fl);
        if (i < 0 || n < 0)
            goto done;
        rc = w_small(b, (long)(n - i));
    } else {
        rc = w_small(b, -1);
    }
done:
    Py_XDECREF(fl);
    Py_XDECREF(f);
    Py_XDECREF(objects);
    Py_DECREF(pa);
    return rc;
}

static int enc_sn(Numbering *c, Buf *b, PyObject *o, PyObject *k)
{
    if (w_tag(b, 9, S_sntag) < 0 || w_attr(b, o, S_live) < 0 || w_oid_seq_attr(c, b, o, S_hlist) < 0)
        return -1;
    PyObject *pfn = GA(o, S_kpfn);
    if (pfn == NULL)
        return -1;
    int rc = w_kpfn(c, b, pfn, k);
    Py_DECREF(pfn);
    if (rc < 0 || w_attr(b, o, S_rmap_hlist_len) < 0 || w_attr(b, o, S_head) < 0
            || w_oid_attr(c, b, o, S_chain) < 0 || w_attr(b, o, S_key) < 0)
        return -1;
    return w_attr(b, o, S_nid);
}

static int enc_ms(Numbering *c, Buf *b, PyObject *o)
{
    if (w_tag(b, 4, S_mstag) < 0 || w_attr(b, o, S_live) < 0 || w_oid_attr(c, b, o, S_mm) < 0)
        return -1;
    return w_oid_seq_attr(c, b, o, S_rmap_list);
}

/* tuple([(key, oid(n)) for key, n in sorted(tree.items())]) if tree else () */
static int w_tree(Numbering *c, Buf *b, PyObject *o, int name)
{
    PyObject *tree = GA(o, name);
    if (tree == NULL)
        return -1;
    int rc = -1, truth = PyObject_IsTrue(tree);
    PyObject *items = NULL;
    if (truth <= 0) {
        rc = truth < 0 ? -1 : w_tuple(b, 0);
        goto done;
    }
    items = sorted_items(tree);
    if (items == NULL)
        goto done;
    Py_ssize_t n = PyList_GET_SIZE(items);
    if (w_tuple(b, n) < 0)
        goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *kv = PyList_GET_ITEM(items, i);
        if (w_tuple(b, 2) < 0 || w_obj(b, PyTuple_GET_ITEM(kv, 0)) < 0 || w_oid(c, b, PyTuple_GET_ITEM(kv, 1)) < 0)
            goto done;
    }
    rc = 0;
done:
    Py_XDECREF(items);
    Py_DECREF(tree);
    return rc;
}

static int w_nr_live(Buf *b, PyObject *o, int cache)
{
    PyObject *v = GA(o, cache);
    if (v == NULL)
        return -1;
    int rc = w_attr(b, v, S_nr_live);
    Py_DECREF(v);
    return rc;
}

static int enc_ksm(Numbering *c, Buf *b, PyObject *o)
{
    /* mm_slots_hash repeats what mm_list says; the caches' counts alone matter */
    if (w_tag(b, 19, S_ksmtag) < 0 || w_oid_seq_attr(c, b, o, S_mm_list) < 0
            || w_oid_attr(c, b, o, S_scan_mm_slot) < 0 || w_attr(b, o, S_scan_address) < 0
            || w_attr(b, o, S_scan_rmap_pos) < 0 || w_attr(b, o, S_seqnr) < 0
            || w_tree(c, b, o, S_root_stable_tree) < 0 || w_tree(c, b, o, S_root_unstable_tree) < 0)
        return -1;
    for (int a = S_pages_shared; a <= S_zero_pages; a++)
        if (w_attr(b, o, a) < 0)
            return -1;
    for (int a = S_rmap_item_cache; a <= S_mm_slot_cache; a++)
        if (w_nr_live(b, o, a) < 0)
            return -1;
    return 0;
}

/* An object without an encoder of its own: (cls.__name__, (ref(getattr(o, n, None)) for n in fields)). */
static int enc_generic(Numbering *c, Buf *b, PyObject *o)
{
    PyObject *cls = (PyObject *)Py_TYPE(o), *fields = NULL;
    int rc = -1, slotted = PyObject_HasAttr(cls, S[S_slots]);
    if (slotted)
        fields = Py_XNewRef(PyDict_GetItemWithError(FIELDS, cls));
    if (fields == NULL) {
        if (PyErr_Occurred())
            return -1;
        fields = PyObject_CallOneArg(F_generic_fields, o);
        if (fields == NULL)
            return -1;
    }
    if (!PyTuple_Check(fields)) {
        PyErr_SetString(PyExc_TypeError, "_generic_fields must return a tuple");
        goto done;
    }
    PyObject *name = PyObject_GetAttr(cls, S[S_name_]);
    if (name == NULL)
        goto done;
    int r2 = w_tuple(b, 2) < 0 ? -1 : w_obj(b, name);
    Py_DECREF(name);
    Py_ssize_t n = PyTuple_GET_SIZE(fields);
    if (r2 < 0 || w_tuple(b, n) < 0)
        goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *v = PyObject_GetAttr(o, PyTuple_GET_ITEM(fields, i));
        if (v == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_AttributeError))
                goto done;
            PyErr_Clear();
            v = Py_NewRef(Py_None);
        }
        r2 = w_ref(c, b, v);
        Py_DECREF(v);
        if (r2 < 0)
            goto done;
    }
    rc = 0;
done:
    Py_DECREF(fields);
    return rc;
}

static PyObject *numbering_oid(Numbering *self, PyObject *o)
{
    return oid(self, o);
}

static int encode(Numbering *c, Buf *b, PyObject *o, PyObject *k)
{
    PyObject *t = (PyObject *)Py_TYPE(o);
    if (t == T_vma) return enc_vma(c, b, o);
    if (t == T_avc) return enc_avc(c, b, o);
    if (t == T_av) return enc_av(c, b, o);
    if (t == T_folio) return enc_folio(c, b, o);
    if (t == T_mm) return enc_mm(c, b, o);
    if (t == T_task) return enc_task(c, b, o);
    if (t == T_ri) return enc_ri(c, b, o);
    if (t == T_ms) return enc_ms(c, b, o);
    if (t == T_sn) return enc_sn(c, b, o, k);
    if (t == T_ksm) return enc_ksm(c, b, o);
    PyObject *e = PyDict_GetItemWithError(ENCODERS, t);
    if (e != NULL) {
        /* an encoder world.py has and this file does not */
        Py_INCREF(e);
        PyObject *get = PyObject_GetAttrString((PyObject *)c, "oid");
        PyObject *r = get == NULL ? NULL : PyObject_CallFunctionObjArgs(e, o, get, k, NULL);
        Py_XDECREF(get);
        Py_DECREF(e);
        if (r == NULL)
            return -1;
        int rc = w_obj(b, r);
        Py_DECREF(r);
        return rc;
    }
    if (PyErr_Occurred())
        return -1;
    return enc_generic(c, b, o);
}

/* world._root_dict(), with its memory of the last dict under each name read here */
static PyObject *root_dict(Numbering *c, PyObject *name, PyObject *d)
{
    PyObject *last = PyDict_GetItemWithError(ROOT_DICTS, name);
    if (last == NULL && PyErr_Occurred())
        return NULL;
    if (last != NULL && PyTuple_Check(last) && PyTuple_GET_SIZE(last) == 5) {
        PyObject *keys = PyTuple_GET_ITEM(last, 0), *values = PyTuple_GET_ITEM(last, 1);
        PyObject *types = PyTuple_GET_ITEM(last, 2), *key_types = PyTuple_GET_ITEM(last, 3);
        Py_ssize_t n = PyDict_GET_SIZE(d);
        if (PyList_Check(keys) && PyList_Check(values) && PyList_Check(types) && PyList_Check(key_types)
                && PyList_GET_SIZE(keys) == n && PyList_GET_SIZE(values) == n
                && PyList_GET_SIZE(types) == n && PyList_GET_SIZE(key_types) == n) {
            Py_ssize_t pos = 0, i = 0;
            PyObject *kk, *v;
            int same = 1;
            while (same && PyDict_Next(d, &pos, &kk, &v)) {
                if ((PyObject *)Py_TYPE(v) != PyList_GET_ITEM(types, i)
                        || (PyObject *)Py_TYPE(kk) != PyList_GET_ITEM(key_types, i))
                    break;
                same = PyObject_RichCompareBool(kk, PyList_GET_ITEM(keys, i), Py_EQ);
                if (same > 0)
                    same = PyObject_RichCompareBool(v, PyList_GET_ITEM(values, i), Py_EQ);
                if (same < 0)
                    return NULL;
                i++;
            }
            if (same && i == n)
                return Py_NewRef(PyTuple_GET_ITEM(last, 4));
        }
    }
    return PyObject_CallFunctionObjArgs(F_root_dict, name, d, (PyObject *)c, NULL);
}

/* world._proc_signature(): a process without object identities (the order where the cheap part ties) */
static PyObject *proc_signature(PyObject *task, PyObject *mem)
{
    PyObject *mm = GA(task, S_mm), *mmap = NULL, *vmas = NULL, *ptes = NULL, *items = NULL, *out = NULL;
    if (mm == NULL)
        return NULL;
    mmap = GA(mm, S_mmap);
    if (mmap == NULL)
        goto done;
    Py_SETREF(mmap, PySequence_Tuple(mmap));
    if (mmap == NULL)
        goto done;
    vmas = PyTuple_New(PyTuple_GET_SIZE(mmap));
    if (vmas == NULL)
        goto done;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(mmap); i++) {
        PyObject *v = PyTuple_GET_ITEM(mmap, i), *e = PyTuple_New(6), *x;
        if (e == NULL)
            goto done;
        PyTuple_SET_ITEM(vmas, i, e);
        for (int a = 0; a < 4; a++) {
            if ((x = GA(v, S_vm_start + a)) == NULL)
                goto done;
            PyTuple_SET_ITEM(e, a, x);
        }
        if ((x = GA(v, S_anon_vma)) == NULL)
            goto done;
        PyTuple_SET_ITEM(e, 4, Py_NewRef(x == Py_None ? Py_True : Py_False));
        Py_DECREF(x);
        if ((x = GA(v, S_anon_vma_chain)) == NULL)
            goto done;
        Py_ssize_t n = PyObject_Length(x);
        Py_DECREF(x);
        if (n < 0 || (x = PyLong_FromSsize_t(n)) == NULL)
            goto done;
        PyTuple_SET_ITEM(e, 5, x);
    }
    PyObject *pgtable = GA(mm, S_pgtable);
    if (pgtable == NULL)
        goto done;
    items = sorted_items(pgtable);
    Py_DECREF(pgtable);
    if (items == NULL || (ptes = PyList_New(0)) == NULL)
        goto done;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(items); i++) {
        PyObject *vpn = PyTuple_GET_ITEM(PyList_GET_ITEM(items, i), 0);
        PyObject *pte = PyTuple_GET_ITEM(PyList_GET_ITEM(items, i), 1);
        PyObject *f = PySequence_GetItem(pte, 0), *w, *e;
        if (f == NULL)
            goto done;
        if (Py_TYPE(f) != (PyTypeObject *)T_folio && !PyObject_HasAttr(f, S[S_content])) {
            /* a non-present entry (a migration entry) */
            PyObject *g = PyObject_GetAttr(f, S[S_folio]);
            if (g == NULL) {
                if (!PyErr_ExceptionMatches(PyExc_AttributeError)) {
                    Py_DECREF(f);
                    goto done;
                }
                PyErr_Clear();
                g = Py_NewRef(ZERO_PAGE);
            }
            Py_SETREF(f, g);
            w = Py_NewRef(Py_False);
        } else if ((w = PySequence_GetItem(pte, 1)) == NULL) {
            Py_DECREF(f);
            goto done;
        }
        if (f == ZERO_PAGE) {
            e = Py_BuildValue("(OiiO)", vpn, -1, 0, w);
        } else {
            PyObject *content = GA(f, S_content), *mc = content ? GA(f, S_mapcount) : NULL;
            e = mc ? PyTuple_Pack(4, vpn, content, mc, w) : NULL;
            Py_XDECREF(content);
            Py_XDECREF(mc);
        }
        Py_DECREF(f);
        Py_DECREF(w);
        if (e == NULL || PyList_Append(ptes, e) < 0) {
            Py_XDECREF(e);
            goto done;
        }
        Py_DECREF(e);
    }
    if (PyList_Sort(ptes) < 0)
        goto done;
    Py_SETREF(ptes, PyList_AsTuple(ptes));
    if (ptes == NULL)
        goto done;
    PyObject *memt;
    int truth = mem == NULL ? 0 : PyObject_IsTrue(mem);
    if (truth < 0)
        goto done;
    if (truth) {
        memt = sorted_items(mem);
        if (memt == NULL)
            goto done;
        Py_SETREF(memt, PyList_AsTuple(memt));
        if (memt == NULL)
            goto done;
    } else if ((memt = PyTuple_New(0)) == NULL) {
        goto done;
    }
    out = PyTuple_Pack(3, vmas, ptes, memt);
    Py_DECREF(memt);
done:
    Py_XDECREF(items);
    Py_XDECREF(ptes);
    Py_XDECREF(vmas);
    Py_XDECREF(mmap);
    Py_DECREF(mm);
    return out;
}

/* world._proc_order(): the processes by their signatures, the cheap part first */
static PyObject *proc_order(PyObject *r, PyObject *tasks, PyObject *memory, int symmetry)
{
    Py_ssize_t n = PyDict_GET_SIZE(tasks);
    if (!symmetry || n <= 1 || n > 16 || !PyDict_CheckExact(memory)) {
        if (symmetry && n > 1)
            return PyObject_CallFunctionObjArgs(F_proc_order, r, Py_True, NULL);
        PyObject *l = PySequence_List(tasks);
        if (l == NULL || PyList_Sort(l) < 0) {
            Py_XDECREF(l);
            return NULL;
        }
        return l;
    }
    Py_ssize_t key[16][3];
    PyObject *names[16], *taskv[16], *mems[16];
    Py_ssize_t pos = 0, i = 0;
    PyObject *name, *task;
    while (PyDict_Next(tasks, &pos, &name, &task)) {
        PyObject *mm = GA(task, S_mm);
        if (mm == NULL)
            return NULL;
        PyObject *mmap = GA(mm, S_mmap), *pgt = GA(mm, S_pgtable);
        Py_DECREF(mm);
        if (mmap == NULL || pgt == NULL) {
            Py_XDECREF(mmap);
            Py_XDECREF(pgt);
            return NULL;
        }
        key[i][0] = PyObject_Length(mmap);
        key[i][1] = PyObject_Length(pgt);
        Py_DECREF(mmap);
        Py_DECREF(pgt);
        PyObject *mem = PyDict_GetItemWithError(memory, name);
        if (mem == NULL && PyErr_Occurred())
            return NULL;
        int truth = mem == NULL ? 0 : PyObject_IsTrue(mem);
        if (truth < 0)
            return NULL;
        key[i][2] = truth ? PyObject_Length(mem) : 0;
        if (key[i][0] < 0 || key[i][1] < 0 || key[i][2] < 0)
            return NULL;
        names[i] = name;
        taskv[i] = task;
        mems[i++] = mem;
    }
    int tie = 0;
    for (Py_ssize_t a = 0; a < n; a++)
        for (Py_ssize_t b = a + 1; b < n; b++)
            if (key[a][0] == key[b][0] && key[a][1] == key[b][1] && key[a][2] == key[b][2])
                tie = 1;
    if (tie) {
        /* sorted by (cheap, signature, name) */
        PyObject *keys = PyList_New(n);
        if (keys == NULL)
            return NULL;
        for (Py_ssize_t a = 0; a < n; a++) {
            PyObject *sig = proc_signature(taskv[a], mems[a]);
            PyObject *kt = sig ? Py_BuildValue("((nnn)NO)", key[a][0], key[a][1], key[a][2], sig, names[a]) : NULL;
            if (kt == NULL) {
                Py_DECREF(keys);
                return NULL;
            }
            PyList_SET_ITEM(keys, a, kt);
        }
        if (PyList_Sort(keys) < 0) {
            Py_DECREF(keys);
            return NULL;
        }
        for (Py_ssize_t a = 0; a < n; a++) {
            PyObject *kt = PyList_GET_ITEM(keys, a);
            PyList_SET_ITEM(keys, a, Py_NewRef(PyTuple_GET_ITEM(kt, 2)));
            Py_DECREF(kt);
        }
        return keys;
    }
    /* distinct keys: an insertion sort of at most 16 */
    Py_ssize_t order[16];
    for (Py_ssize_t a = 0; a < n; a++) {
        Py_ssize_t b = a;
        while (b > 0) {
            Py_ssize_t *p = key[order[b - 1]];
            if (p[0] < key[a][0] || (p[0] == key[a][0] && (p[1] < key[a][1] || (p[1] == key[a][1] && p[2] < key[a][2]))))
                break;
            order[b] = order[b - 1];
            b--;
        }
        order[b] = a;
    }
    PyObject *l = PyList_New(n);
    if (l == NULL)
        return NULL;
    for (Py_ssize_t a = 0; a < n; a++)
        PyList_SET_ITEM(l, a, Py_NewRef(names[order[a]]));
    return l;
}

/* w_obj(e) for a new reference e, or -1 */
static int w_new(Buf *b, PyObject *e)
{
    if (e == NULL)
        return -1;
    int rc = w_obj(b, e);
    Py_DECREF(e);
    return rc;
}

/* tuple(kv): the last such tuple if kv has the same keys in the same order (the kernel's attributes) */
static PyObject *same_names(PyObject *kv)
{
    static PyObject *last;
    if (last != NULL && PyTuple_GET_SIZE(last) == PyDict_GET_SIZE(kv)) {
        Py_ssize_t pos = 0, i = 0;
        PyObject *key, *val;
        while (PyDict_Next(kv, &pos, &key, &val) && key == PyTuple_GET_ITEM(last, i))
            i++;
        if (i == PyTuple_GET_SIZE(last))
            return Py_NewRef(last);
    }
    PyObject *names = PySequence_Tuple(kv);
    if (names != NULL)
        Py_XSETREF(last, Py_NewRef(names));
    return names;
}

static int walk(Numbering *c, Buf *b, PyObject *r, int symmetry)
{
    int rc = -1;
    PyObject *k = NULL, *tasks = NULL, *memory = NULL, *procs = NULL, *kv = NULL, *names = NULL, *fields = NULL;
    k = GA(r, S_k);
    if (k == NULL)
        goto done;
    tasks = GA(k, S_tasks);
    memory = GA(r, S_memory);
    if (tasks == NULL || memory == NULL)
        goto done;
    if (!PyDict_Check(tasks)) {
        PyErr_SetString(PyExc_TypeError, "k.tasks is not a dict");
        goto done;
    }
    procs = proc_order(r, tasks, memory, symmetry);
    if (procs == NULL)
        goto done;
    Py_SETREF(procs, PySequence_Tuple(procs));
    if (procs == NULL)
        goto done;
    Py_ssize_t np = PyTuple_GET_SIZE(procs);
    kv = PyObject_GenericGetDict(k, NULL);
    if (kv == NULL)
        goto done;
    names = same_names(kv);
    if (names == NULL)
        goto done;
    fields = Py_XNewRef(PyDict_GetItemWithError(KERNEL_FIELDS, names));
    if (fields == NULL && (PyErr_Occurred() || (fields = PyObject_CallOneArg(F_kernel_fields, names)) == NULL))
        goto done;
    if (!PyTuple_Check(fields) || PyTuple_GET_SIZE(fields) != 2 || !PyTuple_Check(PyTuple_GET_ITEM(fields, 0))) {
        PyErr_SetString(PyExc_TypeError, "_kernel_fields must return (names, layout)");
        goto done;
    }
    PyObject *fnames = PyTuple_GET_ITEM(fields, 0);
    Py_ssize_t nf = PyTuple_GET_SIZE(fnames);
    /* (roots, objects) */
    if (w_tuple(b, 2) < 0 || w_tuple(b, 5 + !symmetry + nf) < 0)
        goto done;
    /* the processes, numbered in order */
    if (w_tuple(b, np) < 0)
        goto done;
    for (Py_ssize_t i = 0; i < np; i++) {
        PyObject *task = PyObject_GetItem(tasks, PyTuple_GET_ITEM(procs, i));
        if (task == NULL)
            goto done;
        int r2 = w_oid(c, b, task);
        Py_DECREF(task);
        if (r2 < 0)
            goto done;
    }
    if (!symmetry && w_obj(b, procs) < 0)
        goto done;
    /* their memory */
    if (w_tuple(b, np) < 0)
        goto done;
    for (Py_ssize_t i = 0; i < np; i++) {
        PyObject *mem;
        if (PyDict_CheckExact(memory)) {
            mem = Py_XNewRef(PyDict_GetItemWithError(memory, PyTuple_GET_ITEM(procs, i)));
            if (mem == NULL && PyErr_Occurred())
                goto done;
        } else {
            PyObject *empty = PyDict_New();
            if (empty == NULL)
                goto done;
            mem = PyObject_CallMethodObjArgs(memory, S[S_get], PyTuple_GET_ITEM(procs, i), empty, NULL);
            Py_DECREF(empty);
            if (mem == NULL)
                goto done;
        }
        int r2;
        if (mem == NULL) {
            r2 = w_obj(b, EMPTY_DICT);
        } else {
            int truth = PyObject_IsTrue(mem);
            r2 = truth < 0 ? -1 : (truth || !PyDict_CheckExact(mem)) ? w_ref(c, b, mem) : w_obj(b, EMPTY_DICT);
            Py_DECREF(mem);
        }
        if (r2 < 0)
            goto done;
    }
    for (int a = S_faults; a <= S_preempt; a++) {
        PyObject *v = PyObject_GetAttr(r, S[a]);
        if (v == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_AttributeError))
                goto done;
            PyErr_Clear();
            v = PyLong_FromLong(0);
        }
        if (w_new(b, v) < 0)
            goto done;
    }
    /* the kernel's own fields, in world._kernel_fields() order */
    if (w_obj(b, PyTuple_GET_ITEM(fields, 1)) < 0)
        goto done;
    for (Py_ssize_t i = 0; i < nf; i++) {
        PyObject *name = PyTuple_GET_ITEM(fnames, i);
        PyObject *v = PyDict_GetItemWithError(kv, name);
        if (v == NULL) {
            if (!PyErr_Occurred())
                PyErr_SetObject(PyExc_KeyError, name);
            goto done;
        }
        PyTypeObject *t = Py_TYPE(v);
        int r2;
        if ((PyObject *)t == T_cache) {
            r2 = w_cache(c, b, v);
        } else if (is_scalar(t)) {
            r2 = w_obj(b, v);
        } else if (t == &PyDict_Type && PyDict_GET_SIZE(v) == 0) {
            r2 = w_obj(b, EMPTY_DICT);
        } else if ((t == &PyList_Type || t == &PyTuple_Type) && Py_SIZE(v) == 0) {
            r2 = w_tuple(b, 0);
        } else {
            int has = PyDict_Contains(ENCODERS, (PyObject *)t);
            if (has < 0)
                goto done;
            if (has)
                r2 = w_tag(b, 2, S_at) < 0 ? -1 : w_oid(c, b, v);
            else if (t == &PyDict_Type)
                r2 = w_new(b, root_dict(c, name, v));
            else
                r2 = w_ref(c, b, v);
        }
        if (r2 < 0)
            goto done;
    }
    /* every object, in the order first named; the list grows as it is walked */
    Py_ssize_t count_at = b->len;
    if (w_tuple(b, 0) < 0)
        goto done;
    Py_ssize_t i = 0;
    for (; i < c->n; i++) {
        PyObject *o = c->objs[i];
        Py_INCREF(o);
        int r2 = encode(c, b, o, k);
        if (r2 == 0 && !symmetry) {
            PyObject *slot = PyObject_GetAttr(o, S[S_slot]);
            if (slot == NULL && PyErr_ExceptionMatches(PyExc_AttributeError)) {
                PyErr_Clear();
                slot = Py_NewRef(Py_None);
            }
            r2 = w_new(b, slot);
        }
        Py_DECREF(o);
        if (r2 < 0)
            goto done;
    }
    put_i32(b->p + count_at + 1, (long)(symmetry ? i : 2 * i));
    rc = 0;
done:
    Py_XDECREF(fields);
    Py_XDECREF(names);
    Py_XDECREF(kv);
    Py_XDECREF(procs);
    Py_XDECREF(memory);
    Py_XDECREF(tasks);
    Py_XDECREF(k);
    return rc;
}

static Numbering *new_numbering(void)
{
    Numbering *c = PyObject_New(Numbering, &NumberingType);
    if (c == NULL)
        return NULL;
    c->objs = NULL;
    c->n = c->cap = 0;
    c->byvalue = NULL;
    c->mask = 127;
    c->table = PyMem_Calloc(c->mask + 1, sizeof(Slot));
    if (c->table == NULL) {
        Py_DECREF(c);
        PyErr_NoMemory();
        return NULL;
    }
    return c;
}

/* the numbering and the buffer of the last walk, kept for the next */
static Numbering *spare;
static Buf spare_buf;

static PyObject *marshalled(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "marshalled(r, symmetry)");
        return NULL;
    }
    if (T_task == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "_canon.configure() was not called");
        return NULL;
    }
    int symmetry = PyObject_IsTrue(args[1]);
    if (symmetry < 0)
        return NULL;
    /* the spare numbering unless a walk in progress holds it (a callback) */
    Numbering *c = spare;
    spare = NULL;
    if (c == NULL && (c = new_numbering()) == NULL)
        return NULL;
    Buf b = spare_buf;
    spare_buf.p = NULL;
    spare_buf.cap = 0;
    b.len = 0;
    PyObject *out = NULL;
    if (walk(c, &b, args[0], symmetry) == 0)
        out = PyBytes_FromStringAndSize(b.p, b.len);
    numbering_reset(c);
    if (spare == NULL && Py_REFCNT(c) == 1)
        spare = c;
    else
        Py_DECREF(c);
    if (spare_buf.p == NULL)
        spare_buf = b;
    else
        PyMem_Free(b.p);
    return out;
}

/* ---- fingerprints judged clean, in memory the workers of one machine share ---- */

/*
 * A table of 16-byte slots in a writable buffer (an anonymous shared mmap the
 * parallel search makes before it forks its workers): the 12 bytes of a
 * fingerprint and a 4-byte state, 0 empty, 1 being written, 2 judged clean.
 * A slot is claimed by a compare-and-swap of its state from 0 to 1, its
 * fingerprint written, then its state set to 2 (release): a reader that
 * sees 2 sees the whole fingerprint. A slot is never emptied or reused, so
 * an answer "clean" is never wrong; a full table, a slot being written or a
 * long probe answer "not known", and the state is judged (again).
 */
#define JUDGED_SLOT 16
#define JUDGED_PROBES 64

static int judged_table(PyObject *buf, Py_buffer *view)
{
    if (PyObject_GetBuffer(buf, view, PyBUF_WRITABLE) < 0)
        return -1;
    Py_ssize_t slots = view->len / JUDGED_SLOT;
    if (slots < 1 || (slots & (slots - 1)) != 0 || ((uintptr_t)view->buf & 3) != 0) {
        PyBuffer_Release(view);
        PyErr_SetString(PyExc_ValueError, "the table must be a power of two of 16-byte slots, aligned");
        return -1;
    }
    return 0;
}

static PyObject *judged(PyObject *module, PyObject *const *args, Py_ssize_t nargs, int add)
{
    if (nargs != 2 || !PyBytes_Check(args[1]) || PyBytes_GET_SIZE(args[1]) != 12) {
        PyErr_SetString(PyExc_TypeError, "(table, fingerprint of 12 bytes)");
        return NULL;
    }
    Py_buffer view;
    if (judged_table(args[0], &view) < 0)
        return NULL;
    const char *fp = PyBytes_AS_STRING(args[1]);
    uint64_t h;
    memcpy(&h, fp, sizeof h);
    size_t mask = (size_t)(view.len / JUDGED_SLOT) - 1;
    char *base = view.buf;
    int found = 0;
    for (int probe = 0; probe < JUDGED_PROBES; probe++) {
        char *slot = base + ((h + probe) & mask) * JUDGED_SLOT;
        uint32_t *state = (uint32_t *)(slot + 12);
        uint32_t st = __atomic_load_n(state, __ATOMIC_ACQUIRE);
        if (st == 2 && memcmp(slot, fp, 12) == 0) {
            found = 1;
            break;
        }
        if (st == 0) {
            if (!add)
                break;
            uint32_t expected = 0;
            if (__atomic_compare_exchange_n(state, &expected, 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
                memcpy(slot, fp, 12);
                __atomic_store_n(state, 2, __ATOMIC_RELEASE);
                found = 1;
                break;
            }
            /* another worker claimed it first: look at it again */
            probe--;
        }
    }
    PyBuffer_Release(&view);
    return PyBool_FromLong(found);
}

static PyObject *judged_clean(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    return judged(module, args, nargs, 0);
}

static PyObject *judge_clean(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    return judged(module, args, nargs, 1);
}

static PyObject *configure(PyObject *module, PyObject *kw)
{
    if (!PyDict_Check(kw)) {
        PyErr_SetString(PyExc_TypeError, "configure(dict)");
        return NULL;
    }
    struct { const char *name; PyObject **slot; int optional; } items[] = {
        {"task_struct", &T_task, 0}, {"mm_struct", &T_mm, 0}, {"vm_area_struct", &T_vma, 0},
        {"anon_vma", &T_av, 0}, {"anon_vma_chain", &T_avc, 0}, {"folio", &T_folio, 0},
        {"ksm_rmap_item", &T_ri, 1}, {"ksm_stable_node", &T_sn, 1}, {"ksm_mm_slot", &T_ms, 1},
        {"ksm_state", &T_ksm, 1}, {"kmem_cache", &T_cache, 0}, {"ZERO_PAGE", &ZERO_PAGE, 0},
        {"encoders", &ENCODERS, 0}, {"kernel_fields_cache", &KERNEL_FIELDS, 0},
        {"root_dicts", &ROOT_DICTS, 0}, {"empty_dict", &EMPTY_DICT, 0},
        {"kernel_fields", &F_kernel_fields, 0}, {"root_dict", &F_root_dict, 0},
        {"proc_order", &F_proc_order, 0}, {"generic_fields", &F_generic_fields, 0},
        {"fields_cache", &FIELDS, 0},
    };
    for (size_t i = 0; i < sizeof items / sizeof items[0]; i++) {
        PyObject *v = PyDict_GetItemString(kw, items[i].name);
        if (v == NULL && !items[i].optional) {
            PyErr_Format(PyExc_KeyError, "configure: %s missing", items[i].name);
            return NULL;
        }
        /* an absent optional type (a tree without KSM) matches no object */
        if (v == NULL)
            v = Py_None;
        Py_XSETREF(*items[i].slot, Py_NewRef(v));
    }
    PyObject *ts = PyDict_GetItemString(kw, "SLAB_TYPESAFE_BY_RCU");
    if (ts == NULL) {
        PyErr_SetString(PyExc_KeyError, "configure: SLAB_TYPESAFE_BY_RCU missing");
        return NULL;
    }
    TYPESAFE = PyLong_AsLong(ts);
    if (TYPESAFE == -1 && PyErr_Occurred())
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *numbering_call(PyObject *self, PyObject *args, PyObject *kw)
{
    PyObject *o;
    if (!PyArg_ParseTuple(args, "O", &o))
        return NULL;
    return ref((Numbering *)self, o);
}

static void numbering_dealloc(Numbering *self)
{
    for (Py_ssize_t i = 0; i < self->n; i++)
        Py_DECREF(self->objs[i]);
    PyMem_Free(self->objs);
    PyMem_Free(self->table);
    Py_XDECREF(self->byvalue);
    PyObject_Free(self);
}

static PyMethodDef numbering_methods[] = {
    {"oid", (PyCFunction)numbering_oid, METH_O, "The object's number (a new object gets the next one)."},
    {NULL},
};

static PyTypeObject NumberingType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "rmapcheck.check._canon.Numbering",
    .tp_basicsize = sizeof(Numbering),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The numbering of one canonical walk; calling it is world.canonical()'s ref().",
    .tp_dealloc = (destructor)numbering_dealloc,
    .tp_call = numbering_call,
    .tp_methods = numbering_methods,
};

static PyMethodDef methods[] = {
    {"marshalled", (PyCFunction)(void (*)(void))marshalled, METH_FASTCALL,
     "marshalled(r, symmetry): marshal.dumps(world.canonical(r, symmetry), 2), written in C."},
    {"configure", configure, METH_O, "configure(dict): the model's classes and world.py's helpers."},
    {"judged_clean", (PyCFunction)(void (*)(void))judged_clean, METH_FASTCALL,
     "judged_clean(table, fp): fp is in the shared table of fingerprints judged clean."},
    {"judge_clean", (PyCFunction)(void (*)(void))judge_clean, METH_FASTCALL,
     "judge_clean(table, fp): put fp in the table; False if the table had no room for it."},
    {NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "rmapcheck.check._canon",
    "world.canonical() in C (see _canon.c).", -1, methods,
};

PyMODINIT_FUNC PyInit__canon(void)
{
    for (int i = 0; i < NSTR; i++) {
        S[i] = PyUnicode_InternFromString(NAMES[i]);
        if (S[i] == NULL)
            return NULL;
    }
    if (PyType_Ready(&NumberingType) < 0)
        return NULL;
    return PyModule_Create(&module);
}
