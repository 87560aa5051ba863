/*
 * eventmon.core._speedups: the journal fold and the request path in C.
 *
 * This is an optional accelerator. eventmon.core.fold.fold_python is the
 * reference: this function must leave every aggregate exactly as that one does
 * (tests/core/test_fold.py runs both on the same batches and compares them).
 * Without a C compiler at install time the extension is skipped and the pure
 * Python fold runs instead; nothing else changes.
 *
 * fold(batch, start, series, new_series, cuts, slot_of, bucket_of,
 *      recent, recent_until, ring, size) -> stop
 *
 * Folds batch[start:] entry by entry, where an entry is the tuple
 * (method, endpoint, status, seconds, end) appended by the request path. It
 * stops early, without folding it, at the first entry with end >= recent_until
 * so that the caller can rotate the recent histogram and call again.
 *
 * Every aggregate is an array.array reached through the buffer protocol:
 *   series[(method, endpoint, status)].bucket_counts  array('q'), bound buckets
 *   series[...].sums                                   array('d'), length 1
 *   series[...].hist.counts / .hist.groups             array('q'), HDR slots
 *   recent.counts / recent.groups                      array('q'), HDR slots
 *   ring                                               array('d'), size * 4:
 *       per second [second, requests, errors, latency sum]
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <math.h>
#include <string.h>

#define GROUP_SHIFT 5   /* LatencyHistogram.GROUP_SHIFT */
#define MAX_CACHED 32   /* series whose buffers are held at once */

typedef struct {
    PyObject *series;   /* a reference held until the buffers are released */
    Py_buffer buckets, sums, counts, groups;
    Py_ssize_t n_buckets, n_counts, n_groups;
} Cached;

typedef struct {
    Cached items[MAX_CACHED];
    int used;
} Cache;

static void
cache_release(Cache *cache)
{
    for (int i = 0; i < cache->used; i++) {
        Cached *c = &cache->items[i];
        PyBuffer_Release(&c->buckets);
        PyBuffer_Release(&c->sums);
        PyBuffer_Release(&c->counts);
        PyBuffer_Release(&c->groups);
        Py_DECREF(c->series);
    }
    cache->used = 0;
}

static int
get_buffer(PyObject *owner, const char *attr, Py_buffer *view, char format)
{
    PyObject *obj = PyObject_GetAttrString(owner, attr);
    if (obj == NULL)
        return -1;
    int rc = PyObject_GetBuffer(obj, view, PyBUF_WRITABLE | PyBUF_FORMAT | PyBUF_C_CONTIGUOUS);
    Py_DECREF(obj);
    if (rc < 0)
        return -1;
    if (view->format == NULL || view->format[0] != format || view->format[1] != '\0'
        || view->itemsize != 8) {
        PyBuffer_Release(view);
        PyErr_Format(PyExc_TypeError, "eventmon fold: %s must be an array('%c')", attr, format);
        return -1;
    }
    return 0;
}

/* The buffers of one series, acquired on first sight in this call. */
static Cached *
cache_get(Cache *cache, PyObject *series)
{
    for (int i = cache->used - 1; i >= 0; i--) {
        if (cache->items[i].series == series)
            return &cache->items[i];
    }
    if (cache->used == MAX_CACHED)
        cache_release(cache);
    Cached *c = &cache->items[cache->used];
    PyObject *hist = PyObject_GetAttrString(series, "hist");
    if (hist == NULL)
        return NULL;
    Py_INCREF(series);
    c->series = series;
    if (get_buffer(series, "bucket_counts", &c->buckets, 'q') < 0) {
        Py_DECREF(hist);
        Py_DECREF(series);
        return NULL;
    }
    if (get_buffer(series, "sums", &c->sums, 'd') < 0) {
        PyBuffer_Release(&c->buckets);
        Py_DECREF(hist);
        Py_DECREF(series);
        return NULL;
    }
    if (get_buffer(hist, "counts", &c->counts, 'q') < 0) {
        PyBuffer_Release(&c->buckets);
        PyBuffer_Release(&c->sums);
        Py_DECREF(hist);
        Py_DECREF(series);
        return NULL;
    }
    if (get_buffer(hist, "groups", &c->groups, 'q') < 0) {
        PyBuffer_Release(&c->buckets);
        PyBuffer_Release(&c->sums);
        PyBuffer_Release(&c->counts);
        Py_DECREF(hist);
        Py_DECREF(series);
        return NULL;
    }
    Py_DECREF(hist);
    c->n_buckets = c->buckets.len / 8;
    c->n_counts = c->counts.len / 8;
    c->n_groups = c->groups.len / 8;
    if (c->sums.len < 8) {
        cache->used++;
        PyErr_SetString(PyExc_ValueError, "eventmon fold: sums must hold one value");
        return NULL;
    }
    cache->used++;
    return c;
}

static int
equal(PyObject *a, PyObject *b)
{
    return a == b ? 1 : PyObject_RichCompareBool(a, b, Py_EQ);
}

static PyObject *
fold(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 11) {
        PyErr_SetString(PyExc_TypeError, "fold() takes exactly 11 arguments");
        return NULL;
    }
    PyObject *batch = args[0];
    Py_ssize_t start = PyLong_AsSsize_t(args[1]);
    PyObject *series_map = args[2];
    PyObject *new_series = args[3];
    double recent_until = PyFloat_AsDouble(args[8]);
    long long size = PyLong_AsLongLong(args[10]);
    if (PyErr_Occurred())
        return NULL;
    if (!PyList_Check(batch) || !PyDict_Check(series_map)) {
        PyErr_SetString(PyExc_TypeError, "fold(): batch must be a list and series a dict");
        return NULL;
    }
    if (start < 0) {
        PyErr_SetString(PyExc_ValueError, "fold(): start must be >= 0");
        return NULL;
    }
    if (size < 1) {
        PyErr_SetString(PyExc_ValueError, "fold(): window size must be >= 1");
        return NULL;
    }

    Py_buffer cuts_b, slot_b, bucket_b, recent_b, recent_g, ring_b;
    if (PyObject_GetBuffer(args[4], &cuts_b, PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0)
        return NULL;
    if (PyObject_GetBuffer(args[5], &slot_b, PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0) {
        PyBuffer_Release(&cuts_b);
        return NULL;
    }
    if (PyObject_GetBuffer(args[6], &bucket_b, PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0) {
        PyBuffer_Release(&cuts_b);
        PyBuffer_Release(&slot_b);
        return NULL;
    }
    if (get_buffer(args[7], "counts", &recent_b, 'q') < 0) {
        PyBuffer_Release(&cuts_b);
        PyBuffer_Release(&slot_b);
        PyBuffer_Release(&bucket_b);
        return NULL;
    }
    if (get_buffer(args[7], "groups", &recent_g, 'q') < 0) {
        PyBuffer_Release(&cuts_b);
        PyBuffer_Release(&slot_b);
        PyBuffer_Release(&bucket_b);
        PyBuffer_Release(&recent_b);
        return NULL;
    }
    if (PyObject_GetBuffer(args[9], &ring_b, PyBUF_WRITABLE | PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0) {
        PyBuffer_Release(&cuts_b);
        PyBuffer_Release(&slot_b);
        PyBuffer_Release(&bucket_b);
        PyBuffer_Release(&recent_b);
        PyBuffer_Release(&recent_g);
        return NULL;
    }

    PyObject *result = NULL;
    PyObject *last_method = NULL, *last_endpoint = NULL, *last_status = NULL;
    PyObject *last_series = NULL;   /* owned reference */
    Cache cache;
    cache.used = 0;

    const double *cuts = (const double *)cuts_b.buf;
    const long long *slot_of = (const long long *)slot_b.buf;
    const long long *bucket_of = (const long long *)bucket_b.buf;
    long long *recent = (long long *)recent_b.buf;
    long long *recent_groups = (long long *)recent_g.buf;
    Py_ssize_t n_recent_groups = recent_g.len / 8;
    double *ring = (double *)ring_b.buf;
    Py_ssize_t n_cuts = cuts_b.len / 8;
    Py_ssize_t n_recent = recent_b.len / 8;
    if (strcmp(cuts_b.format, "d") != 0 || strcmp(slot_b.format, "q") != 0
        || strcmp(bucket_b.format, "q") != 0 || strcmp(ring_b.format, "d") != 0) {
        PyErr_SetString(PyExc_TypeError,
                        "fold(): cuts and ring must be array('d'), slot_of and bucket_of"
                        " array('q')");
        goto done;
    }
    if (slot_b.len != bucket_b.len || slot_b.len != cuts_b.len + 8
        || ring_b.len < (Py_ssize_t)(size * 4 * 8)) {
        PyErr_SetString(PyExc_ValueError, "fold(): inconsistent table sizes");
        goto done;
    }

    double sec_start = -1.0, sec_end = -1.0;
    double *wslot = ring;
    Py_ssize_t i = start;
    for (; i < PyList_GET_SIZE(batch); i++) {
        PyObject *entry = PyList_GET_ITEM(batch, i);
        if (!PyTuple_Check(entry)) {
            PyErr_SetString(PyExc_TypeError, "fold(): an entry must be a tuple");
            goto done;
        }
        if (PyTuple_GET_SIZE(entry) != 5) {
            PyErr_SetString(PyExc_ValueError, "fold(): an entry must have 5 fields");
            goto done;
        }
        PyObject *method = PyTuple_GET_ITEM(entry, 0);
        PyObject *endpoint = PyTuple_GET_ITEM(entry, 1);
        PyObject *status_o = PyTuple_GET_ITEM(entry, 2);
        double seconds = PyFloat_AsDouble(PyTuple_GET_ITEM(entry, 3));
        if (seconds == -1.0 && PyErr_Occurred())
            goto done;
        double end = PyFloat_AsDouble(PyTuple_GET_ITEM(entry, 4));
        if (end == -1.0 && PyErr_Occurred())
            goto done;
        if (end >= recent_until)
            break;  /* the caller rotates the recent histogram, then calls again */
        long status = PyLong_AsLong(status_o);
        if (status == -1 && PyErr_Occurred())
            goto done;

        Cached *c = NULL;
        /* The series: the previous entry's when the labels repeat, else the dict's.
         * Only a series found in the dict is remembered: new_series() has side
         * effects (label caps count every refusal) that must happen as often as
         * in the Python fold. */
        int same = 0;
        if (last_series != NULL) {
            int r = equal(method, last_method);
            if (r > 0)
                r = equal(endpoint, last_endpoint);
            if (r > 0)
                r = equal(status_o, last_status);
            if (r < 0)
                goto done;
            same = r;
        }
        if (!same) {
            PyObject *key = PyTuple_Pack(3, method, endpoint, status_o);
            if (key == NULL)
                goto done;
            PyObject *s = PyDict_GetItemWithError(series_map, key);  /* borrowed */
            Py_DECREF(key);
            Cached *c_new = NULL;
            if (s != NULL) {
                Py_INCREF(s);
                Py_XSETREF(last_series, s);
                last_method = method;     /* borrowed from the entry, which batch holds */
                last_endpoint = endpoint;
                last_status = status_o;
            } else {
                if (PyErr_Occurred())
                    goto done;
                s = PyObject_CallFunctionObjArgs(new_series, method, endpoint, status_o, NULL);
                if (s == NULL)
                    goto done;
                Py_CLEAR(last_series);
                c_new = cache_get(&cache, s);
                Py_DECREF(s);  /* the cache holds it now */
                if (c_new == NULL)
                    goto done;
            }
            c = c_new;
        }
        if (c == NULL)
            c = cache_get(&cache, last_series);
        if (c == NULL)
            goto done;

        /* bisect_right(cuts, seconds): the region of both the HDR slot and the bucket. */
        Py_ssize_t lo = 0, hi = n_cuts;
        while (lo < hi) {
            Py_ssize_t mid = (lo + hi) >> 1;
            if (seconds < cuts[mid])
                hi = mid;
            else
                lo = mid + 1;
        }
        long long idx = slot_of[lo];
        long long bucket = bucket_of[lo];
        if (idx < 0 || idx >= c->n_counts || (idx >> GROUP_SHIFT) >= c->n_groups
            || idx >= n_recent || (idx >> GROUP_SHIFT) >= n_recent_groups
            || bucket < 0 || bucket >= c->n_buckets) {
            PyErr_SetString(PyExc_IndexError, "fold(): a histogram is smaller than its layout");
            goto done;
        }
        ((double *)c->sums.buf)[0] += seconds;
        ((long long *)c->buckets.buf)[bucket] += 1;
        ((long long *)c->counts.buf)[idx] += 1;
        ((long long *)c->groups.buf)[idx >> GROUP_SHIFT] += 1;
        recent[idx] += 1;
        recent_groups[idx >> GROUP_SHIFT] += 1;

        /* The sliding window's slot for the second the request ended in. */
        if (!(sec_start <= end && end < sec_end)) {
            if (!isfinite(end)) {
                PyErr_SetString(PyExc_OverflowError, "fold(): an end time is not finite");
                goto done;
            }
            double sec = trunc(end);  /* int(end) */
            long long slot = (long long)fmod(sec, (double)size);
            if (slot < 0)
                slot += size;  /* Python's modulo is never negative */
            wslot = ring + slot * 4;
            if (wslot[0] != sec) {
                if (wslot[0] > sec) {
                    sec_start = sec_end = -1.0;
                    continue;  /* ended before the window: in the totals only */
                }
                wslot[0] = sec;
                wslot[1] = wslot[2] = wslot[3] = 0.0;
            }
            sec_start = sec;
            sec_end = sec + 1.0;
        }
        wslot[1] += 1.0;
        wslot[3] += seconds;
        if (status >= 500)
            wslot[2] += 1.0;
    }
    result = PyLong_FromSsize_t(i);

done:
    Py_XDECREF(last_series);
    cache_release(&cache);
    PyBuffer_Release(&cuts_b);
    PyBuffer_Release(&slot_b);
    PyBuffer_Release(&bucket_b);
    PyBuffer_Release(&recent_b);
    PyBuffer_Release(&recent_g);
    PyBuffer_Release(&ring_b);
    return result;
}

/* ------------------------------------------------------------------ journal
 *
 * Journal: one thread's journal, the C twin of eventmon.core.journal's
 * ThreadJournal (same attributes: entries, started, finished, thread).
 */

static PyObject *current_thread = NULL;   /* threading.current_thread */
static PyObject *str_journal = NULL;      /* "journal", interned */

typedef struct {
    PyObject_HEAD
    PyObject *entries;      /* list of (method, endpoint, status, seconds, end) */
    Py_ssize_t started;
    Py_ssize_t finished;
    PyObject *thread;
} JournalObject;

static PyTypeObject JournalType;

static PyObject *
journal_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    if (PyTuple_GET_SIZE(args) != 0 || (kwds != NULL && PyDict_GET_SIZE(kwds) != 0)) {
        PyErr_SetString(PyExc_TypeError, "Journal() takes no arguments");
        return NULL;
    }
    JournalObject *self = (JournalObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->entries = PyList_New(0);
    self->thread = PyObject_CallNoArgs(current_thread);
    if (self->entries == NULL || self->thread == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static int
journal_traverse(JournalObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->entries);
    Py_VISIT(self->thread);
    return 0;
}

static int
journal_clear(JournalObject *self)
{
    Py_CLEAR(self->entries);
    Py_CLEAR(self->thread);
    return 0;
}

static void
journal_dealloc(JournalObject *self)
{
    PyObject_GC_UnTrack(self);
    journal_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMemberDef journal_members[] = {
    {"entries", T_OBJECT_EX, offsetof(JournalObject, entries), READONLY, NULL},
    {"started", T_PYSSIZET, offsetof(JournalObject, started), 0, NULL},
    {"finished", T_PYSSIZET, offsetof(JournalObject, finished), 0, NULL},
    {"thread", T_OBJECT_EX, offsetof(JournalObject, thread), 0, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject JournalType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "eventmon.core._speedups.Journal",
    .tp_doc = "The current thread's entries plus its in-flight counters.",
    .tp_basicsize = sizeof(JournalObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = journal_new,
    .tp_traverse = (traverseproc)journal_traverse,
    .tp_clear = (inquiry)journal_clear,
    .tp_dealloc = (destructor)journal_dealloc,
    .tp_members = journal_members,
};

/* ----------------------------------------------------------------- recorder
 *
 * Recorder: the request path of MetricsCollector (begin, end, observe), the C
 * twin of the Python methods, which stay the reference. It holds the
 * collector's thread-local, the callables it falls back on, and two settings.
 */

typedef struct {
    PyObject_HEAD
    PyObject *local;    /* threading.local whose .journal is this thread's Journal */
    PyObject *mine;     /* () -> Journal, creates and registers one */
    PyObject *drain;    /* (journal) -> None, folds a full journal */
    PyObject *on_slow;  /* (method, endpoint, status, seconds) -> None */
    PyObject *clock;    /* () -> float */
    double slow_threshold;
    Py_ssize_t limit;
} RecorderObject;

static PyObject *
recorder_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *local, *mine, *drain, *on_slow, *clock;
    double slow_threshold;
    Py_ssize_t limit;
    static char *kwlist[] = {"local", "mine", "drain", "on_slow", "clock",
                             "slow_threshold", "limit", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOOOdn:Recorder", kwlist, &local, &mine,
                                     &drain, &on_slow, &clock, &slow_threshold, &limit))
        return NULL;
    if (!PyCallable_Check(mine) || !PyCallable_Check(drain) || !PyCallable_Check(on_slow)
        || !PyCallable_Check(clock)) {
        PyErr_SetString(PyExc_TypeError, "Recorder: mine, drain, on_slow and clock must be callable");
        return NULL;
    }
    if (limit < 1) {
        PyErr_SetString(PyExc_ValueError, "Recorder: limit must be >= 1");
        return NULL;
    }
    RecorderObject *self = (RecorderObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->local = Py_NewRef(local);
    self->mine = Py_NewRef(mine);
    self->drain = Py_NewRef(drain);
    self->on_slow = Py_NewRef(on_slow);
    self->clock = Py_NewRef(clock);
    self->slow_threshold = slow_threshold;
    self->limit = limit;
    return (PyObject *)self;
}

static int
recorder_traverse(RecorderObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->local);
    Py_VISIT(self->mine);
    Py_VISIT(self->drain);
    Py_VISIT(self->on_slow);
    Py_VISIT(self->clock);
    return 0;
}

static int
recorder_clear(RecorderObject *self)
{
    Py_CLEAR(self->local);
    Py_CLEAR(self->mine);
    Py_CLEAR(self->drain);
    Py_CLEAR(self->on_slow);
    Py_CLEAR(self->clock);
    return 0;
}

static void
recorder_dealloc(RecorderObject *self)
{
    PyObject_GC_UnTrack(self);
    recorder_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* This thread's journal (a new reference), created on first use. */
static JournalObject *
my_journal(RecorderObject *self)
{
    PyObject *j = PyObject_GetAttr(self->local, str_journal);
    if (j == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError))
            return NULL;
        PyErr_Clear();
        j = PyObject_CallNoArgs(self->mine);
        if (j == NULL)
            return NULL;
    }
    if (!Py_IS_TYPE(j, &JournalType)) {
        PyErr_Format(PyExc_TypeError, "eventmon: expected a Journal, got %.100s",
                     Py_TYPE(j)->tp_name);
        Py_DECREF(j);
        return NULL;
    }
    return (JournalObject *)j;
}

/* Append an entry, then run the slow hook and the drain as the Python path does.
 * Steals nothing; returns 0 or -1 with an exception set. */
static int
record(RecorderObject *self, JournalObject *journal, PyObject *method, PyObject *endpoint,
       PyObject *status, PyObject *seconds_obj, double seconds, PyObject *end_obj)
{
    PyObject *entry = PyTuple_New(5);
    if (entry == NULL)
        return -1;
    PyTuple_SET_ITEM(entry, 0, Py_NewRef(method));
    PyTuple_SET_ITEM(entry, 1, Py_NewRef(endpoint));
    PyTuple_SET_ITEM(entry, 2, Py_NewRef(status));
    PyTuple_SET_ITEM(entry, 3, Py_NewRef(seconds_obj));
    PyTuple_SET_ITEM(entry, 4, Py_NewRef(end_obj));
    int rc = PyList_Append(journal->entries, entry);
    Py_DECREF(entry);
    if (rc < 0)
        return -1;
    if (seconds > self->slow_threshold) {
        PyObject *r = PyObject_CallFunctionObjArgs(self->on_slow, method, endpoint, status,
                                                   seconds_obj, NULL);
        if (r == NULL)
            return -1;
        Py_DECREF(r);
    }
    if (PyList_GET_SIZE(journal->entries) >= self->limit) {
        PyObject *r = PyObject_CallOneArg(self->drain, (PyObject *)journal);
        if (r == NULL)
            return -1;
        Py_DECREF(r);
    }
    return 0;
}

static PyObject *
recorder_begin(RecorderObject *self, PyObject *Py_UNUSED(ignored))
{
    JournalObject *j = my_journal(self);
    if (j == NULL)
        return NULL;
    j->started++;
    return (PyObject *)j;
}

/* end(token, method, endpoint, status, start) */
static PyObject *
recorder_end(RecorderObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "end() takes exactly 5 arguments");
        return NULL;
    }
    if (!Py_IS_TYPE(args[0], &JournalType)) {
        PyErr_SetString(PyExc_TypeError, "end(): the token must come from begin()");
        return NULL;
    }
    JournalObject *token = (JournalObject *)args[0];
    double start = PyFloat_AsDouble(args[4]);
    if (start == -1.0 && PyErr_Occurred())
        return NULL;
    PyObject *end_obj = PyObject_CallNoArgs(self->clock);
    if (end_obj == NULL)
        return NULL;
    double end = PyFloat_AsDouble(end_obj);
    if (end == -1.0 && PyErr_Occurred()) {
        Py_DECREF(end_obj);
        return NULL;
    }
    double seconds = end - start;
    PyObject *seconds_obj = PyFloat_FromDouble(seconds);
    if (seconds_obj == NULL) {
        Py_DECREF(end_obj);
        return NULL;
    }
    token->finished++;
    int rc = record(self, token, args[1], args[2], args[3], seconds_obj, seconds, end_obj);
    Py_DECREF(seconds_obj);
    Py_DECREF(end_obj);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* observe(method, endpoint, status_code, seconds) */
static PyObject *
recorder_observe(RecorderObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "observe() takes exactly 4 arguments");
        return NULL;
    }
    double seconds = PyFloat_AsDouble(args[3]);
    if (seconds == -1.0 && PyErr_Occurred())
        return NULL;
    JournalObject *j = my_journal(self);
    if (j == NULL)
        return NULL;
    PyObject *end_obj = PyObject_CallNoArgs(self->clock);
    int rc = -1;
    if (end_obj != NULL) {
        rc = record(self, j, args[0], args[1], args[2], args[3], seconds, end_obj);
        Py_DECREF(end_obj);
    }
    Py_DECREF(j);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef recorder_methods[] = {
    {"begin", (PyCFunction)recorder_begin, METH_NOARGS,
     "Count a request as in progress; returns the token to pass to end()."},
    {"end", (PyCFunction)(void (*)(void))recorder_end, METH_FASTCALL,
     "end(token, method, endpoint, status, start): record the request begun with token."},
    {"observe", (PyCFunction)(void (*)(void))recorder_observe, METH_FASTCALL,
     "observe(method, endpoint, status_code, seconds): record one finished request."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef recorder_members[] = {
    {"slow_threshold", T_DOUBLE, offsetof(RecorderObject, slow_threshold), 0, NULL},
    {"limit", T_PYSSIZET, offsetof(RecorderObject, limit), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject RecorderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "eventmon.core._speedups.Recorder",
    .tp_doc = "The request path of a MetricsCollector: begin, end and observe.",
    .tp_basicsize = sizeof(RecorderObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = recorder_new,
    .tp_traverse = (traverseproc)recorder_traverse,
    .tp_clear = (inquiry)recorder_clear,
    .tp_dealloc = (destructor)recorder_dealloc,
    .tp_methods = recorder_methods,
    .tp_members = recorder_members,
};

/* ------------------------------------------------------------------- module */

static PyMethodDef methods[] = {
    {"fold", (PyCFunction)(void (*)(void))fold, METH_FASTCALL,
     "Fold journal entries into the aggregates (see eventmon.core.fold)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    .m_base = PyModuleDef_HEAD_INIT,
    .m_name = "eventmon.core._speedups",
    .m_doc = "eventmon's request path and journal fold in C; the Python code is the reference.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    if (PyType_Ready(&JournalType) < 0 || PyType_Ready(&RecorderType) < 0)
        return NULL;
    if (current_thread == NULL) {
        PyObject *threading = PyImport_ImportModule("threading");
        if (threading == NULL)
            return NULL;
        current_thread = PyObject_GetAttrString(threading, "current_thread");
        Py_DECREF(threading);
        if (current_thread == NULL)
            return NULL;
    }
    if (str_journal == NULL) {
        str_journal = PyUnicode_InternFromString("journal");
        if (str_journal == NULL)
            return NULL;
    }
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "Journal", (PyObject *)&JournalType) < 0
        || PyModule_AddObjectRef(m, "Recorder", (PyObject *)&RecorderType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
