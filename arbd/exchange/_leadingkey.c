/* arbd.exchange._leadingkey: the routing key at the start of a data frame, compiled.
 *
 * Every data frame of Binance, Bybit and OKX passes through leading_key before anything
 * else. In Python it is a call, a startswith, a find, a slice and a type check: ~0.5 us,
 * a sixth of an OKX trade frame's whole cost, measured with py-spy at ~10 % of OKX's
 * ingest. Here it is one call around memcmp and memchr.
 *
 * arbd.exchange.adapter.py_leading_key is the Python reference (and the fallback without a
 * compiler); tests hold both to the same answers.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

/* The stop's first occurrence in [from, end), or NULL. memmem is a GNU extension, which
 * pyconfig.h enables on Linux; a one-byte stop (all current adapters) takes memchr. */
static const char *
find_stop(const char *from, const char *end, const char *stop, Py_ssize_t stop_len)
{
    if (stop_len == 1) {
        return memchr(from, stop[0], (size_t)(end - from));
    }
    return memmem(from, (size_t)(end - from), stop, (size_t)stop_len);
}

static PyObject *
key_of(const char *data, Py_ssize_t size, PyObject *prefix, const char *stop, Py_ssize_t stop_len)
{
    Py_ssize_t prefix_len = PyBytes_GET_SIZE(prefix);
    if (size < prefix_len || memcmp(data, PyBytes_AS_STRING(prefix), (size_t)prefix_len) != 0) {
        Py_RETURN_NONE;
    }
    const char *start = data + prefix_len;
    const char *found = find_stop(start, data + size, stop, stop_len);
    if (found == NULL) {
        Py_RETURN_NONE;
    }
    return PyBytes_FromStringAndSize(start, found - start);
}

static PyObject *
leading_key(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 2 || nargs > 3) {
        PyErr_Format(PyExc_TypeError, "leading_key() takes 2 or 3 arguments (%zd given)", nargs);
        return NULL;
    }
    PyObject *data = args[0], *prefix = args[1];
    const char *stop = "\"";
    Py_ssize_t stop_len = 1;
    if (nargs == 3) {
        if (!PyBytes_Check(args[2])) {
            PyErr_SetString(PyExc_TypeError, "leading_key(): stop must be bytes");
            return NULL;
        }
        stop = PyBytes_AS_STRING(args[2]);
        stop_len = PyBytes_GET_SIZE(args[2]);
    }
    if (!PyBytes_Check(prefix)) {
        PyErr_SetString(PyExc_TypeError, "leading_key(): prefix must be bytes");
        return NULL;
    }
    if (PyBytes_CheckExact(data)) {
        return key_of(PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data), prefix, stop, stop_len);
    }
    /* A frame reassembled from fragments can be a bytearray: read it through its buffer. */
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    PyObject *key = key_of(view.buf, view.len, prefix, stop, stop_len);
    PyBuffer_Release(&view);
    return key;
}

static PyMethodDef methods[] = {
    {"leading_key", (PyCFunction)(void (*)(void))leading_key, METH_FASTCALL,
     "leading_key(data, prefix, stop=b'\"', /)\n--\n\n"
     "The bytes between prefix at the very start of data and the next stop, or None when\n"
     "data does not start with prefix or holds no stop after it."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "arbd.exchange._leadingkey",
    .m_doc = "The routing key at the start of a data frame, compiled "
             "(arbd.exchange.adapter.leading_key).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__leadingkey(void)
{
    return PyModule_Create(&module_def);
}
