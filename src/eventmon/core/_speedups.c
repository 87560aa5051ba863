/*
 * eventmon.core._speedups: the journal fold in C.
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

static PyMethodDef methods[] = {
    {"fold", (PyCFunction)(void (*)(void))fold, METH_FASTCALL,
     "Fold journal entries into the aggregates (see eventmon.core.fold)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    .m_base = PyModuleDef_HEAD_INIT,
    .m_name = "eventmon.core._speedups",
    .m_doc = "The journal fold in C; eventmon.core.fold.fold_python is the reference.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModule_Create(&module);
}
