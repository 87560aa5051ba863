/*
 * eventmon.core._speedups: the journal fold and the request path in C
 * (the collector's begin/end/observe, and the WSGI middleware's response).
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
 *   recent.counts                                      array('q'), HDR slots
 *       (its group totals are rebuilt when it is read: recent_histogram())
 *   ring                                               array('d'), size * 4:
 *       per second [second, requests, errors, latency sum]
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <math.h>
#include <string.h>

/* PyErr_GetRaisedException arrived in 3.12; the same on older versions. */
static PyObject *
PyErr_GetRaisedException_compat(void)
{
#if PY_VERSION_HEX >= 0x030C0000
    return PyErr_GetRaisedException();
#else
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    if (type == NULL)
        return NULL;
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL && value != NULL)
        PyException_SetTraceback(value, tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return value;
#endif
}

static void
PyErr_SetRaisedException_compat(PyObject *exc)
{
#if PY_VERSION_HEX >= 0x030C0000
    PyErr_SetRaisedException(exc);
#else
    if (exc == NULL)
        return;
    PyObject *tb = PyException_GetTraceback(exc);
    PyErr_Restore(Py_NewRef((PyObject *)Py_TYPE(exc)), exc, tb);
#endif
}

static PyObject *int_500 = NULL;  /* 500, for statuses that are not plain ints */

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
    PyObject *series_map = args[2];
    PyObject *new_series = args[3];
    Py_ssize_t start = PyLong_AsSsize_t(args[1]);
    if (start == -1 && PyErr_Occurred())
        return NULL;
    double recent_until = PyFloat_AsDouble(args[8]);
    if (recent_until == -1.0 && PyErr_Occurred())
        return NULL;
    long long size = PyLong_AsLongLong(args[10]);
    if (size == -1 && PyErr_Occurred())
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

    Py_buffer cuts_b, slot_b, bucket_b, recent_b, ring_b;
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
    if (PyObject_GetBuffer(args[9], &ring_b, PyBUF_WRITABLE | PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0) {
        PyBuffer_Release(&cuts_b);
        PyBuffer_Release(&slot_b);
        PyBuffer_Release(&bucket_b);
        PyBuffer_Release(&recent_b);
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
        || size > ring_b.len / 32) {  /* 4 doubles per second; no overflow */
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
        /* status >= 500, as Python compares it (int subclasses, huge ints, floats). */
        int is_error;
        long status = PyLong_Check(status_o) ? PyLong_AsLong(status_o) : -1;
        if (status != -1) {
            is_error = status >= 500;
        } else {
            PyErr_Clear();  /* overflow, or not an int: compare as Python does */
            is_error = PyObject_RichCompareBool(status_o, int_500, Py_GE);
            if (is_error < 0)
                goto done;
        }

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
            || idx >= n_recent
            || bucket < 0 || bucket >= c->n_buckets) {
            PyErr_SetString(PyExc_IndexError, "fold(): a histogram is smaller than its layout");
            goto done;
        }
        ((double *)c->sums.buf)[0] += seconds;
        ((long long *)c->buckets.buf)[bucket] += 1;
        ((long long *)c->counts.buf)[idx] += 1;
        ((long long *)c->groups.buf)[idx >> GROUP_SHIFT] += 1;
        recent[idx] += 1;

        /* The sliding window's slot for the second the request ended in. */
        if (!(sec_start <= end && end < sec_end)) {
            if (!isfinite(end)) {  /* int(end) in Python: the same errors */
                PyErr_SetString(isnan(end) ? PyExc_ValueError : PyExc_OverflowError,
                                "fold(): an end time is not finite");
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
        if (is_error)
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

/* A duration the aggregates cannot hold: NaN, an infinity or a negative (which would
 * make every later scrape fail, or counters go backwards). The Python path's message. */
static int
bad_seconds(PyObject *seconds_obj)
{
    PyErr_Format(PyExc_ValueError, "seconds must be a finite number >= 0, got %R", seconds_obj);
    return -1;
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
    token->finished++;  /* first, as in the reference: no longer in progress whatever fails */
    if (!PyLong_Check(args[3])) {
        PyErr_Format(PyExc_TypeError, "status must be an int, got %R", args[3]);
        return NULL;
    }
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
    int rc = (seconds >= 0.0 && seconds < INFINITY)
        ? record(self, token, args[1], args[2], args[3], seconds_obj, seconds, end_obj)
        : bad_seconds(seconds_obj);
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
    if (!PyLong_Check(args[2])) {
        PyErr_Format(PyExc_TypeError, "status_code must be an int, got %R", args[2]);
        return NULL;
    }
    double seconds = PyFloat_AsDouble(args[3]);
    if (!(seconds >= 0.0 && seconds < INFINITY)) {  /* NaN fails both */
        if (seconds == -1.0 && PyErr_Occurred())
            return NULL;
        bad_seconds(args[3]);
        return NULL;
    }
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

/* -------------------------------------------------------------- wsgi response
 *
 * WSGIResponse: one request's state in eventmon.wsgi.EventmonMiddleware, and the
 * response iterable handed to the server. The C twin of eventmon.wsgi._Response
 * (the reference): it captures the status in start_response, notes when the
 * body was iterated to its end, and records the request once, at close(), as
 * the status, 500 (an exception) or 499 (the server stopped early).
 *
 * configure_wsgi(codes, status_code, report, endpoint_key, unmatched,
 * fallback_method) hands it the Python pieces it shares with the reference: the
 * status-line cache and its parser, the reporter of internal faults, and three
 * constants.
 */

static PyObject *wsgi_codes = NULL;        /* dict: status line -> int */
static PyObject *wsgi_status_code = NULL;  /* (status line) -> int, fills wsgi_codes */
static PyObject *wsgi_report = NULL;       /* (middleware, exception, where) -> None */
static PyObject *wsgi_endpoint_key = NULL; /* "eventmon.endpoint" */
static PyObject *wsgi_unmatched = NULL;    /* "__unmatched__" */
static PyObject *wsgi_fallback_method = NULL; /* method label when the environ has none */
static PyObject *str_where_endpoint = NULL, *str_where_observe = NULL; /* internal error places */
static PyObject *str_collector = NULL, *str_end = NULL, *str_endpoint_resolver = NULL;
static PyObject *str_request_method = NULL, *str_close = NULL, *str_label_key = NULL;

#define CLIENT_CLOSED 499

typedef struct {
    PyObject_HEAD
    PyObject *mw;              /* the middleware */
    PyObject *environ;
    PyObject *start_response;  /* the server's */
    PyObject *token;           /* from collector.begin(); NULL once recorded */
    PyObject *start;           /* clock() at entry */
    PyObject *body;            /* the app's iterable; NULL until set */
    PyObject *iterator;        /* iter(body), once iteration starts */
    long code;                 /* -1: start_response not called (recorded as 500) */
    Py_ssize_t left;           /* declared Content-Length still to hand out; -1: none */
    char exhausted;            /* the body was iterated to its end */
} WSGIResponseObject;

static PyTypeObject WSGIResponseType;
static PyTypeObject WSGISizedResponseType;  /* the same with __len__ (of the body) */

static int
wsgi_traverse(WSGIResponseObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->mw);
    Py_VISIT(self->environ);
    Py_VISIT(self->start_response);
    Py_VISIT(self->token);
    Py_VISIT(self->start);
    Py_VISIT(self->body);
    Py_VISIT(self->iterator);
    return 0;
}

static int
wsgi_clear(WSGIResponseObject *self)
{
    Py_CLEAR(self->mw);
    Py_CLEAR(self->environ);
    Py_CLEAR(self->start_response);
    Py_CLEAR(self->token);
    Py_CLEAR(self->start);
    Py_CLEAR(self->body);
    Py_CLEAR(self->iterator);
    return 0;
}

static void
wsgi_dealloc(WSGIResponseObject *self)
{
    PyObject_GC_UnTrack(self);
    wsgi_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* wsgi_response(mw, environ, start_response, token, start) */
static PyObject *
wsgi_response(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "wsgi_response() takes exactly 5 arguments");
        return NULL;
    }
    if (wsgi_codes == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "wsgi_response(): configure_wsgi() was not called");
        return NULL;
    }
    WSGIResponseObject *self = PyObject_GC_New(WSGIResponseObject, &WSGIResponseType);
    if (self == NULL)
        return NULL;
    self->mw = Py_NewRef(args[0]);
    self->environ = Py_NewRef(args[1]);
    self->start_response = Py_NewRef(args[2]);
    self->token = Py_NewRef(args[3]);
    self->start = Py_NewRef(args[4]);
    self->body = NULL;
    self->iterator = NULL;
    self->code = -1;
    self->left = -1;
    self->exhausted = 0;
    PyObject_GC_Track(self);
    return (PyObject *)self;
}

/* Hand an internal fault (the current exception, an Exception) to the reporter,
 * counted under `where`. */
static int
report_fault(WSGIResponseObject *self, PyObject *where)
{
    PyObject *exc = PyErr_GetRaisedException_compat();
    if (exc == NULL)
        return 0;
    PyObject *r = PyObject_CallFunctionObjArgs(wsgi_report, self->mw, exc, where, NULL);
    Py_DECREF(exc);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* The request's method and endpoint labels, replacing the fallbacks in *method and
 * *endpoint as they are found (the reference's first `try`); -1 with an exception set. */
static int
wsgi_labels(WSGIResponseObject *self, PyObject **method, PyObject **endpoint)
{
    PyObject *found = PyObject_GetItem(self->environ, str_request_method);
    if (found == NULL)
        return -1;
    Py_SETREF(*method, found);
    if (PyDict_CheckExact(self->environ)) {
        found = PyDict_GetItemWithError(self->environ, wsgi_endpoint_key);
        Py_XINCREF(found);
        if (found == NULL && PyErr_Occurred())
            return -1;
    } else {
        found = PyObject_CallMethod(self->environ, "get", "O", wsgi_endpoint_key);
        if (found == NULL)
            return -1;
    }
    int truthy = found == NULL ? 0 : PyObject_IsTrue(found);
    if (truthy < 0) {
        Py_DECREF(found);
        return -1;
    }
    if (truthy) {
        Py_SETREF(*endpoint, found);
        return 0;
    }
    Py_XDECREF(found);
    PyObject *resolve = PyObject_GetAttr(self->mw, str_endpoint_resolver);
    if (resolve == NULL)
        return -1;
    if (resolve == Py_None) {
        Py_DECREF(resolve);
        return 0;
    }
    found = PyObject_CallOneArg(resolve, self->environ);
    Py_DECREF(resolve);
    if (found == NULL)
        return -1;
    truthy = PyObject_IsTrue(found);
    if (truthy < 0) {
        Py_DECREF(found);
        return -1;
    }
    if (truthy)
        Py_SETREF(*endpoint, found);
    else
        Py_SETREF(*endpoint, Py_NewRef(wsgi_unmatched));
    return 0;
}

/* With extra request labels, the middleware's _label_key(endpoint, environ) turns the
 * template into (template, *values); None (no extra labels) leaves it. -1 with an
 * exception set (the request then keeps the template, as in the reference). */
static int
wsgi_label_key(WSGIResponseObject *self, PyObject **endpoint)
{
    PyObject *label_key = PyObject_GetAttr(self->mw, str_label_key);
    if (label_key == NULL)
        return -1;
    if (label_key == Py_None) {
        Py_DECREF(label_key);
        return 0;
    }
    PyObject *key = PyObject_CallFunctionObjArgs(label_key, *endpoint, self->environ, NULL);
    Py_DECREF(label_key);
    if (key == NULL)
        return -1;
    Py_SETREF(*endpoint, key);
    return 0;
}

/* collector.end(token, method, endpoint, status, start); -1 with an exception set. */
static int
wsgi_end(WSGIResponseObject *self, PyObject *token, PyObject *method, PyObject *endpoint,
         long status)
{
    PyObject *collector = PyObject_GetAttr(self->mw, str_collector);
    if (collector == NULL)
        return -1;
    PyObject *end = PyObject_GetAttr(collector, str_end);
    Py_DECREF(collector);
    if (end == NULL)
        return -1;
    PyObject *status_obj = PyLong_FromLong(status);
    if (status_obj == NULL) {
        Py_DECREF(end);
        return -1;
    }
    PyObject *call_args[5] = {token, method, endpoint, status_obj, self->start};
    PyObject *r = PyObject_Vectorcall(end, call_args, 5, NULL);
    Py_DECREF(end);
    Py_DECREF(status_obj);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* After a step failed: report an Exception under `where` (like `except Exception:`);
 * anything else, or a failing reporter, is kept in *pending to be raised at the end
 * (a second one replaces the first, which becomes its context, as in Python). */
static void
wsgi_fault(WSGIResponseObject *self, PyObject *where, PyObject **pending)
{
    if (PyErr_ExceptionMatches(PyExc_Exception) && report_fault(self, where) == 0)
        return;
    PyObject *raised = PyErr_GetRaisedException_compat();
    if (*pending != NULL && raised != NULL)
        PyException_SetContext(raised, *pending);  /* steals *pending */
    else
        Py_XDECREF(*pending);
    *pending = raised;
}

/* Record the request once with `status`, whatever fails: a fault finding its labels
 * (the endpoint resolver) leaves the fallback labels and is reported; the request is
 * ended all the same; a fault while ending it is reported. Only a BaseException that
 * is not an Exception propagates (-1), after the request was ended. */
static int
wsgi_record(WSGIResponseObject *self, long status)
{
    PyObject *token = self->token;
    if (token == NULL)
        return 0;
    self->token = NULL;  /* owned reference moves to `token` */
    PyObject *method = Py_NewRef(wsgi_fallback_method);
    PyObject *endpoint = Py_NewRef(wsgi_unmatched);
    PyObject *pending = NULL;
    if (wsgi_labels(self, &method, &endpoint) < 0)
        wsgi_fault(self, str_where_endpoint, &pending);
    if (wsgi_label_key(self, &endpoint) < 0)  /* also after a resolver fault */
        wsgi_fault(self, str_where_endpoint, &pending);
    if (wsgi_end(self, token, method, endpoint, status) < 0)
        wsgi_fault(self, str_where_observe, &pending);
    Py_DECREF(token);
    Py_DECREF(method);
    Py_DECREF(endpoint);
    if (pending != NULL) {
        PyErr_SetRaisedException_compat(pending);
        return -1;
    }
    return 0;
}

/* Record 500 while an exception is on its way out, as the reference's
 * `except BaseException: self.finish(500); raise` does: the exception is the one
 * being handled meanwhile (sys.exc_info(), chained logs), and a BaseException
 * from recording replaces it, with it as its context. */
static void
wsgi_record_error(WSGIResponseObject *self)
{
    PyObject *exc = PyErr_GetRaisedException_compat();
    PyObject *old_type, *old_value, *old_tb;
    PyErr_GetExcInfo(&old_type, &old_value, &old_tb);
    if (exc != NULL) {
        PyErr_SetExcInfo(Py_NewRef((PyObject *)Py_TYPE(exc)), Py_NewRef(exc),
                         PyException_GetTraceback(exc));
    }
    int rc = wsgi_record(self, 500);
    PyErr_SetExcInfo(old_type, old_value, old_tb);
    if (rc < 0) {
        PyObject *raised = PyErr_GetRaisedException_compat();
        if (raised != NULL && exc != NULL)
            PyException_SetContext(raised, exc);  /* steals exc */
        else
            Py_XDECREF(exc);
        PyErr_SetRaisedException_compat(raised);
        return;
    }
    PyErr_SetRaisedException_compat(exc);
}

/* The Content-Length among `headers`, or -1 if none is usable; exactly as the
 * reference's _declared_length: a list of 2-tuples (the scan stops at anything
 * else), the first header of that name, 1 to 18 ASCII digits. Never fails. */
static Py_ssize_t
declared_length(PyObject *headers)
{
    if (!PyList_CheckExact(headers))
        return -1;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(headers); i++) {
        PyObject *item = PyList_GET_ITEM(headers, i);
        if (!PyTuple_CheckExact(item) || PyTuple_GET_SIZE(item) != 2)
            return -1;
        PyObject *name = PyTuple_GET_ITEM(item, 0);
        if (!PyUnicode_CheckExact(name) || PyUnicode_GET_LENGTH(name) != 14)
            continue;
        /* name.lower() == "content-length": folding ASCII letters is enough, as the
         * only other characters that lower to ASCII are U+212A KELVIN SIGN ("k", not
         * in the name) and U+0130 (to two characters: never a match) */
        static const char want[] = "content-length";
        int kind = PyUnicode_KIND(name);
        const void *data = PyUnicode_DATA(name);
        int same = 1;
        for (Py_ssize_t k = 0; k < 14 && same; k++) {
            Py_UCS4 c = PyUnicode_READ(kind, data, k);
            if (c >= 'A' && c <= 'Z')
                c += 'a' - 'A';
            same = c == (Py_UCS4)want[k];
        }
        if (!same)
            continue;
        PyObject *value = PyTuple_GET_ITEM(item, 1);
        if (!PyUnicode_CheckExact(value))
            return -1;
        Py_ssize_t n = PyUnicode_GET_LENGTH(value);
        if (n < 1 || n > 18)
            return -1;
        int vkind = PyUnicode_KIND(value);
        const void *vdata = PyUnicode_DATA(value);
        Py_ssize_t length = 0;
        for (Py_ssize_t k = 0; k < n; k++) {
            Py_UCS4 c = PyUnicode_READ(vkind, vdata, k);
            if (c < '0' || c > '9')
                return -1;
            length = length * 10 + (Py_ssize_t)(c - '0');
        }
        return length;
    }
    return -1;
}

/* start_response(status, headers, exc_info=None), by position or keyword. */
static PyObject *
wsgi_start_response(WSGIResponseObject *self, PyObject *const *args, Py_ssize_t nargs,
                    PyObject *kwnames)
{
    static const char *names[3] = {"status", "headers", "exc_info"};
    PyObject *given[3] = {NULL, NULL, NULL};
    if (nargs > 3) {
        PyErr_SetString(PyExc_TypeError, "start_response() takes at most 3 arguments");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < nargs; i++)
        given[i] = args[i];
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t k = 0; k < nkw; k++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, k);
        int slot = -1;
        for (int i = 0; i < 3; i++) {
            if (PyUnicode_CompareWithASCIIString(name, names[i]) == 0)
                slot = i;
        }
        if (slot < 0 || given[slot] != NULL) {
            PyErr_Format(PyExc_TypeError,
                         "start_response() got an unexpected or repeated argument %R", name);
            return NULL;
        }
        given[slot] = args[nargs + k];
    }
    if (given[0] == NULL || given[1] == NULL) {
        PyErr_SetString(PyExc_TypeError, "start_response() needs a status and headers");
        return NULL;
    }
    PyObject *status = given[0], *headers = given[1];
    PyObject *exc_info = given[2] != NULL ? given[2] : Py_None;
    PyObject *code = PyDict_GetItemWithError(wsgi_codes, status);  /* borrowed */
    if (code == NULL) {
        if (PyErr_Occurred()) {
            if (!PyErr_ExceptionMatches(PyExc_TypeError))  /* unhashable: parse it */
                return NULL;
            PyErr_Clear();
        }
        PyObject *parsed = PyObject_CallOneArg(wsgi_status_code, status);
        if (parsed == NULL)
            return NULL;
        self->code = PyLong_AsLong(parsed);
        Py_DECREF(parsed);
        if (self->code == -1 && PyErr_Occurred())
            return NULL;
    } else {
        self->code = PyLong_AsLong(code);
        if (self->code == -1 && PyErr_Occurred())
            return NULL;
    }
    self->left = declared_length(headers);
    PyObject *call_args[3] = {status, headers, exc_info};
    return PyObject_Vectorcall(self->start_response, call_args, 3, NULL);
}

/* The body was handed out whole: record the request with its status. */
static int
wsgi_complete(WSGIResponseObject *self)
{
    return wsgi_record(self, self->code < 0 ? 500 : self->code);
}

static PyObject *
wsgi_iternext(WSGIResponseObject *self)
{
    if (self->iterator == NULL) {
        if (self->body == NULL) {
            PyErr_SetString(PyExc_RuntimeError, "eventmon: the response has no body yet");
            return NULL;
        }
        self->iterator = PyObject_GetIter(self->body);
        if (self->iterator == NULL) {
            wsgi_record_error(self);
            return NULL;
        }
    }
    PyObject *item = PyIter_Next(self->iterator);
    if (item == NULL) {
        if (PyErr_Occurred()) {
            wsgi_record_error(self);
        } else {
            self->exhausted = 1;
            if (wsgi_complete(self) < 0)
                return NULL;
        }
        return NULL;
    }
    if (self->left >= 0) {
        /* Read per chunk: a generator app may call start_response on its first
         * iteration (PEP 3333). */
        Py_ssize_t size = PyBytes_CheckExact(item) ? PyBytes_GET_SIZE(item) : PyObject_Size(item);
        if (size < 0) {
            Py_DECREF(item);
            wsgi_record_error(self);
            return NULL;
        }
        if (self->left - size <= 0) {  /* all the declared bytes are handed out: complete */
            self->left = -1;
            if (wsgi_complete(self) < 0) {
                Py_DECREF(item);
                return NULL;
            }
        } else {
            self->left -= size;
        }
    }
    return item;
}

static PyObject *
wsgi_close(WSGIResponseObject *self, PyObject *Py_UNUSED(ignored))
{
    if (self->body != NULL) {
        PyObject *close = PyObject_GetAttr(self->body, str_close);
        if (close == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_AttributeError))
                return NULL;
            PyErr_Clear();
        } else if (close == Py_None) {  /* getattr(body, "close", None) is None */
            Py_DECREF(close);
        } else {
            PyObject *r = PyObject_CallNoArgs(close);
            Py_DECREF(close);
            if (r == NULL) {
                wsgi_record_error(self);
                return NULL;
            }
            Py_DECREF(r);
        }
    }
    /* Never iterated: nobody went away mid-body. Iterated but not complete (it would
     * have been recorded): the server stopped early, the client went away. */
    int rc = self->iterator == NULL ? wsgi_complete(self) : wsgi_record(self, CLIENT_CLOSED);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
wsgi_finish(WSGIResponseObject *self, PyObject *arg)
{
    long status = PyLong_AsLong(arg);
    if (status == -1 && PyErr_Occurred())
        return NULL;
    if (wsgi_record(self, status) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
configure_wsgi(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6 || !PyDict_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError,
                        "configure_wsgi(codes: dict, status_code, report, endpoint_key, unmatched,"
                        " fallback_method)");
        return NULL;
    }
    Py_XSETREF(wsgi_codes, Py_NewRef(args[0]));
    Py_XSETREF(wsgi_status_code, Py_NewRef(args[1]));
    Py_XSETREF(wsgi_report, Py_NewRef(args[2]));
    Py_XSETREF(wsgi_endpoint_key, Py_NewRef(args[3]));
    Py_XSETREF(wsgi_unmatched, Py_NewRef(args[4]));
    Py_XSETREF(wsgi_fallback_method, Py_NewRef(args[5]));
    Py_RETURN_NONE;
}

static PyMethodDef wsgi_methods[] = {
    {"start_response", (PyCFunction)(void (*)(void))wsgi_start_response,
     METH_FASTCALL | METH_KEYWORDS, "The start_response handed to the application."},
    {"close", (PyCFunction)wsgi_close, METH_NOARGS,
     "Close the body, then record the request (the server calls this once)."},
    {"finish", (PyCFunction)wsgi_finish, METH_O, "Record the request now with this status."},
    {NULL, NULL, 0, NULL},
};

static PyObject *
wsgi_get_body(WSGIResponseObject *self, void *Py_UNUSED(closure))
{
    return Py_NewRef(self->body != NULL ? self->body : Py_None);
}

/* Setting the body also picks the type: with __len__ only if the body has one
 * (the two types share one layout, and static types are not reference counted). */
static int
wsgi_set_body(WSGIResponseObject *self, PyObject *value, void *Py_UNUSED(closure))
{
    Py_XSETREF(self->body, Py_XNewRef(value));
    PyTypeObject *tp = value == NULL ? NULL : Py_TYPE(value);
    int sized = tp != NULL && ((tp->tp_as_sequence != NULL && tp->tp_as_sequence->sq_length != NULL)
                               || (tp->tp_as_mapping != NULL && tp->tp_as_mapping->mp_length != NULL));
    Py_SET_TYPE(self, sized ? &WSGISizedResponseType : &WSGIResponseType);
    return 0;
}

static Py_ssize_t
wsgi_len(WSGIResponseObject *self)
{
    if (self->body == NULL) {
        PyErr_SetString(PyExc_TypeError, "eventmon: the response has no body yet");
        return -1;
    }
    return PyObject_Size(self->body);
}

static PyGetSetDef wsgi_getset[] = {
    {"body", (getter)wsgi_get_body, (setter)wsgi_set_body, "The app's response iterable.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PySequenceMethods wsgi_sized_as_sequence = {
    .sq_length = (lenfunc)wsgi_len,
};

static PyMemberDef wsgi_members[] = {
    {"exhausted", T_BOOL, offsetof(WSGIResponseObject, exhausted), 0, NULL},
    {"token", T_OBJECT, offsetof(WSGIResponseObject, token), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject WSGIResponseType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "eventmon.core._speedups.WSGIResponse",
    .tp_doc = "One WSGI request's state, and the response iterable the server gets.",
    .tp_basicsize = sizeof(WSGIResponseObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_traverse = (traverseproc)wsgi_traverse,
    .tp_clear = (inquiry)wsgi_clear,
    .tp_dealloc = (destructor)wsgi_dealloc,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)wsgi_iternext,
    .tp_methods = wsgi_methods,
    .tp_members = wsgi_members,
    .tp_getset = wsgi_getset,
};

static PyTypeObject WSGISizedResponseType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "eventmon.core._speedups.WSGISizedResponse",
    .tp_doc = "A WSGIResponse whose body has a length: len() of it is the body's.",
    .tp_basicsize = sizeof(WSGIResponseObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_base = &WSGIResponseType,
    .tp_traverse = (traverseproc)wsgi_traverse,
    .tp_clear = (inquiry)wsgi_clear,
    .tp_dealloc = (destructor)wsgi_dealloc,
    .tp_as_sequence = &wsgi_sized_as_sequence,
};

/* ------------------------------------------------------------------- module */

static PyObject *
in_main_interpreter(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(PyInterpreterState_Get() == PyInterpreterState_Main());
}

static PyMethodDef methods[] = {
    {"in_main_interpreter", (PyCFunction)in_main_interpreter, METH_NOARGS,
     "True in the main interpreter, the only one where this module may be used."},
    {"fold", (PyCFunction)(void (*)(void))fold, METH_FASTCALL,
     "Fold journal entries into the aggregates (see eventmon.core.fold)."},
    {"wsgi_response", (PyCFunction)(void (*)(void))wsgi_response, METH_FASTCALL,
     "wsgi_response(middleware, environ, start_response, token, start) -> WSGIResponse"},
    {"configure_wsgi", (PyCFunction)(void (*)(void))configure_wsgi, METH_FASTCALL,
     "configure_wsgi(codes, status_code, report, endpoint_key, unmatched, fallback_method)"},
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
    /* The module keeps Python objects in C statics, which interpreters cannot
     * share: anywhere but the main interpreter, eventmon runs its Python code. */
    if (PyInterpreterState_Get() != PyInterpreterState_Main()) {
        PyErr_SetString(PyExc_ImportError,
                        "eventmon.core._speedups runs in the main interpreter only");
        return NULL;
    }
    if (PyType_Ready(&JournalType) < 0 || PyType_Ready(&RecorderType) < 0
        || PyType_Ready(&WSGIResponseType) < 0 || PyType_Ready(&WSGISizedResponseType) < 0)
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
        str_collector = PyUnicode_InternFromString("collector");
        str_end = PyUnicode_InternFromString("end");
        str_endpoint_resolver = PyUnicode_InternFromString("endpoint_resolver");
        str_request_method = PyUnicode_InternFromString("REQUEST_METHOD");
        str_close = PyUnicode_InternFromString("close");
        str_label_key = PyUnicode_InternFromString("_label_key");
        str_where_endpoint = PyUnicode_InternFromString("wsgi.endpoint");
        str_where_observe = PyUnicode_InternFromString("wsgi.observe");
        int_500 = PyLong_FromLong(500);
        if (str_journal == NULL || str_collector == NULL || str_end == NULL
            || str_endpoint_resolver == NULL || str_request_method == NULL || str_close == NULL
            || str_label_key == NULL || str_where_endpoint == NULL || str_where_observe == NULL || int_500 == NULL) {
            Py_CLEAR(str_journal);  /* so that a second attempt makes them all again */
            Py_CLEAR(str_collector);
            Py_CLEAR(str_end);
            Py_CLEAR(str_endpoint_resolver);
            Py_CLEAR(str_request_method);
            Py_CLEAR(str_close);
            Py_CLEAR(str_label_key);
            Py_CLEAR(str_where_endpoint);
            Py_CLEAR(str_where_observe);
            Py_CLEAR(int_500);
            return NULL;
        }
    }
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "Journal", (PyObject *)&JournalType) < 0
        || PyModule_AddObjectRef(m, "Recorder", (PyObject *)&RecorderType) < 0
        || PyModule_AddObjectRef(m, "WSGIResponse", (PyObject *)&WSGIResponseType) < 0
        || PyModule_AddObjectRef(m, "WSGISizedResponse", (PyObject *)&WSGISizedResponseType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
