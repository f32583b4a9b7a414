/* The order book's hot loop in C: apply absolute level updates to one side of a book.
 *
 * arbd.exchange.book keeps each side as two parallel lists in best-first order: `keys`, the
 * floats it sorts by (float(price) for asks, -float(price) for bids), and `levels`, the
 * (price_text, size_text) tuples. This module does exactly what book._apply_side_py does, level
 * by level, without the interpreter:
 *
 *     apply_side(keys: list, levels: list, updates: Sequence[Sequence[str]], negate: bool)
 *
 * Each update is a sequence whose first two items are the price and size text (exchanges such
 * as OKX send more), or an object with `price` and `size` attributes (book.WireLevel). Size zero removes the level; otherwise the level is stored as a
 * (price, size) tuple (the caller's tuple itself when it is exactly that). A price or size that
 * is not a number raises ValueError, like float() does, and so do a price that is not finite
 * and a size that is negative, NaN or infinite; updates before it stay applied (the Python loop
 * behaves the same; OrderBook then empties the book so that it is never half-applied).
 *
 * Invariant relied on: `keys` holds exact floats, ascending, finite, one per level of `levels`.
 * Only book.py touches these lists; a NaN price is refused so the order stays total.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

static const double POW10[] = {
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
};

/* Plain decimal text ("64000.12", "-0.5", "0.00000000") with at most 2^53 as its digits and
 * at most 22 decimals: the digits as an integer are exact in a double, so are the powers of ten
 * up to 1e22, and one IEEE division of exact values is correctly rounded: the same double as
 * float(text) (the fast path of strtod). Anything else returns 0 and float() parses it.
 * This matters: float(str) costs ~0.2 us here, two per level, most of a book update. */
static int
parse_decimal(const char *c, Py_ssize_t n, double *out)
{
    Py_ssize_t i = 0;
    int negative = 0;
    if (n > 0 && c[0] == '-') {
        negative = 1;
        i = 1;
    }
    /* At most 15 digits cannot exceed 2^53 (9.007e15) and need no overflow check per digit:
     * the common case (exchange prices and sizes) runs the short loops below. */
    uint64_t digits = 0;
    Py_ssize_t start = i;
    for (; i < n && c[i] >= '0' && c[i] <= '9'; i++) {
        digits = digits * 10 + (uint64_t)(c[i] - '0');
    }
    Py_ssize_t int_digits = i - start;
    Py_ssize_t decimals = 0;
    if (i < n && c[i] == '.') {
        Py_ssize_t frac = ++i;
        for (; i < n && c[i] >= '0' && c[i] <= '9'; i++) {
            digits = digits * 10 + (uint64_t)(c[i] - '0');
        }
        decimals = i - frac;
    }
    if (i != n || int_digits + decimals == 0 || decimals > 22) {
        return 0; /* not plain decimal text (exponent, sign, spaces...): float() decides */
    }
    if (int_digits + decimals > 15) {
        /* Leading zeros ("0.00012345") keep the value small: recount exactly. */
        uint64_t check = 0;
        for (Py_ssize_t k = start; k < n; k++) {
            if (c[k] == '.') {
                continue;
            }
            if (check > ((1ULL << 53) - (uint64_t)(c[k] - '0')) / 10) {
                return 0;
            }
            check = check * 10 + (uint64_t)(c[k] - '0');
        }
        digits = check;
    }
    double value = (double)digits;
    if (decimals > 0) {
        value /= POW10[decimals];
    }
    *out = negative ? -value : value;
    return 1;
}

/* Whether plain decimal text is a zero ("0", "0.00000000"): a size only needs that answer.
 * 1 zero, 0 non-zero, -1 not plain decimal text (the caller parses it as a number). */
static int
decimal_is_zero(const char *c, Py_ssize_t n)
{
    int dot = 0, digits = 0, zero = 1;
    for (Py_ssize_t i = 0; i < n; i++) {
        char ch = c[i];
        if (ch == '0') {
            digits = 1;
        }
        else if (ch >= '1' && ch <= '9') {
            digits = 1;
            zero = 0;
        }
        else if (ch == '.' && !dot) {
            dot = 1;
        }
        else {
            return -1;
        }
    }
    return digits ? zero : -1;
}

static int
fast_decimal(PyObject *text, double *out)
{
    if (!PyUnicode_IS_ASCII(text)) {
        return 0;
    }
    return parse_decimal((const char *)PyUnicode_1BYTE_DATA(text), PyUnicode_GET_LENGTH(text), out);
}

/* Only str, float and int are read: converting them runs no Python code. */
static int
to_double(PyObject *value, double *out)
{
    if (PyUnicode_Check(value)) {
        if (fast_decimal(value, out)) {
            return 0;
        }
        PyObject *number = PyFloat_FromString(value);
        if (number == NULL) {
            return -1;
        }
        *out = PyFloat_AS_DOUBLE(number);
        Py_DECREF(number);
        return 0;
    }
    if (PyFloat_Check(value)) {
        *out = PyFloat_AS_DOUBLE(value);
        return 0;
    }
    if (PyLong_Check(value)) {
        *out = PyLong_AsDouble(value);
        return (*out == -1.0 && PyErr_Occurred()) ? -1 : 0;
    }
    PyErr_Format(PyExc_TypeError, "book level price and size must be text, got %.100s",
                 Py_TYPE(value)->tp_name);
    return -1;
}

/* A size as a number: 1 when zero, 0 when positive, -1 (ValueError) when negative, NaN or
 * infinite, which no exchange means: such a level is refused like a price that is not a
 * number. (Plain decimal text never gets here: it has no sign and is only scanned.) */
static int
check_size(double s, PyObject *shown)
{
    if (s >= 0.0 && s < HUGE_VAL) {
        return s == 0.0;
    }
    if (shown != NULL) {
        PyErr_Format(PyExc_ValueError, "book level size is not a finite number >= 0: %R", shown);
    }
    else {
        PyErr_SetString(PyExc_ValueError, "book level size is not a finite number >= 0");
    }
    return -1;
}

/* Whether a size (str, float or int) is zero; -1 on error. Plain decimal text is only scanned. */
static int
size_is_zero(PyObject *size)
{
    if (PyUnicode_Check(size) && PyUnicode_IS_ASCII(size)) {
        int zero = decimal_is_zero((const char *)PyUnicode_1BYTE_DATA(size),
                                   PyUnicode_GET_LENGTH(size));
        if (zero >= 0) {
            return zero;
        }
    }
    double s;
    if (to_double(size, &s) < 0) {
        return -1;
    }
    return check_size(s, size);
}

/* First index whose key is >= key (bisect_left) in a list of exact floats. */
static Py_ssize_t
bisect_left(PyObject *keys, double key)
{
    Py_ssize_t lo = 0, hi = PyList_GET_SIZE(keys);
    PyObject **items = ((PyListObject *)keys)->ob_item;
    while (lo < hi) {
        Py_ssize_t mid = lo + (hi - lo) / 2;
        if (PyFloat_AS_DOUBLE(items[mid]) < key) {
            lo = mid + 1;
        }
        else {
            hi = mid;
        }
    }
    return lo;
}

/* Delete item `at` of a list in place. PyList_SetSlice does the same through the general
 * slice assignment, which was a tenth of a book update; the list's allocation is kept (a
 * side's length only moves within its depth). The item is released last, when the list is
 * consistent again. */
static void
remove_at(PyObject *list, Py_ssize_t at)
{
    PyListObject *l = (PyListObject *)list;
    Py_ssize_t n = Py_SIZE(l);
    PyObject *old = l->ob_item[at];
    memmove(&l->ob_item[at], &l->ob_item[at + 1], (size_t)(n - at - 1) * sizeof(PyObject *));
    Py_SET_SIZE(l, n - 1);
    Py_DECREF(old);
}

/* Put `stored` (borrowed; NULL for size zero, which removes) at `key` of a side. */
static int
store_level(PyObject *keys, PyObject *levels, double key, PyObject *stored)
{
    Py_ssize_t at = bisect_left(keys, key);
    int found = at < PyList_GET_SIZE(keys) && PyFloat_AS_DOUBLE(PyList_GET_ITEM(keys, at)) == key;
    if (stored == NULL) {
        if (!found) {
            return 0;
        }
        remove_at(keys, at);
        remove_at(levels, at);
        return 0;
    }
    if (found) {
        Py_INCREF(stored);
        /* PyList_SetItem steals the reference and releases the old level. */
        return PyList_SetItem(levels, at, stored);
    }
    PyObject *key_obj = PyFloat_FromDouble(key);
    int failed = key_obj == NULL || PyList_Insert(keys, at, key_obj) < 0 ||
                 PyList_Insert(levels, at, stored) < 0;
    Py_XDECREF(key_obj);
    return failed ? -1 : 0;
}

static PyObject *str_price, *str_size;

static int
apply_one(PyObject *keys, PyObject *levels, PyObject *level, int negate)
{
    PyObject *price, *size;
    int exact_pair = 0;
    if (PyTuple_Check(level) && PyTuple_GET_SIZE(level) >= 2) {
        price = PyTuple_GET_ITEM(level, 0);
        size = PyTuple_GET_ITEM(level, 1);
        exact_pair = PyTuple_CheckExact(level) && PyTuple_GET_SIZE(level) == 2;
    }
    else if (PyList_Check(level) && PyList_GET_SIZE(level) >= 2) {
        price = PyList_GET_ITEM(level, 0);
        size = PyList_GET_ITEM(level, 1);
    }
    else {
        /* book.WireLevel (a msgspec struct): read its attributes, store a new tuple. */
        PyObject *attr_price = PyObject_GetAttr(level, str_price);
        PyObject *attr_size = attr_price == NULL ? NULL : PyObject_GetAttr(level, str_size);
        if (attr_size == NULL) {
            Py_XDECREF(attr_price);
            if (PyErr_ExceptionMatches(PyExc_AttributeError)) {
                PyErr_SetString(PyExc_IndexError, "a book level needs a price and a size");
            }
            return -1;
        }
        PyObject *pair = PyTuple_Pack(2, attr_price, attr_size);
        Py_DECREF(attr_price);
        Py_DECREF(attr_size);
        if (pair == NULL) {
            return -1;
        }
        int result = apply_one(keys, levels, pair, negate);
        Py_DECREF(pair);
        return result;
    }
    double p;
    if (to_double(price, &p) < 0) {
        return -1;
    }
    int zero = size_is_zero(size);
    if (zero < 0) {
        return -1;
    }
    if (!isfinite(p)) {
        PyErr_Format(PyExc_ValueError, "book level price is not a finite number: %R", price);
        return -1;
    }
    double key = negate ? -p : p;
    if (zero) {
        return store_level(keys, levels, key, NULL);
    }
    PyObject *stored;
    if (exact_pair) {
        Py_INCREF(level);
        stored = level;
    }
    else {
        stored = PyTuple_Pack(2, price, size);
        if (stored == NULL) {
            return -1;
        }
    }
    int result = store_level(keys, levels, key, stored);
    Py_DECREF(stored);
    return result;
}

static PyObject *
apply_side(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "apply_side(keys, levels, updates, negate)");
        return NULL;
    }
    PyObject *keys = args[0], *levels = args[1];
    if (!PyList_CheckExact(keys) || !PyList_CheckExact(levels) ||
        PyList_GET_SIZE(keys) != PyList_GET_SIZE(levels)) {
        PyErr_SetString(PyExc_TypeError, "apply_side needs two lists of the same length");
        return NULL;
    }
    int negate = PyObject_IsTrue(args[3]);
    if (negate < 0) {
        return NULL;
    }
    PyObject *updates = PySequence_Fast(args[2], "book updates must be a sequence");
    if (updates == NULL) {
        return NULL;
    }
    /* The size is read again each time: an object's attribute lookup may run Python code. */
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(updates); i++) {
        if (apply_one(keys, levels, PySequence_Fast_GET_ITEM(updates, i), negate) < 0) {
            Py_DECREF(updates);
            return NULL;
        }
    }
    Py_DECREF(updates);
    Py_RETURN_NONE;
}

/* -- one side's levels straight from the frame's JSON ------------------------------------- */

typedef struct {
    const char *at, *end;
} Cursor;

static void
skip_ws(Cursor *c)
{
    while (c->at < c->end && (*c->at == ' ' || *c->at == '\n' || *c->at == '\r' || *c->at == '\t')) {
        c->at++;
    }
}

static int
expect(Cursor *c, char ch)
{
    skip_ws(c);
    if (c->at < c->end && *c->at == ch) {
        c->at++;
        return 1;
    }
    return 0;
}

/* A JSON string without escapes (the caller checked there are none): its text. */
static int
string_at(Cursor *c, const char **text, Py_ssize_t *n)
{
    if (!expect(c, '"')) {
        return 0;
    }
    const char *start = c->at;
    const char *close = memchr(start, '"', (size_t)(c->end - start));
    if (close == NULL) {
        return 0;
    }
    *text = start;
    *n = close - start;
    c->at = close + 1;
    return 1;
}

/* An item after the size (OKX: "0" and the order count): a string or a plain scalar. */
static int
skip_item(Cursor *c)
{
    skip_ws(c);
    if (c->at < c->end && *c->at == '"') {
        const char *text;
        Py_ssize_t n;
        return string_at(c, &text, &n);
    }
    const char *start = c->at;
    while (c->at < c->end && *c->at != ',' && *c->at != ']' && *c->at != '[' && *c->at != '{' &&
           *c->at != '"') {
        c->at++;
    }
    return c->at > start;
}

static int
text_double(const char *text, Py_ssize_t n, double *out)
{
    if (parse_decimal(text, n, out)) {
        return 0;
    }
    PyObject *str = PyUnicode_DecodeUTF8(text, n, "strict");
    if (str == NULL) {
        return -1;
    }
    int result = to_double(str, out);
    Py_DECREF(str);
    return result;
}

/* A str of JSON string text without escapes: ASCII (what numbers are) is copied straight
 * into a new compact string, skipping the UTF-8 decoder; anything else is decoded. */
static PyObject *
text_string(const char *text, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        if ((unsigned char)text[i] >= 0x80) {
            return PyUnicode_DecodeUTF8(text, n, "strict");
        }
    }
    PyObject *str = PyUnicode_New(n, 127);
    if (str != NULL) {
        memcpy(PyUnicode_1BYTE_DATA(str), text, (size_t)n);
    }
    return str;
}

static int
apply_raw_level(PyObject *keys, PyObject *levels, Cursor *c, int negate)
{
    const char *price, *size;
    Py_ssize_t price_n, size_n;
    if (!expect(c, '[') || !string_at(c, &price, &price_n) || !expect(c, ',') ||
        !string_at(c, &size, &size_n)) {
        return 0;
    }
    while (expect(c, ',')) {
        if (!skip_item(c)) {
            return 0;
        }
    }
    if (!expect(c, ']')) {
        return 0;
    }
    double p;
    if (text_double(price, price_n, &p) < 0) {
        return -1;
    }
    int zero = decimal_is_zero(size, size_n);
    if (zero < 0) {
        double s;
        if (text_double(size, size_n, &s) < 0) {
            return -1;
        }
        zero = check_size(s, NULL);
        if (zero < 0) {
            return -1;
        }
    }
    if (!isfinite(p)) {
        PyErr_SetString(PyExc_ValueError, "book level price is not a finite number");
        return -1;
    }
    double key = negate ? -p : p;
    if (zero) {
        return store_level(keys, levels, key, NULL) < 0 ? -1 : 1;
    }
    /* Only a level that is kept gets its text made into strings. A level that is already in
     * the book under the same price text keeps that string (an update changes the size). */
    PyObject *price_str = NULL;
    Py_ssize_t at = bisect_left(keys, key);
    if (at < PyList_GET_SIZE(keys) && PyFloat_AS_DOUBLE(PyList_GET_ITEM(keys, at)) == key) {
        PyObject *old = PyList_GET_ITEM(levels, at);
        PyObject *old_price = PyTuple_CheckExact(old) ? PyTuple_GET_ITEM(old, 0) : NULL;
        if (old_price != NULL && PyUnicode_CheckExact(old_price) && PyUnicode_IS_ASCII(old_price) &&
            PyUnicode_GET_LENGTH(old_price) == price_n &&
            memcmp(PyUnicode_1BYTE_DATA(old_price), price, (size_t)price_n) == 0) {
            price_str = Py_NewRef(old_price);
        }
    }
    if (price_str == NULL) {
        price_str = text_string(price, price_n);
    }
    PyObject *size_str = price_str == NULL ? NULL : text_string(size, size_n);
    PyObject *stored = size_str == NULL ? NULL : PyTuple_New(2);
    if (stored == NULL) {
        Py_XDECREF(price_str);
        Py_XDECREF(size_str);
        return -1;
    }
    PyTuple_SET_ITEM(stored, 0, price_str); /* steals */
    PyTuple_SET_ITEM(stored, 1, size_str);
    int result = store_level(keys, levels, key, stored);
    Py_DECREF(stored);
    return result < 0 ? -1 : 1;
}

/* apply_side_raw(keys, levels, raw, negate) -> bool: one side's levels as the exchange's JSON
 * array of [price, size, ...] string arrays (a msgspec.Raw). False, with nothing applied, when
 * the text holds an escape (the caller decodes it the general way); ValueError when it is not
 * such an array, with the levels before the fault applied, as apply_side does. */
static PyObject *
apply_side_raw(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "apply_side_raw(keys, levels, raw, negate)");
        return NULL;
    }
    PyObject *keys = args[0], *levels = args[1];
    if (!PyList_CheckExact(keys) || !PyList_CheckExact(levels) ||
        PyList_GET_SIZE(keys) != PyList_GET_SIZE(levels)) {
        PyErr_SetString(PyExc_TypeError, "apply_side_raw needs two lists of the same length");
        return NULL;
    }
    int negate = PyObject_IsTrue(args[3]);
    if (negate < 0) {
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[2], &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    const char *start = (const char *)view.buf;
    Cursor c = {start, start + view.len};
    PyObject *result = NULL;
    if (memchr(start, '\\', (size_t)view.len) != NULL) {
        result = Py_NewRef(Py_False);
        goto done;
    }
    int ok = expect(&c, '[');
    if (ok && !expect(&c, ']')) {
        do {
            ok = apply_raw_level(keys, levels, &c, negate);
        } while (ok == 1 && expect(&c, ','));
        if (ok == 1) {
            ok = expect(&c, ']');
        }
    }
    if (ok == 1) {
        skip_ws(&c);
        ok = c.at == c.end;
    }
    if (ok == 1) {
        result = Py_NewRef(Py_True);
    }
    else if (ok == 0) {
        PyErr_Format(PyExc_ValueError,
                     "book levels are not an array of [price, size, ...] strings (byte %zd)",
                     (Py_ssize_t)(c.at - start));
    }
done:
    PyBuffer_Release(&view);
    return result;
}

static PyMethodDef methods[] = {
    {"apply_side", (PyCFunction)(void (*)(void))apply_side, METH_FASTCALL,
     "apply_side(keys, levels, updates, negate): apply absolute level updates to a book side."},
    {"apply_side_raw", (PyCFunction)(void (*)(void))apply_side_raw, METH_FASTCALL,
     "apply_side_raw(keys, levels, raw, negate) -> bool: the same from the side's JSON array."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_bookside", "Compiled order-book side updates.", -1, methods,
};

PyMODINIT_FUNC
PyInit__bookside(void)
{
    str_price = PyUnicode_InternFromString("price");
    str_size = PyUnicode_InternFromString("size");
    if (str_price == NULL || str_size == NULL) {
        return NULL;
    }
    return PyModule_Create(&module);
}
