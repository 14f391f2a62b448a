/*
 * rmapcheck.check._canon: world.canonical() in C.
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

/* configured by world.py */
static PyObject *T_task, *T_mm, *T_vma, *T_av, *T_avc, *T_folio;
static PyObject *T_ri, *T_sn, *T_ms, *T_ksm, *T_cache;
static PyObject *ZERO_PAGE, *ENCODERS, *KERNEL_FIELDS, *ROOT_DICTS, *EMPTY_DICT;
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
    S_sntag, S_mstag, S_ksmtag, S_get,
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
    "sn", "ms", "ksm", "get",
};
static PyObject *S[NSTR];

/* The numbering: object -> number in the order first named (world._Numbering). */
typedef struct {
    PyObject_HEAD
    PyObject *ids;   /* dict */
    PyObject *objs;  /* list */
} Numbering;

static PyTypeObject NumberingType;

static PyObject *oid(Numbering *c, PyObject *o)
{
    PyObject *v = PyDict_GetItemWithError(c->ids, o);
    if (v != NULL)
        return Py_NewRef(v);
    if (PyErr_Occurred())
        return NULL;
    PyObject *n = PyLong_FromSsize_t(PyList_GET_SIZE(c->objs));
    if (n == NULL)
        return NULL;
    if (PyDict_SetItem(c->ids, o, n) < 0 || PyList_Append(c->objs, o) < 0) {
        Py_DECREF(n);
        return NULL;
    }
    return n;
}

static inline int is_scalar(PyTypeObject *t)
{
    return t == &PyLong_Type || t == &PyUnicode_Type || t == &PyBool_Type || t == &PyFloat_Type
        || t == &PyBytes_Type || t == Py_TYPE(Py_None);
}

static PyObject *ref(Numbering *c, PyObject *o);

/* oid(getattr(o, name)) */
static PyObject *oid_attr(Numbering *c, PyObject *o, int name)
{
    PyObject *v = PyObject_GetAttr(o, S[name]);
    if (v == NULL)
        return NULL;
    PyObject *r = oid(c, v);
    Py_DECREF(v);
    return r;
}

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

static PyObject *oid_seq_attr(Numbering *c, PyObject *o, int name)
{
    PyObject *v = PyObject_GetAttr(o, S[name]);
    if (v == NULL)
        return NULL;
    PyObject *r = oid_seq(c, v);
    Py_DECREF(v);
    return r;
}

#define GA(o, name) PyObject_GetAttr((o), S[name])
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

/* ---- the encoders of world.py, field for field ---- */

static PyObject *enc_task(Numbering *c, PyObject *o)
{
    return tag_pair(S_t, oid_attr(c, o, S_mm));
}

static PyObject *enc_mm(Numbering *c, PyObject *o)
{
    PyObject *t = NULL, *ptes = NULL, *items = NULL, *pgtable = GA(o, S_pgtable);
    if (pgtable == NULL)
        return NULL;
    items = PyObject_CallMethod(pgtable, "items", NULL);
    if (items == NULL)
        goto fail;
    Py_SETREF(items, PySequence_List(items));
    if (items == NULL || PyList_Sort(items) < 0)
        goto fail;
    /* the page table first: its folios are numbered before the VMAs */
    Py_ssize_t n = PyList_GET_SIZE(items);
    ptes = PyTuple_New(n);
    if (ptes == NULL)
        goto fail;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *kv = PyList_GET_ITEM(items, i);
        PyObject *vpn = PyTuple_GET_ITEM(kv, 0), *pte = PyTuple_GET_ITEM(kv, 1);
        PyObject *e = PyTuple_New(4);
        if (e == NULL)
            goto fail;
        PyTuple_SET_ITEM(ptes, i, e);
        PyTuple_SET_ITEM(e, 0, Py_NewRef(vpn));
        PyObject *p0 = PySequence_GetItem(pte, 0);
        if (p0 == NULL)
            goto fail;
        PyObject *id = oid(c, p0);
        Py_DECREF(p0);
        if (id == NULL)
            goto fail;
        PyTuple_SET_ITEM(e, 1, id);
        PyObject *p1 = PySequence_GetItem(pte, 1);
        if (p1 == NULL)
            goto fail;
        PyTuple_SET_ITEM(e, 2, p1);
        PyObject *tn = PyObject_GetAttr((PyObject *)Py_TYPE(pte), S[S_name_]);
        if (tn == NULL)
            goto fail;
        PyTuple_SET_ITEM(e, 3, tn);
    }
    t = PyTuple_New(10);
    if (t == NULL)
        goto fail;
    PyTuple_SET_ITEM(t, 0, Py_NewRef(S[S_mmtag]));
    SET(t, 1, GA(o, S_live));
    SET(t, 2, oid_seq_attr(c, o, S_mmap));
    PyTuple_SET_ITEM(t, 3, ptes);
    ptes = NULL;
    SET(t, 4, GA(o, S_mm_users));
    SET(t, 5, GA(o, S_mm_count));
    SET(t, 6, GA(o, S_ksm_flags));
    SET(t, 7, GA(o, S_ksm_rmap_items));
    SET(t, 8, GA(o, S_ksm_merging_pages));
    SET(t, 9, GA(o, S_ksm_zero_pages));
    Py_DECREF(items);
    Py_DECREF(pgtable);
    return t;
fail:
    Py_XDECREF(t);
    Py_XDECREF(ptes);
    Py_XDECREF(items);
    Py_DECREF(pgtable);
    return NULL;
}

static PyObject *enc_vma(Numbering *c, PyObject *o)
{
    PyObject *t = PyTuple_New(9);
    if (t == NULL)
        return NULL;
    PyTuple_SET_ITEM(t, 0, Py_NewRef(S[S_v]));
    SET(t, 1, GA(o, S_live));
    SET(t, 2, GA(o, S_vm_start));
    SET(t, 3, GA(o, S_vm_end));
    SET(t, 4, GA(o, S_vm_pgoff));
    SET(t, 5, GA(o, S_vm_flags));
    SET(t, 6, oid_attr(c, o, S_anon_vma));
    SET(t, 7, oid_seq_attr(c, o, S_anon_vma_chain));
    SET(t, 8, oid_attr(c, o, S_vm_mm));
    return t;
fail:
    Py_DECREF(t);
    return NULL;
}

static PyObject *enc_av(Numbering *c, PyObject *o)
{
    PyObject *t = PyTuple_New(10);
    if (t == NULL)
        return NULL;
    PyTuple_SET_ITEM(t, 0, Py_NewRef(S[S_a]));
    SET(t, 1, GA(o, S_live));
    SET(t, 2, oid_attr(c, o, S_root));
    SET(t, 3, oid_attr(c, o, S_parent));
    SET(t, 4, GA(o, S_refcount));
    SET(t, 5, GA(o, S_num_children));
    SET(t, 6, GA(o, S_num_active_vmas));
    SET(t, 7, oid_seq_attr(c, o, S_rb_root));
    SET(t, 8, GA(o, S_rwsem_writer));
    SET(t, 9, GA(o, S_rwsem_readers));
    return t;
fail:
    Py_DECREF(t);
    return NULL;
}

static PyObject *enc_avc(Numbering *c, PyObject *o)
{
    PyObject *t = PyTuple_New(4);
    if (t == NULL)
        return NULL;
    PyTuple_SET_ITEM(t, 0, Py_NewRef(S[S_c]));
    SET(t, 1, GA(o, S_live));
    SET(t, 2, oid_attr(c, o, S_vma));
    SET(t, 3, oid_attr(c, o, S_anon_vma));
    return t;
fail:
    Py_DECREF(t);
    return NULL;
}

static PyObject *enc_folio(Numbering *c, PyObject *o)
{
    PyObject *t = PyTuple_New(11);
    if (t == NULL)
        return NULL;
    PyTuple_SET_ITEM(t, 0, Py_NewRef(S[S_f]));
    SET(t, 1, GA(o, S_live));
    SET(t, 2, oid_attr(c, o, S_mapping));
    SET(t, 3, GA(o, S_index));
    SET(t, 4, GA(o, S_mapcount));
    SET(t, 5, GA(o, S_refcount_f));
    SET(t, 6, GA(o, S_anon_exclusive));
    SET(t, 7, GA(o, S_content));
    SET(t, 8, GA(o, S_ksm));
    SET(t, 9, oid_attr(c, o, S_stable_node));
    SET(t, 10, GA(o, S_locked));
    return t;
fail:
    Py_DECREF(t);
    return NULL;
}

static PyObject *enc_ri(Numbering *c, PyObject *o)
{
    PyObject *t = PyTuple_New(11);
    if (t == NULL)
        return NULL;
    PyTuple_SET_ITEM(t, 0, Py_NewRef(S[S_ritag]));
    SET(t, 1, GA(o, S_live));
    SET(t, 2, oid_attr(c, o, S_mm));
    SET(t, 3, GA(o, S_address));
    SET(t, 4, GA(o, S_flags));
    SET(t, 5, oid_attr(c, o, S_anon_vma));
    SET(t, 6, GA(o, S_oldchecksum));
    SET(t, 7, GA(o, S_age));
    SET(t, 8, GA(o, S_remaining_skips));
    SET(t, 9, oid_attr(c, o, S_head));
    SET(t, 10, GA(o, S_key));
    return t;
fail:
    Py_DECREF(t);
    return NULL;
}

/* world._kpfn(): a page frame number as the folio in it or its place on the freelist */
static PyObject *kpfn(Numbering *c, PyObject *pfn, PyObject *k)
{
    PyObject *zero = PyLong_FromLong(0);
    if (zero == NULL)
        return NULL;
    int neg = PyObject_RichCompareBool(pfn, zero, Py_LT);
    Py_DECREF(zero);
    if (neg < 0)
        return NULL;
    if (neg)
        return Py_NewRef(pfn);
    PyObject *pa = GA(k, S_page_alloc), *objects = NULL, *f = NULL, *fl = NULL, *out = NULL;
    if (pa == NULL)
        return NULL;
    objects = GA(pa, S_objects);
    if (objects == NULL)
        goto done;
    f = PyObject_CallMethodObjArgs(objects, S[S_get], pfn, NULL);
    if (f == NULL)
        goto done;
    if (f != Py_None) {
        out = tag_pair(S_page, oid(c, f));
        goto done;
    }
    fl = GA(pa, S_freelist);
    if (fl == NULL)
        goto done;
    int in = PySequence_Contains(fl, pfn);
    if (in < 0)
        goto done;
    if (in) {
        Py_ssize_t i = PySequence_Index(fl, pfn), n = PyObject_Length(fl);
        if (i < 0 || n < 0)
            goto done;
        out = tag_pair(S_free, PyLong_FromSsize_t(n - i));
    } else {
        out = tag_pair(S_free, PyLong_FromLong(-1));
    }
done:
    Py_XDECREF(fl);
    Py_XDECREF(f);
    Py_XDECREF(objects);
    Py_DECREF(pa);
    return out;
}

static PyObject *enc_sn(Numbering *c, PyObject *o, PyObject *k)
{
    PyObject *t = PyTuple_New(9), *pfn = NULL;
    if (t == NULL)
        return NULL;
    PyTuple_SET_ITEM(t, 0, Py_NewRef(S[S_sntag]));
    SET(t, 1, GA(o, S_live));
    SET(t, 2, oid_seq_attr(c, o, S_hlist));
    pfn = GA(o, S_kpfn);
    if (pfn == NULL)
        goto fail;
    SET(t, 3, kpfn(c, pfn, k));
    SET(t, 4, GA(o, S_rmap_hlist_len));
    SET(t, 5, GA(o, S_head));
    SET(t, 6, oid_attr(c, o, S_chain));
    SET(t, 7, GA(o, S_key));
    SET(t, 8, GA(o, S_nid));
    Py_DECREF(pfn);
    return t;
fail:
    Py_XDECREF(pfn);
    Py_DECREF(t);
    return NULL;
}

static PyObject *enc_ms(Numbering *c, PyObject *o)
{
    PyObject *t = PyTuple_New(4);
    if (t == NULL)
        return NULL;
    PyTuple_SET_ITEM(t, 0, Py_NewRef(S[S_mstag]));
    SET(t, 1, GA(o, S_live));
    SET(t, 2, oid_attr(c, o, S_mm));
    SET(t, 3, oid_seq_attr(c, o, S_rmap_list));
    return t;
fail:
    Py_DECREF(t);
    return NULL;
}

/* tuple([(key, oid(n)) for key, n in sorted(tree.items())]) if tree else () */
static PyObject *enc_tree(Numbering *c, PyObject *tree)
{
    int truth = PyObject_IsTrue(tree);
    if (truth < 0)
        return NULL;
    if (!truth)
        return PyTuple_New(0);
    PyObject *items = PyObject_CallMethod(tree, "items", NULL);
    if (items == NULL)
        return NULL;
    Py_SETREF(items, PySequence_List(items));
    if (items == NULL)
        return NULL;
    if (PyList_Sort(items) < 0) {
        Py_DECREF(items);
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(items);
    PyObject *out = PyTuple_New(n);
    if (out == NULL)
        goto fail;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *kv = PyList_GET_ITEM(items, i);
        PyObject *id = oid(c, PyTuple_GET_ITEM(kv, 1));
        if (id == NULL)
            goto fail;
        PyObject *pair = PyTuple_New(2);
        if (pair == NULL) {
            Py_DECREF(id);
            goto fail;
        }
        PyTuple_SET_ITEM(pair, 0, Py_NewRef(PyTuple_GET_ITEM(kv, 0)));
        PyTuple_SET_ITEM(pair, 1, id);
        PyTuple_SET_ITEM(out, i, pair);
    }
    Py_DECREF(items);
    return out;
fail:
    Py_XDECREF(out);
    Py_DECREF(items);
    return NULL;
}

static PyObject *nr_live_of(PyObject *o, int cache)
{
    PyObject *v = GA(o, cache);
    if (v == NULL)
        return NULL;
    PyObject *r = GA(v, S_nr_live);
    Py_DECREF(v);
    return r;
}

static PyObject *enc_ksm(Numbering *c, PyObject *o)
{
    PyObject *t = PyTuple_New(19), *tree = NULL;
    if (t == NULL)
        return NULL;
    PyTuple_SET_ITEM(t, 0, Py_NewRef(S[S_ksmtag]));
    SET(t, 1, oid_seq_attr(c, o, S_mm_list));
    SET(t, 2, oid_attr(c, o, S_scan_mm_slot));
    SET(t, 3, GA(o, S_scan_address));
    SET(t, 4, GA(o, S_scan_rmap_pos));
    SET(t, 5, GA(o, S_seqnr));
    tree = GA(o, S_root_stable_tree);
    if (tree == NULL)
        goto fail;
    SET(t, 6, enc_tree(c, tree));
    Py_SETREF(tree, GA(o, S_root_unstable_tree));
    if (tree == NULL)
        goto fail;
    SET(t, 7, enc_tree(c, tree));
    SET(t, 8, GA(o, S_pages_shared));
    SET(t, 9, GA(o, S_pages_sharing));
    SET(t, 10, GA(o, S_pages_unshared));
    SET(t, 11, GA(o, S_rmap_items));
    SET(t, 12, GA(o, S_stable_node_chains));
    SET(t, 13, GA(o, S_stable_node_dups));
    SET(t, 14, GA(o, S_pages_skipped));
    SET(t, 15, GA(o, S_zero_pages));
    SET(t, 16, nr_live_of(o, S_rmap_item_cache));
    SET(t, 17, nr_live_of(o, S_stable_node_cache));
    SET(t, 18, nr_live_of(o, S_mm_slot_cache));
    Py_DECREF(tree);
    return t;
fail:
    Py_XDECREF(tree);
    Py_DECREF(t);
    return NULL;
}

/* An object without an encoder of its own: (cls.__name__, (ref(getattr(o, n, None)) for n in fields)). */
static PyObject *enc_generic(Numbering *c, PyObject *o)
{
    PyObject *fields = PyObject_CallOneArg(F_generic_fields, o), *vals = NULL, *name = NULL;
    if (fields == NULL)
        return NULL;
    if (!PyTuple_Check(fields)) {
        PyErr_SetString(PyExc_TypeError, "_generic_fields must return a tuple");
        goto fail;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(fields);
    vals = PyTuple_New(n);
    if (vals == NULL)
        goto fail;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *v = PyObject_GetAttr(o, PyTuple_GET_ITEM(fields, i));
        if (v == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_AttributeError))
                goto fail;
            PyErr_Clear();
            v = Py_NewRef(Py_None);
        }
        PyObject *r = ref(c, v);
        Py_DECREF(v);
        if (r == NULL)
            goto fail;
        PyTuple_SET_ITEM(vals, i, r);
    }
    name = PyObject_GetAttr((PyObject *)Py_TYPE(o), S[S_name_]);
    if (name == NULL)
        goto fail;
    PyObject *out = PyTuple_Pack(2, name, vals);
    Py_DECREF(name);
    Py_DECREF(vals);
    Py_DECREF(fields);
    return out;
fail:
    Py_XDECREF(vals);
    Py_DECREF(fields);
    return NULL;
}

static PyObject *numbering_oid(Numbering *self, PyObject *o)
{
    return oid(self, o);
}

static PyObject *encode(Numbering *c, PyObject *o, PyObject *k)
{
    PyObject *t = (PyObject *)Py_TYPE(o);
    if (t == T_vma) return enc_vma(c, o);
    if (t == T_avc) return enc_avc(c, o);
    if (t == T_av) return enc_av(c, o);
    if (t == T_folio) return enc_folio(c, o);
    if (t == T_mm) return enc_mm(c, o);
    if (t == T_task) return enc_task(c, o);
    if (t == T_ri) return enc_ri(c, o);
    if (t == T_ms) return enc_ms(c, o);
    if (t == T_sn) return enc_sn(c, o, k);
    if (t == T_ksm) return enc_ksm(c, o);
    PyObject *e = PyDict_GetItemWithError(ENCODERS, t);
    if (e != NULL) {
        /* an encoder world.py has and this file does not */
        Py_INCREF(e);
        PyObject *get = PyObject_GetAttrString((PyObject *)c, "oid");
        PyObject *r = get == NULL ? NULL : PyObject_CallFunctionObjArgs(e, o, get, k, NULL);
        Py_XDECREF(get);
        Py_DECREF(e);
        return r;
    }
    if (PyErr_Occurred())
        return NULL;
    return enc_generic(c, o);
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
        if (PyList_Check(keys) && PyList_Check(values) && PyList_Check(types) && PyList_Check(key_types)
                && PyList_GET_SIZE(keys) == PyDict_GET_SIZE(d) && PyList_GET_SIZE(values) == PyDict_GET_SIZE(d)
                && PyList_GET_SIZE(types) == PyDict_GET_SIZE(d) && PyList_GET_SIZE(key_types) == PyDict_GET_SIZE(d)) {
            Py_ssize_t pos = 0, i = 0;
            PyObject *kk, *v;
            int same = 1;
            while (same && PyDict_Next(d, &pos, &kk, &v)) {
                if ((PyObject *)Py_TYPE(v) != PyList_GET_ITEM(types, i)
                        || (PyObject *)Py_TYPE(kk) != PyList_GET_ITEM(key_types, i)) {
                    same = 0;
                    break;
                }
                int eq = PyObject_RichCompareBool(kk, PyList_GET_ITEM(keys, i), Py_EQ);
                if (eq < 0)
                    return NULL;
                if (eq) {
                    eq = PyObject_RichCompareBool(v, PyList_GET_ITEM(values, i), Py_EQ);
                    if (eq < 0)
                        return NULL;
                }
                same = eq;
                i++;
            }
            if (same)
                return Py_NewRef(PyTuple_GET_ITEM(last, 4));
        }
    }
    return PyObject_CallFunctionObjArgs(F_root_dict, name, d, (PyObject *)c, NULL);
}

/* The processes in canonical order: by the cheap part of their signature when that tells them apart. */
static PyObject *proc_order(PyObject *r, PyObject *tasks, PyObject *memory, int symmetry)
{
    Py_ssize_t n = PyDict_GET_SIZE(tasks);
    if (!symmetry || n <= 1 || n > 16 || !PyDict_Check(memory)) {
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
    PyObject *names[16];
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
        names[i++] = name;
    }
    for (Py_ssize_t a = 0; a < n; a++)
        for (Py_ssize_t b = a + 1; b < n; b++)
            if (key[a][0] == key[b][0] && key[a][1] == key[b][1] && key[a][2] == key[b][2])
                return PyObject_CallFunctionObjArgs(F_proc_order, r, Py_True, NULL);
    /* distinct keys: a plain insertion sort of at most 16 */
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

static PyObject *canonical(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "canonical(r, symmetry)");
        return NULL;
    }
    if (T_task == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "_canon.configure() was not called");
        return NULL;
    }
    PyObject *r = args[0];
    int symmetry = PyObject_IsTrue(args[1]);
    if (symmetry < 0)
        return NULL;
    PyObject *k = NULL, *tasks = NULL, *memory = NULL, *procs = NULL, *roots = NULL, *enc = NULL;
    PyObject *out = NULL, *kv = NULL, *names = NULL, *fields = NULL, *tmp = NULL;
    Numbering *c = PyObject_New(Numbering, &NumberingType);
    if (c == NULL)
        return NULL;
    c->ids = PyDict_New();
    c->objs = PyList_New(0);
    if (c->ids == NULL || c->objs == NULL)
        goto done;
    PyObject *m1 = PyLong_FromLong(-1);
    if (m1 == NULL || PyDict_SetItem(c->ids, Py_None, Py_None) < 0 || PyDict_SetItem(c->ids, ZERO_PAGE, m1) < 0) {
        Py_XDECREF(m1);
        goto done;
    }
    Py_DECREF(m1);

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
    roots = PyList_New(0);
    if (roots == NULL)
        goto done;
    /* the processes, numbered in order */
    tmp = PyTuple_New(np);
    if (tmp == NULL)
        goto done;
    for (Py_ssize_t i = 0; i < np; i++) {
        PyObject *task = PyObject_GetItem(tasks, PyTuple_GET_ITEM(procs, i));
        if (task == NULL)
            goto done;
        PyObject *id = oid(c, task);
        Py_DECREF(task);
        if (id == NULL)
            goto done;
        PyTuple_SET_ITEM(tmp, i, id);
    }
    if (PyList_Append(roots, tmp) < 0)
        goto done;
    Py_CLEAR(tmp);
    if (!symmetry && PyList_Append(roots, procs) < 0)
        goto done;
    /* their memory */
    tmp = PyTuple_New(np);
    if (tmp == NULL)
        goto done;
    for (Py_ssize_t i = 0; i < np; i++) {
        PyObject *mem;
        if (PyDict_CheckExact(memory)) {
            mem = PyDict_GetItemWithError(memory, PyTuple_GET_ITEM(procs, i));
            if (mem == NULL && PyErr_Occurred())
                goto done;
            Py_XINCREF(mem);
        } else {
            PyObject *empty = PyDict_New();
            if (empty == NULL)
                goto done;
            mem = PyObject_CallMethodObjArgs(memory, S[S_get], PyTuple_GET_ITEM(procs, i), empty, NULL);
            Py_DECREF(empty);
            if (mem == NULL)
                goto done;
        }
        PyObject *e;
        if (mem == NULL) {
            e = Py_NewRef(EMPTY_DICT);
        } else {
            int truth = PyObject_IsTrue(mem);
            if (truth < 0) {
                Py_DECREF(mem);
                goto done;
            }
            e = (truth || !PyDict_CheckExact(mem)) ? ref(c, mem) : Py_NewRef(EMPTY_DICT);
            Py_DECREF(mem);
        }
        if (e == NULL)
            goto done;
        PyTuple_SET_ITEM(tmp, i, e);
    }
    if (PyList_Append(roots, tmp) < 0)
        goto done;
    Py_CLEAR(tmp);
    for (int a = S_faults; a <= S_preempt; a++) {
        PyObject *v = PyObject_GetAttr(r, S[a]);
        if (v == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_AttributeError))
                goto done;
            PyErr_Clear();
            v = PyLong_FromLong(0);
            if (v == NULL)
                goto done;
        }
        int rc = PyList_Append(roots, v);
        Py_DECREF(v);
        if (rc < 0)
            goto done;
    }
    /* the kernel's own fields, in world._kernel_fields() order */
    kv = PyObject_GenericGetDict(k, NULL);
    if (kv == NULL)
        goto done;
    names = PySequence_Tuple(kv);
    if (names == NULL)
        goto done;
    fields = PyDict_GetItemWithError(KERNEL_FIELDS, names);
    if (fields != NULL)
        Py_INCREF(fields);
    else if (PyErr_Occurred())
        goto done;
    else if ((fields = PyObject_CallOneArg(F_kernel_fields, names)) == NULL)
        goto done;
    if (!PyTuple_Check(fields) || PyTuple_GET_SIZE(fields) != 2 || !PyTuple_Check(PyTuple_GET_ITEM(fields, 0))) {
        PyErr_SetString(PyExc_TypeError, "_kernel_fields must return (names, layout)");
        goto done;
    }
    if (PyList_Append(roots, PyTuple_GET_ITEM(fields, 1)) < 0)
        goto done;
    PyObject *fnames = PyTuple_GET_ITEM(fields, 0);
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(fnames); i++) {
        PyObject *name = PyTuple_GET_ITEM(fnames, i);
        PyObject *v = PyDict_GetItemWithError(kv, name);
        if (v == NULL) {
            if (!PyErr_Occurred())
                PyErr_SetObject(PyExc_KeyError, name);
            goto done;
        }
        PyTypeObject *t = Py_TYPE(v);
        PyObject *e;
        if ((PyObject *)t == T_cache) {
            e = enc_cache(c, v);
        } else if (is_scalar(t)) {
            e = Py_NewRef(v);
        } else if ((t == &PyDict_Type && PyDict_GET_SIZE(v) == 0)) {
            e = Py_NewRef(EMPTY_DICT);
        } else if ((t == &PyList_Type || t == &PyTuple_Type) && Py_SIZE(v) == 0) {
            e = PyTuple_New(0);
        } else {
            int has = PyDict_Contains(ENCODERS, (PyObject *)t);
            if (has < 0)
                goto done;
            if (has)
                e = tag_pair(S_at, oid(c, v));
            else if (t == &PyDict_Type)
                e = root_dict(c, name, v);
            else
                e = ref(c, v);
        }
        if (e == NULL)
            goto done;
        int rc = PyList_Append(roots, e);
        Py_DECREF(e);
        if (rc < 0)
            goto done;
    }
    /* every object, in the order first named; the list grows as it is walked */
    enc = PyList_New(0);
    if (enc == NULL)
        goto done;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(c->objs); i++) {
        PyObject *o = PyList_GET_ITEM(c->objs, i);
        Py_INCREF(o);
        PyObject *e = encode(c, o, k);
        if (e == NULL) {
            Py_DECREF(o);
            goto done;
        }
        int rc = PyList_Append(enc, e);
        Py_DECREF(e);
        if (rc == 0 && !symmetry) {
            PyObject *slot = PyObject_GetAttr(o, S[S_slot]);
            if (slot == NULL && PyErr_ExceptionMatches(PyExc_AttributeError)) {
                PyErr_Clear();
                slot = Py_NewRef(Py_None);
            }
            rc = slot == NULL ? -1 : PyList_Append(enc, slot);
            Py_XDECREF(slot);
        }
        Py_DECREF(o);
        if (rc < 0)
            goto done;
    }
    tmp = PyList_AsTuple(roots);
    if (tmp == NULL)
        goto done;
    Py_SETREF(enc, PyList_AsTuple(enc));
    if (enc == NULL)
        goto done;
    out = PyTuple_Pack(2, tmp, enc);
done:
    Py_XDECREF(tmp);
    Py_XDECREF(fields);
    Py_XDECREF(names);
    Py_XDECREF(kv);
    Py_XDECREF(enc);
    Py_XDECREF(roots);
    Py_XDECREF(procs);
    Py_XDECREF(memory);
    Py_XDECREF(tasks);
    Py_XDECREF(k);
    Py_DECREF(c);
    return out;
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
    Py_XDECREF(self->ids);
    Py_XDECREF(self->objs);
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
    {"canonical", (PyCFunction)(void (*)(void))canonical, METH_FASTCALL,
     "canonical(r, symmetry): world.canonical(r, symmetry), built in C."},
    {"configure", configure, METH_O, "configure(dict): the model's classes and world.py's helpers."},
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
