/*
 * rmapcheck.check._snapshot: world.Snapshot recorded and restored in C.
 *
 * A snapshot records the shallow state of every mutable object reachable
 * from a state (rmapcheck/check/world.py, SnapshotPy): the slots of each
 * FastPickle object (what its __getstate__ returns), the items of each
 * dict, list and set, the __dict__ of any other object; tuples and
 * frozensets are walked, not recorded. restore() writes all of it back in
 * place. This module walks in the very order SnapshotPy walks, records the
 * same objects and states (tests/test_snapshot.py compares them), and
 * restores them with the same writes:
 *
 * - A FastPickle class's __getstate__ and __setstate__ carry the names of
 *   the slots they read and write (slot_names, rmapcheck/model/slab.py).
 *   Where both functions are still the class's own and each name is a plain
 *   object slot (a member descriptor of type T_OBJECT_EX, not read-only,
 *   with the default attribute access), the slot is read and written at its
 *   offset in the object, as the descriptor itself does. Any other
 *   FastPickle class is recorded by calling its __getstate__ and restored by
 *   calling its __setstate__.
 * - The values recorded of all objects of one snapshot sit in one array.
 *
 * What a type is (immutable, container, FastPickle and how, function, other)
 * is decided once per type and kept in KINDS.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

/* configured by world.py */
static PyTypeObject *FASTPICKLE;
static PyObject *NEWOBJ;  /* copyreg.__newobj__ */
/* type -> a slot layout (bytes: Py_ssize_t offsets, in __getstate__ order)
 * or the kind (int) of a type that is not read through its slots */
static PyObject *KINDS;
static PyObject *S_getstate, *S_setstate, *S_slot_names, *S_dict, *CONTAINERS;

enum { K_CALL = 0, K_CODE = 1, K_OTHER = 2 };

/* One recorded FastPickle object: its slots at the offsets of layout,
 * their values vals[start:start + n]; or, without a layout (NULL), what
 * __getstate__ returned at vals[start] and the bound __setstate__ at
 * vals[start + 1]. */
typedef struct {
    PyObject *obj;
    PyObject *layout;
    Py_ssize_t start;
} ObjRec;

/* a container and its saved copy */
typedef struct {
    PyObject *target;
    PyObject *saved;
} Pair;

typedef struct {
    PyObject_HEAD
    ObjRec *objs;
    Py_ssize_t nobjs, capobjs;
    PyObject **vals;
    Py_ssize_t nvals, capvals;
    Pair *pairs[3];                 /* dicts, lists, sets */
    Py_ssize_t npairs[3], cappairs[3];
} Saved;

enum { P_DICT, P_LIST, P_SET };

static PyTypeObject SavedType;

static int grow(void **arr, Py_ssize_t *cap, Py_ssize_t need, size_t size)
{
    if (need <= *cap)
        return 0;
    Py_ssize_t n = *cap ? *cap : 16;
    while (n < need)
        n *= 2;
    void *p = PyMem_Realloc(*arr, (size_t)n * size);
    if (p == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    *arr = p;
    *cap = n;
    return 0;
}

/* Append a pair, taking both references (also on failure). */
static int add_pair(Saved *s, int kind, PyObject *target, PyObject *saved)
{
    if (grow((void **)&s->pairs[kind], &s->cappairs[kind], s->npairs[kind] + 1, sizeof(Pair)) < 0) {
        Py_DECREF(target);
        Py_DECREF(saved);
        return -1;
    }
    s->pairs[kind][s->npairs[kind]++] = (Pair){target, saved};
    return 0;
}

/* Append a value, taking the reference (also on failure). */
static int add_val(Saved *s, PyObject *v)
{
    if (grow((void **)&s->vals, &s->capvals, s->nvals + 1, sizeof(PyObject *)) < 0) {
        Py_DECREF(v);
        return -1;
    }
    s->vals[s->nvals++] = v;
    return 0;
}

/* ---- the walk ---- */

/* Objects seen, by address (all of them stay alive during the walk: each
 * is the root, a skipped object or held by a saved copy or a container). */
typedef struct {
    PyObject **slots;
    Py_ssize_t mask, used;
} Seen;

static inline size_t ptr_hash(PyObject *o)
{
    size_t h = (size_t)o;
    return (h >> 4) ^ (h >> 13);
}

static int seen_grow(Seen *t)
{
    Py_ssize_t n = (t->mask + 1) * 2;
    PyObject **slots = PyMem_Calloc((size_t)n, sizeof(PyObject *));
    if (slots == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i <= t->mask; i++) {
        PyObject *o = t->slots[i];
        if (o == NULL)
            continue;
        size_t j = ptr_hash(o) & (size_t)(n - 1);
        while (slots[j] != NULL)
            j = (j + 1) & (size_t)(n - 1);
        slots[j] = o;
    }
    PyMem_Free(t->slots);
    t->slots = slots;
    t->mask = n - 1;
    return 0;
}

/* 1 if o was seen before, 0 if not (now it is), -1 on error */
static int seen_add(Seen *t, PyObject *o)
{
    size_t j = ptr_hash(o) & (size_t)t->mask;
    for (;;) {
        PyObject *x = t->slots[j];
        if (x == o)
            return 1;
        if (x == NULL)
            break;
        j = (j + 1) & (size_t)t->mask;
    }
    t->slots[j] = o;
    if (++t->used * 2 > t->mask && seen_grow(t) < 0)
        return -1;
    return 0;
}

/* What is left to walk: borrowed references, popped last first. */
typedef struct {
    PyObject **items;
    Py_ssize_t n, cap;
    PyObject *keep;  /* list: items made by iterating (frozensets, sets, tuple subclasses) */
} Todo;

static int push_array(Todo *todo, PyObject *const *items, Py_ssize_t n)
{
    if (grow((void **)&todo->items, &todo->cap, todo->n + n, sizeof(PyObject *)) < 0)
        return -1;
    memcpy(todo->items + todo->n, items, (size_t)n * sizeof(PyObject *));
    todo->n += n;
    return 0;
}

static int push_iter(Todo *todo, PyObject *o)
{
    PyObject *it = PyObject_GetIter(o);
    if (it == NULL)
        return -1;
    PyObject *x;
    while ((x = PyIter_Next(it)) != NULL) {
        int err = PyList_Append(todo->keep, x);
        Py_DECREF(x);
        if (err < 0 || push_array(todo, &x, 1) < 0) {
            Py_DECREF(it);
            return -1;
        }
    }
    Py_DECREF(it);
    return PyErr_Occurred() ? -1 : 0;
}

/* the slot names a FastPickle function carries, or NULL (no error) */
static PyObject *slot_names(PyTypeObject *t, PyObject *method)
{
    PyObject *f = PyObject_GetAttr((PyObject *)t, method);
    if (f == NULL) {
        PyErr_Clear();
        return NULL;
    }
    PyObject *names = PyObject_GetAttr(f, S_slot_names);
    Py_DECREF(f);
    if (names == NULL)
        PyErr_Clear();
    return names;
}

/* The offsets of a FastPickle class's slots (bytes), or Py_None where they
 * cannot be read and written directly. */
static PyObject *slot_layout(PyTypeObject *t)
{
    if (t->tp_getattro != PyObject_GenericGetAttr || t->tp_setattro != PyObject_GenericSetAttr)
        Py_RETURN_NONE;
    PyObject *get = slot_names(t, S_getstate);
    PyObject *put = slot_names(t, S_setstate);
    PyObject *out = Py_None;
    if (get == NULL || get != put || !PyTuple_CheckExact(get))
        goto done;
    Py_ssize_t n = PyTuple_GET_SIZE(get);
    PyObject *layout = PyBytes_FromStringAndSize(NULL, n * (Py_ssize_t)sizeof(Py_ssize_t));
    if (layout == NULL) {
        out = NULL;
        goto done;
    }
    Py_ssize_t *off = (Py_ssize_t *)PyBytes_AS_STRING(layout);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *name = PyTuple_GET_ITEM(get, i);
        PyObject *d = PyUnicode_CheckExact(name) ? _PyType_Lookup(t, name) : NULL;
        if (d == NULL || !Py_IS_TYPE(d, &PyMemberDescr_Type)) {
            Py_DECREF(layout);
            goto done;
        }
        PyMemberDef *m = ((PyMemberDescrObject *)d)->d_member;
        if (m->type != T_OBJECT_EX || (m->flags & READONLY)) {
            Py_DECREF(layout);
            goto done;
        }
        off[i] = m->offset;
    }
    out = layout;
done:
    Py_XDECREF(get);
    Py_XDECREF(put);
    if (out == Py_None)
        Py_INCREF(out);
    return out;
}

/* KINDS[t], decided on first sight (borrowed) */
static PyObject *kind_of(PyTypeObject *t)
{
    PyObject *k = PyDict_GetItemWithError(KINDS, (PyObject *)t);
    if (k != NULL || PyErr_Occurred())
        return k;
    if (FASTPICKLE != NULL && PyType_IsSubtype(t, FASTPICKLE)) {
        k = slot_layout(t);
        if (k == Py_None) {
            Py_DECREF(k);
            k = PyLong_FromLong(K_CALL);
        }
    }
    else
        k = PyLong_FromLong(t == &PyFunction_Type || t == &PyCFunction_Type ? K_CODE : K_OTHER);
    if (k == NULL)
        return NULL;
    int err = PyDict_SetItem(KINDS, (PyObject *)t, k);
    Py_DECREF(k);
    return err < 0 ? NULL : k;
}

static int refuse(PyTypeObject *t)
{
    PyObject *name = PyType_GetName(t);
    if (name != NULL) {
        PyErr_Format(PyExc_TypeError, "Snapshot: cannot record a %U", name);
        Py_DECREF(name);
    }
    return -1;
}

/* Read o's slots at the offsets of layout into vals (new references), as
 * __getstate__ reads them; -1 with its AttributeError if one is not set. */
static int read_slots(PyObject *o, PyObject *layout, PyObject **vals)
{
    Py_ssize_t n = PyBytes_GET_SIZE(layout) / (Py_ssize_t)sizeof(Py_ssize_t);
    const Py_ssize_t *off = (const Py_ssize_t *)PyBytes_AS_STRING(layout);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *v = *(PyObject **)((char *)o + off[i]);
        if (v == NULL) {
            /* what the slot's descriptor (and so __getstate__) raises */
            for (Py_ssize_t j = 0; j < i; j++)
                Py_DECREF(vals[j]);
            PyObject *names = slot_names(Py_TYPE(o), S_getstate);
            if (names != NULL && PyTuple_Check(names) && i < PyTuple_GET_SIZE(names))
                PyErr_Format(PyExc_AttributeError, "'%.100s' object has no attribute '%U'",
                             Py_TYPE(o)->tp_name, PyTuple_GET_ITEM(names, i));
            else if (!PyErr_Occurred())
                PyErr_SetString(PyExc_AttributeError, "a slot of the object is not set");
            Py_XDECREF(names);
            return -1;
        }
        vals[i] = Py_NewRef(v);
    }
    return 0;
}

/* Record a FastPickle object by its slots. */
static int record_slots(Saved *s, Todo *todo, PyObject *o, PyObject *layout)
{
    Py_ssize_t n = PyBytes_GET_SIZE(layout) / (Py_ssize_t)sizeof(Py_ssize_t);
    if (grow((void **)&s->objs, &s->capobjs, s->nobjs + 1, sizeof(ObjRec)) < 0
            || grow((void **)&s->vals, &s->capvals, s->nvals + n, sizeof(PyObject *)) < 0)
        return -1;
    PyObject **vals = s->vals + s->nvals;
    if (read_slots(o, layout, vals) < 0)
        return -1;
    s->objs[s->nobjs++] = (ObjRec){Py_NewRef(o), Py_NewRef(layout), s->nvals};
    s->nvals += n;
    return push_array(todo, vals, n);
}

/* Record a FastPickle object through its __getstate__ and __setstate__. */
static int record_call(Saved *s, Todo *todo, PyObject *o)
{
    PyObject *st = PyObject_CallMethodNoArgs(o, S_getstate);
    if (st == NULL)
        return -1;
    if (grow((void **)&s->objs, &s->capobjs, s->nobjs + 1, sizeof(ObjRec)) < 0) {
        Py_DECREF(st);
        return -1;
    }
    Py_ssize_t start = s->nvals;
    if (add_val(s, st) < 0)
        return -1;
    s->objs[s->nobjs++] = (ObjRec){Py_NewRef(o), NULL, start};
    if (PyTuple_CheckExact(st) || PyList_CheckExact(st)) {
        PyObject *fast = PySequence_Fast(st, "");
        if (fast == NULL)
            return -1;
        int err = push_array(todo, PySequence_Fast_ITEMS(fast), PySequence_Fast_GET_SIZE(fast));
        Py_DECREF(fast);
        if (err < 0)
            return -1;
    }
    else if (push_iter(todo, st) < 0)
        return -1;
    PyObject *setter = PyObject_GetAttr(o, S_setstate);
    return setter == NULL ? -1 : add_val(s, setter);
}

/* An object of no kind above: recorded by its __dict__, or refused. */
static int record_other(Saved *s, Todo *todo, PyObject *o)
{
    PyTypeObject *t = Py_TYPE(o);
    PyObject *d = PyObject_GetAttr(o, S_dict);
    if (d == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError))
            return -1;
        PyErr_Clear();
        return refuse(t);
    }
    int is_container = PyObject_IsInstance(o, CONTAINERS);
    if (is_container < 0) {
        Py_DECREF(d);
        return -1;
    }
    if (is_container || PyCallable_Check(o) || !PyDict_Check(d)) {
        Py_DECREF(d);
        return refuse(t);
    }
    PyObject *copy = PyDict_Copy(d);
    if (copy == NULL) {
        Py_DECREF(d);
        return -1;
    }
    if (add_pair(s, P_DICT, d, copy) < 0)
        return -1;
    Py_ssize_t pos = 0;
    PyObject *k, *v;
    while (PyDict_Next(copy, &pos, &k, &v))
        if (push_array(todo, &v, 1) < 0)
            return -1;
    return 0;
}

static int walk(Saved *s, PyObject *root, PyObject *skip)
{
    Seen seen = {PyMem_Calloc(512, sizeof(PyObject *)), 511, 0};
    Todo todo = {NULL, 0, 0, PyList_New(0)};
    int rc = -1;
    if (seen.slots == NULL || todo.keep == NULL) {
        if (seen.slots == NULL)
            PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(skip); i++)
        if (seen_add(&seen, PyTuple_GET_ITEM(skip, i)) < 0)
            goto done;
    if (push_array(&todo, &root, 1) < 0)
        goto done;
    PyTypeObject *const none_type = Py_TYPE(Py_None);
    while (todo.n) {
        PyObject *o = todo.items[--todo.n];
        PyTypeObject *t = Py_TYPE(o);
        if (t == &PyLong_Type || t == &PyUnicode_Type || t == &PyBool_Type || t == none_type
                || t == &PyFloat_Type || t == &PyBytes_Type || t == &PyType_Type || t == &PyRange_Type)
            continue;
        int was = seen_add(&seen, o);
        if (was < 0)
            goto done;
        if (was)
            continue;
        if (t == &PyTuple_Type) {
            if (push_array(&todo, ((PyTupleObject *)o)->ob_item, PyTuple_GET_SIZE(o)) < 0)
                goto done;
        }
        else if (t == &PyFrozenSet_Type || t->tp_base == &PyTuple_Type) {
            if (push_iter(&todo, o) < 0)
                goto done;
        }
        else if (t == &PyList_Type) {
            PyObject *copy = PyList_GetSlice(o, 0, PyList_GET_SIZE(o));
            if (copy == NULL || add_pair(s, P_LIST, Py_NewRef(o), copy) < 0)
                goto done;
            if (push_array(&todo, ((PyListObject *)copy)->ob_item, PyList_GET_SIZE(copy)) < 0)
                goto done;
        }
        else if (t == &PyDict_Type) {
            PyObject *copy = PyDict_Copy(o);
            if (copy == NULL || add_pair(s, P_DICT, Py_NewRef(o), copy) < 0)
                goto done;
            Py_ssize_t pos = 0;
            PyObject *k, *v;
            while (PyDict_Next(copy, &pos, &k, &v))
                if (push_array(&todo, &v, 1) < 0)
                    goto done;
            pos = 0;
            while (PyDict_Next(copy, &pos, &k, &v))
                if (push_array(&todo, &k, 1) < 0)
                    goto done;
        }
        else if (t == &PySet_Type) {
            PyObject *copy = PySet_New(o);
            if (copy == NULL || add_pair(s, P_SET, Py_NewRef(o), copy) < 0)
                goto done;
            /* in the order the set itself iterates, as SnapshotPy */
            if (push_iter(&todo, o) < 0)
                goto done;
        }
        else {
            PyObject *k = kind_of(t);
            if (k == NULL)
                goto done;
            if (PyBytes_CheckExact(k)) {
                if (record_slots(s, &todo, o, k) < 0)
                    goto done;
            }
            else {
                long kind = PyLong_AsLong(k);
                if (kind == K_CALL) {
                    if (record_call(s, &todo, o) < 0)
                        goto done;
                }
                else if (kind == K_OTHER) {
                    if (record_other(s, &todo, o) < 0)
                        goto done;
                }
                /* K_CODE: functions a state refers to are code, not state */
            }
        }
    }
    rc = 0;
done:
    PyMem_Free(seen.slots);
    PyMem_Free(todo.items);
    Py_XDECREF(todo.keep);
    return rc;
}

/* ---- Saved ---- */

static int saved_traverse(Saved *s, visitproc visit, void *arg)
{
    for (Py_ssize_t i = 0; i < s->nobjs; i++) {
        Py_VISIT(s->objs[i].obj);
        Py_VISIT(s->objs[i].layout);
    }
    for (Py_ssize_t i = 0; i < s->nvals; i++)
        Py_VISIT(s->vals[i]);
    for (int k = 0; k < 3; k++)
        for (Py_ssize_t i = 0; i < s->npairs[k]; i++) {
            Py_VISIT(s->pairs[k][i].target);
            Py_VISIT(s->pairs[k][i].saved);
        }
    return 0;
}

static int saved_clear(Saved *s)
{
    /* counts first: a decref may run code that looks at this object */
    Py_ssize_t nobjs = s->nobjs, nvals = s->nvals, npairs[3];
    s->nobjs = s->nvals = 0;
    for (int k = 0; k < 3; k++) {
        npairs[k] = s->npairs[k];
        s->npairs[k] = 0;
    }
    for (Py_ssize_t i = 0; i < nobjs; i++) {
        Py_DECREF(s->objs[i].obj);
        Py_XDECREF(s->objs[i].layout);
    }
    for (Py_ssize_t i = 0; i < nvals; i++)
        Py_DECREF(s->vals[i]);
    for (int k = 0; k < 3; k++)
        for (Py_ssize_t i = 0; i < npairs[k]; i++) {
            Py_DECREF(s->pairs[k][i].target);
            Py_DECREF(s->pairs[k][i].saved);
        }
    return 0;
}

static void saved_dealloc(Saved *s)
{
    PyObject_GC_UnTrack(s);
    saved_clear(s);
    PyMem_Free(s->objs);
    PyMem_Free(s->vals);
    for (int k = 0; k < 3; k++)
        PyMem_Free(s->pairs[k]);
    PyObject_GC_Del(s);
}

static PyObject *saved_restore(Saved *s, PyObject *Py_UNUSED(ignored))
{
    for (Py_ssize_t i = 0; i < s->nobjs; i++) {
        ObjRec *r = &s->objs[i];
        if (r->layout != NULL) {
            Py_ssize_t n = PyBytes_GET_SIZE(r->layout) / (Py_ssize_t)sizeof(Py_ssize_t);
            const Py_ssize_t *off = (const Py_ssize_t *)PyBytes_AS_STRING(r->layout);
            PyObject **vals = s->vals + r->start;
            for (Py_ssize_t j = 0; j < n; j++) {
                PyObject **slot = (PyObject **)((char *)r->obj + off[j]);
                Py_XSETREF(*slot, Py_NewRef(vals[j]));
            }
        }
        else {
            PyObject *res = PyObject_CallOneArg(s->vals[r->start + 1], s->vals[r->start]);
            if (res == NULL)
                return NULL;
            Py_DECREF(res);
        }
    }
    Pair *p = s->pairs[P_DICT];
    Py_ssize_t n = s->npairs[P_DICT];
    for (Py_ssize_t i = 0; i < n; i++)
        PyDict_Clear(p[i].target);
    for (Py_ssize_t i = 0; i < n; i++)
        if (PyDict_Update(p[i].target, p[i].saved) < 0)
            return NULL;
    p = s->pairs[P_LIST];
    n = s->npairs[P_LIST];
    for (Py_ssize_t i = 0; i < n; i++)
        if (PyList_SetSlice(p[i].target, 0, PY_SSIZE_T_MAX, p[i].saved) < 0)
            return NULL;
    p = s->pairs[P_SET];
    n = s->npairs[P_SET];
    for (Py_ssize_t i = 0; i < n; i++)
        if (PySet_Clear(p[i].target) < 0)
            return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *it = PyObject_GetIter(p[i].saved), *x;
        if (it == NULL)
            return NULL;
        while ((x = PyIter_Next(it)) != NULL) {
            int err = PySet_Add(p[i].target, x);
            Py_DECREF(x);
            if (err < 0) {
                Py_DECREF(it);
                return NULL;
            }
        }
        Py_DECREF(it);
        if (PyErr_Occurred())
            return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *pairs_list(Pair *p, Py_ssize_t n)
{
    PyObject *out = PyList_New(n);
    for (Py_ssize_t i = 0; out != NULL && i < n; i++) {
        PyObject *pair = PyTuple_Pack(2, p[i].target, p[i].saved);
        if (pair == NULL)
            Py_CLEAR(out);
        else
            PyList_SET_ITEM(out, i, pair);
    }
    return out;
}

static PyObject *saved_contents(Saved *s, PyObject *Py_UNUSED(ignored))
{
    PyObject *objs = PyList_New(s->nobjs);
    if (objs == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < s->nobjs; i++) {
        ObjRec *r = &s->objs[i];
        PyObject *st;
        if (r->layout != NULL) {
            Py_ssize_t n = PyBytes_GET_SIZE(r->layout) / (Py_ssize_t)sizeof(Py_ssize_t);
            st = PyTuple_New(n);
            for (Py_ssize_t j = 0; st != NULL && j < n; j++)
                PyTuple_SET_ITEM(st, j, Py_NewRef(s->vals[r->start + j]));
        }
        else
            st = Py_NewRef(s->vals[r->start]);
        PyObject *pair = st == NULL ? NULL : PyTuple_Pack(3, r->obj, st, r->layout ? Py_True : Py_False);
        Py_XDECREF(st);
        if (pair == NULL) {
            Py_DECREF(objs);
            return NULL;
        }
        PyList_SET_ITEM(objs, i, pair);
    }
    PyObject *d = pairs_list(s->pairs[P_DICT], s->npairs[P_DICT]);
    PyObject *l = pairs_list(s->pairs[P_LIST], s->npairs[P_LIST]);
    PyObject *st = pairs_list(s->pairs[P_SET], s->npairs[P_SET]);
    PyObject *out = d && l && st ? PyTuple_Pack(4, objs, d, l, st) : NULL;
    Py_DECREF(objs);
    Py_XDECREF(d);
    Py_XDECREF(l);
    Py_XDECREF(st);
    return out;
}

static PyMethodDef saved_methods[] = {
    {"restore", (PyCFunction)saved_restore, METH_NOARGS,
     "Put every recorded object back as it was when it was recorded."},
    {"contents", (PyCFunction)saved_contents, METH_NOARGS,
     "What was recorded: ([(object, state, by_slots)], [(dict, copy)], [(list, copy)], [(set, copy)]),\n"
     "objects in the order SnapshotPy records them."},
    {NULL},
};

static PyTypeObject SavedType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "rmapcheck.check._snapshot.Saved",
    .tp_basicsize = sizeof(Saved),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The shallow state of every mutable object reachable from a state (world.Snapshot).",
    .tp_traverse = (traverseproc)saved_traverse,
    .tp_clear = (inquiry)saved_clear,
    .tp_dealloc = (destructor)saved_dealloc,
    .tp_methods = saved_methods,
};

static PyObject *record(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyTuple_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "record(root, skip): skip is a tuple");
        return NULL;
    }
    Saved *s = PyObject_GC_New(Saved, &SavedType);
    if (s == NULL)
        return NULL;
    s->objs = NULL;
    s->vals = NULL;
    s->nobjs = s->capobjs = s->nvals = s->capvals = 0;
    for (int k = 0; k < 3; k++) {
        s->pairs[k] = NULL;
        s->npairs[k] = s->cappairs[k] = 0;
    }
    if (walk(s, args[0], args[1]) < 0) {
        Py_DECREF(s);
        return NULL;
    }
    PyObject_GC_Track(s);
    return (PyObject *)s;
}

/* ---- pickling ---- */

/* reduce(obj): what object.__reduce_ex__(protocol 2 and up) returns for a
 * FastPickle object read through its slots, (copyreg.__newobj__, (cls,),
 * state, None, None), the state read at the slots' offsets. */
static PyObject *reduce(PyObject *self, PyObject *o)
{
    PyObject *layout = kind_of(Py_TYPE(o));
    if (layout == NULL)
        return NULL;
    if (!PyBytes_CheckExact(layout)) {
        PyErr_Format(PyExc_TypeError, "reduce: a %.100s is not read through its slots", Py_TYPE(o)->tp_name);
        return NULL;
    }
    PyObject *state = PyTuple_New(PyBytes_GET_SIZE(layout) / (Py_ssize_t)sizeof(Py_ssize_t));
    if (state == NULL)
        return NULL;
    if (read_slots(o, layout, ((PyTupleObject *)state)->ob_item) < 0) {
        /* the items read are released: the tuple holds NULLs from the first unset */
        memset(((PyTupleObject *)state)->ob_item, 0, (size_t)PyTuple_GET_SIZE(state) * sizeof(PyObject *));
        Py_DECREF(state);
        return NULL;
    }
    return Py_BuildValue("(O(O)NOO)", NEWOBJ, (PyObject *)Py_TYPE(o), state, Py_None, Py_None);
}

/* by_slots(cls): whether objects of cls are read and written through their slots */
static PyObject *by_slots(PyObject *self, PyObject *cls)
{
    if (!PyType_Check(cls)) {
        PyErr_SetString(PyExc_TypeError, "by_slots(cls): a class");
        return NULL;
    }
    PyObject *k = kind_of((PyTypeObject *)cls);
    return k == NULL ? NULL : PyBool_FromLong(PyBytes_CheckExact(k));
}

static PyObject *configure(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyType_Check(args[0]) || !PyCallable_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "configure(FastPickle, copyreg.__newobj__)");
        return NULL;
    }
    Py_XSETREF(FASTPICKLE, (PyTypeObject *)Py_NewRef(args[0]));
    Py_XSETREF(NEWOBJ, Py_NewRef(args[1]));
    PyDict_Clear(KINDS);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"record", (PyCFunction)(void (*)(void))record, METH_FASTCALL,
     "record(root, skip): the Saved state of everything reachable from root, the objects of the tuple skip apart."},
    {"reduce", reduce, METH_O,
     "reduce(obj): object.__reduce_ex__(2) of a FastPickle object read through its slots, in C."},
    {"by_slots", by_slots, METH_O, "by_slots(cls): whether objects of cls are read and written through their slots."},
    {"configure", (PyCFunction)(void (*)(void))configure, METH_FASTCALL,
     "configure(FastPickle, copyreg.__newobj__): the base class of the slotted kernel objects."},
    {NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "rmapcheck.check._snapshot",
    "world.Snapshot recorded and restored in C (see _snapshot.c).", -1, methods,
};

PyMODINIT_FUNC PyInit__snapshot(void)
{
    if (PyType_Ready(&SavedType) < 0)
        return NULL;
    S_getstate = PyUnicode_InternFromString("__getstate__");
    S_setstate = PyUnicode_InternFromString("__setstate__");
    S_slot_names = PyUnicode_InternFromString("slot_names");
    S_dict = PyUnicode_InternFromString("__dict__");
    KINDS = PyDict_New();
    CONTAINERS = PyTuple_Pack(3, (PyObject *)&PyList_Type, (PyObject *)&PyDict_Type, (PyObject *)&PySet_Type);
    if (!S_getstate || !S_setstate || !S_slot_names || !S_dict || !KINDS || !CONTAINERS)
        return NULL;
    return PyModule_Create(&module);
}
