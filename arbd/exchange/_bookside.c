/* One side of an order book in C: a book side type whose updates run without the interpreter.
 *
 * arbd.exchange.book keeps each side best first as two parallel arrays: the keys it sorts by
 * (float(price) for asks, -float(price) for bids, so both ascend from the best level), here a
 * plain C array of doubles, and `levels`, a Python list of (price_text, size_text) tuples that
 * the published book slices. The keys were a list of Python floats: searching them chased a
 * pointer per step into scattered float objects, and that search was the largest part of
 * applying a level; an array of doubles is searched in place, and no float object is made or
 * freed per level.
 *
 *     Side(negate: bool)
 *     side.apply(updates)      updates: a sequence of (price, size, ...) text or WireLevel
 *     side.apply_raw(raw)      raw: the side's JSON array (msgspec.Raw); False on escapes
 *     side.levels              the list of level tuples, best first (read it, never change it)
 *     side.key(i), side.rank(key), side.keys(), side.truncate(n), side.clear(), len(side)
 *     bids.crosses(asks)       the best bid is at or above the best ask
 *
 * Size zero removes a level; otherwise the level is stored as a (price, size) tuple (the
 * caller's tuple itself when it is exactly that). A price or size that is not a number raises
 * ValueError, like float() does, and so do a price that is not finite and a size that is
 * negative, NaN or infinite; updates before it stay applied (book.PySide behaves the same;
 * OrderBook then empties the book so that it is never half-applied).
 *
 * book.PySide is the same type in Python (the fallback without a compiler), and a property
 * test holds both to the same results.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <structmember.h>

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


/* -- the side ----------------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    double *keys;        /* ascending, finite, one per level: the sort key of each level */
    Py_ssize_t size;     /* levels held, == len(levels) */
    Py_ssize_t capacity; /* doubles allocated for keys */
    PyObject *levels;    /* list of (price, size) tuples, parallel to keys */
    int negate;          /* bids: keys are -price */
} Side;

static PyObject *str_price, *str_size;

/* The side's list still matches its keys: Python code may read `levels` but must never
 * change it; if it did, refuse rather than index past the keys. */
static int
consistent(Side *self)
{
    if (self->levels == NULL) { /* only after the garbage collector broke a cycle through it */
        PyErr_SetString(PyExc_RuntimeError, "a book side was cleared by the garbage collector");
        return 0;
    }
    if (PyList_GET_SIZE(self->levels) != self->size) {
        PyErr_SetString(PyExc_RuntimeError, "a book side's levels list was changed from outside");
        return 0;
    }
    return 1;
}

/* First index whose key is >= key (bisect_left). Branch-free: the comparison picks the half
 * arithmetically, so the CPU never mispredicts it (an update lands anywhere in the side). */
static Py_ssize_t
bisect_left(const double *keys, Py_ssize_t n, double key)
{
    if (n == 0) {
        return 0;
    }
    Py_ssize_t base = 0;
    while (n > 1) {
        Py_ssize_t half = n / 2;
        base += (keys[base + half - 1] < key) * half;
        n -= half;
    }
    return base + (keys[base] < key);
}

/* Delete item `at` of a list in place. PyList_SetSlice does the same through the general
 * slice assignment, which was a tenth of a book update; the list's allocation is kept (a
 * side's length only moves within its depth). The item is released last, when the list is
 * consistent again. */
static void
list_remove_at(PyObject *list, Py_ssize_t at)
{
    PyListObject *l = (PyListObject *)list;
    Py_ssize_t n = Py_SIZE(l);
    PyObject *old = l->ob_item[at];
    memmove(&l->ob_item[at], &l->ob_item[at + 1], (size_t)(n - at - 1) * sizeof(PyObject *));
    Py_SET_SIZE(l, n - 1);
    Py_DECREF(old);
}

/* Where `key` is in the side: its index, or where it would go, and whether it is there. */
typedef struct {
    Py_ssize_t at;
    int found;
} Slot;

static Slot
find_level(Side *self, double key)
{
    Slot slot = {bisect_left(self->keys, self->size, key), 0};
    slot.found = slot.at < self->size && self->keys[slot.at] == key;
    return slot;
}

/* A new (price, size) level of two strings can never be part of a reference cycle, so the
 * garbage collector need not track it. CPython untracks such tuples itself, but only in the
 * first collection that sees them; until then every young collection walks each one, and a
 * busy book makes thousands between two collections (measured: ~3,500 young tuples per
 * collection, ~0.4 ms each, in benchmarks/adapters.py's full pipeline). */
static PyObject *
untracked_level(PyObject *level)
{
    if (PyUnicode_CheckExact(PyTuple_GET_ITEM(level, 0)) &&
        PyUnicode_CheckExact(PyTuple_GET_ITEM(level, 1))) {
        PyObject_GC_UnTrack(level);
    }
    return level;
}

/* Put `stored` (borrowed; NULL for size zero, which removes) at `key`, whose place is `slot`. */
static int
store_level(Side *self, double key, Slot slot, PyObject *stored)
{
    Py_ssize_t at = slot.at;
    if (stored == NULL) {
        if (slot.found) {
            memmove(&self->keys[at], &self->keys[at + 1],
                    (size_t)(self->size - at - 1) * sizeof(double));
            self->size--;
            list_remove_at(self->levels, at); /* last: may run a destructor */
        }
        return 0;
    }
    if (slot.found) {
        Py_INCREF(stored);
        /* PyList_SetItem steals the reference and releases the old level. */
        return PyList_SetItem(self->levels, at, stored);
    }
    if (self->size == self->capacity) {
        Py_ssize_t capacity = self->capacity < 16 ? 16 : self->capacity * 2;
        double *keys = PyMem_Realloc(self->keys, (size_t)capacity * sizeof(double));
        if (keys == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        self->keys = keys;
        self->capacity = capacity;
    }
    if (PyList_Insert(self->levels, at, stored) < 0) {
        return -1;
    }
    memmove(&self->keys[at + 1], &self->keys[at], (size_t)(self->size - at) * sizeof(double));
    self->keys[at] = key;
    self->size++;
    return 0;
}

static int
apply_one(Side *self, PyObject *level)
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
        int result = apply_one(self, pair);
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
    double key = self->negate ? -p : p;
    Slot slot = find_level(self, key);
    if (zero) {
        return store_level(self, key, slot, NULL);
    }
    PyObject *stored;
    if (exact_pair) {
        Py_INCREF(level);
        stored = untracked_level(level);
    }
    else {
        stored = PyTuple_Pack(2, price, size);
        if (stored == NULL) {
            return -1;
        }
        untracked_level(stored);
    }
    int result = store_level(self, key, slot, stored);
    Py_DECREF(stored);
    return result;
}

static PyObject *
Side_apply(Side *self, PyObject *updates_arg)
{
    if (!consistent(self)) {
        return NULL;
    }
    PyObject *updates = PySequence_Fast(updates_arg, "book updates must be a sequence");
    if (updates == NULL) {
        return NULL;
    }
    /* The size is read again each time: an object's attribute lookup may run Python code. */
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(updates); i++) {
        if (apply_one(self, PySequence_Fast_GET_ITEM(updates, i)) < 0) {
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
    if (c->at < c->end && *c->at == ch) { /* exchanges send no whitespace: the usual case */
        c->at++;
        return 1;
    }
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

/* The number in JSON string text: 1 when it was plain decimal text (so ASCII), 0 when
 * float() had to parse it, -1 on error. */
static int
text_double(const char *text, Py_ssize_t n, double *out)
{
    if (parse_decimal(text, n, out)) {
        return 1;
    }
    PyObject *str = PyUnicode_DecodeUTF8(text, n, "strict");
    if (str == NULL) {
        return -1;
    }
    int result = to_double(str, out);
    Py_DECREF(str);
    return result;
}

/* A str of JSON string text without escapes: ASCII (what numbers are; `ascii` when the
 * caller already knows) is copied straight into a new compact string, skipping the UTF-8
 * decoder; anything else is decoded. */
static PyObject *
text_string(const char *text, Py_ssize_t n, int ascii)
{
    for (Py_ssize_t i = 0; !ascii && i < n; i++) {
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


/* One level of a side's JSON: 1 applied, 0 not a [price, size, ...] array, -1 error. */
static int
apply_raw_level(Side *self, Cursor *c)
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
    int price_ascii = text_double(price, price_n, &p);
    if (price_ascii < 0) {
        return -1;
    }
    int zero = decimal_is_zero(size, size_n);
    int size_ascii = zero >= 0;
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
    double key = self->negate ? -p : p;
    Slot slot = find_level(self, key);
    if (zero) {
        return store_level(self, key, slot, NULL) < 0 ? -1 : 1;
    }
    /* Only a level that is kept gets its text made into strings. A level that is already in
     * the book under the same price text keeps that string (an update changes the size). */
    PyObject *price_str = NULL;
    if (slot.found) {
        PyObject *old = PyList_GET_ITEM(self->levels, slot.at);
        PyObject *old_price = PyTuple_CheckExact(old) ? PyTuple_GET_ITEM(old, 0) : NULL;
        if (old_price != NULL && PyUnicode_CheckExact(old_price) && PyUnicode_IS_ASCII(old_price) &&
            PyUnicode_GET_LENGTH(old_price) == price_n &&
            memcmp(PyUnicode_1BYTE_DATA(old_price), price, (size_t)price_n) == 0) {
            price_str = Py_NewRef(old_price);
        }
    }
    if (price_str == NULL) {
        price_str = text_string(price, price_n, price_ascii);
    }
    PyObject *size_str = price_str == NULL ? NULL : text_string(size, size_n, size_ascii);
    PyObject *stored = size_str == NULL ? NULL : PyTuple_New(2);
    if (stored == NULL) {
        Py_XDECREF(price_str);
        Py_XDECREF(size_str);
        return -1;
    }
    PyTuple_SET_ITEM(stored, 0, price_str); /* steals */
    PyTuple_SET_ITEM(stored, 1, size_str);
    untracked_level(stored);
    int result = store_level(self, key, slot, stored);
    Py_DECREF(stored);
    return result < 0 ? -1 : 1;
}

/* side.apply_raw(raw) -> bool: the side's levels as the exchange's JSON array of
 * [price, size, ...] string arrays (a msgspec.Raw). False, with nothing applied, when the text
 * holds an escape (the caller decodes it the general way); ValueError when it is not such an
 * array, with the levels before the fault applied, as apply does. */
static PyObject *
Side_apply_raw(Side *self, PyObject *raw)
{
    if (!consistent(self)) {
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(raw, &view, PyBUF_SIMPLE) < 0) {
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
            ok = apply_raw_level(self, &c);
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

/* -- the rest of the side's interface ------------------------------------------------------ */

static PyObject *
Side_truncate(Side *self, PyObject *arg)
{
    Py_ssize_t depth = PyLong_AsSsize_t(arg);
    if (depth == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (depth < 0) {
        PyErr_SetString(PyExc_ValueError, "a book side keeps at least 0 levels");
        return NULL;
    }
    if (!consistent(self)) {
        return NULL;
    }
    if (self->size > depth) {
        self->size = depth;
        if (PyList_SetSlice(self->levels, depth, PY_SSIZE_T_MAX, NULL) < 0) {
            return NULL;
        }
    }
    Py_RETURN_NONE;
}

static PyObject *
Side_clear(Side *self, PyObject *Py_UNUSED(ignored))
{
    if (self->levels == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "a book side was cleared by the garbage collector");
        return NULL;
    }
    self->size = 0; /* also what brings a side whose levels were changed outside back */
    if (PyList_SetSlice(self->levels, 0, PY_SSIZE_T_MAX, NULL) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* side.key(i): the sort key of level i (negative counts from the worst). */
static PyObject *
Side_key(Side *self, PyObject *arg)
{
    Py_ssize_t i = PyLong_AsSsize_t(arg);
    if (i == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (i < 0) {
        i += self->size;
    }
    if (i < 0 || i >= self->size) {
        PyErr_SetString(PyExc_IndexError, "book side key index out of range");
        return NULL;
    }
    return PyFloat_FromDouble(self->keys[i]);
}

/* side.rank(key): how many levels have a key <= key (bisect_right). */
static PyObject *
Side_rank(Side *self, PyObject *arg)
{
    double key = PyFloat_AsDouble(arg);
    if (key == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    Py_ssize_t lo = 0, hi = self->size;
    while (lo < hi) {
        Py_ssize_t mid = lo + (hi - lo) / 2;
        if (key < self->keys[mid]) {
            hi = mid;
        }
        else {
            lo = mid + 1;
        }
    }
    return PyLong_FromSsize_t(lo);
}

/* side.keys(): every key as a new list of floats (for tests and checks, not hot paths). */
static PyObject *
Side_keys(Side *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *keys = PyList_New(self->size);
    for (Py_ssize_t i = 0; keys != NULL && i < self->size; i++) {
        PyObject *key = PyFloat_FromDouble(self->keys[i]);
        if (key == NULL) {
            Py_CLEAR(keys);
            break;
        }
        PyList_SET_ITEM(keys, i, key);
    }
    return keys;
}

static PyTypeObject SideType;

/* bids.crosses(asks): whether the best bid is at or above the best ask (crossed or locked). */
static PyObject *
Side_crosses(Side *self, PyObject *other)
{
    if (!PyObject_TypeCheck(other, &SideType) || !self->negate || ((Side *)other)->negate) {
        PyErr_SetString(PyExc_TypeError, "bids.crosses(asks) takes the asks of the same book");
        return NULL;
    }
    Side *asks = (Side *)other;
    return PyBool_FromLong(self->size && asks->size && -self->keys[0] >= asks->keys[0]);
}

static Py_ssize_t
Side_len(Side *self)
{
    return self->size;
}

static PyObject *
Side_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *names[] = {"negate", NULL};
    int negate;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "p:Side", names, &negate)) {
        return NULL;
    }
    Side *self = (Side *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->negate = negate;
    self->levels = PyList_New(0);
    if (self->levels == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static int
Side_traverse(Side *self, visitproc visit, void *arg)
{
    Py_VISIT(self->levels);
    return 0;
}

static int
Side_tp_clear(Side *self)
{
    Py_CLEAR(self->levels);
    self->size = 0;
    return 0;
}

static void
Side_dealloc(Side *self)
{
    PyObject_GC_UnTrack(self);
    Side_tp_clear(self);
    PyMem_Free(self->keys);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
Side_get_negate(Side *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(self->negate);
}

static PyMethodDef Side_methods[] = {
    {"apply", (PyCFunction)Side_apply, METH_O,
     "apply(updates): apply absolute level updates ((price, size, ...) text or WireLevel)."},
    {"apply_raw", (PyCFunction)Side_apply_raw, METH_O,
     "apply_raw(raw) -> bool: the same from the side's JSON array; False on escapes."},
    {"truncate", (PyCFunction)Side_truncate, METH_O, "truncate(depth): keep the best levels."},
    {"clear", (PyCFunction)Side_clear, METH_NOARGS, "clear(): remove every level."},
    {"key", (PyCFunction)Side_key, METH_O, "key(i) -> float: the sort key of level i."},
    {"rank", (PyCFunction)Side_rank, METH_O, "rank(key) -> int: levels with a key <= key."},
    {"keys", (PyCFunction)Side_keys, METH_NOARGS, "keys() -> list[float]: every key."},
    {"crosses", (PyCFunction)Side_crosses, METH_O,
     "bids.crosses(asks) -> bool: the best bid is at or above the best ask."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef Side_members[] = {
    {"levels", T_OBJECT_EX, offsetof(Side, levels), READONLY,
     "the (price, size) level tuples, best first; read, never change"},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef Side_getset[] = {
    {"negate", (getter)Side_get_negate, NULL, "whether keys are -price (bids)", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PySequenceMethods Side_as_sequence = {
    .sq_length = (lenfunc)Side_len,
};

static PyTypeObject SideType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "arbd.exchange._bookside.Side",
    .tp_doc = "Side(negate): one side of an order book, best level first.",
    .tp_basicsize = sizeof(Side),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = Side_new,
    .tp_dealloc = (destructor)Side_dealloc,
    .tp_traverse = (traverseproc)Side_traverse,
    .tp_clear = (inquiry)Side_tp_clear,
    .tp_methods = Side_methods,
    .tp_members = Side_members,
    .tp_getset = Side_getset,
    .tp_as_sequence = &Side_as_sequence,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_bookside",
    .m_doc = "Compiled order-book sides.",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__bookside(void)
{
    str_price = PyUnicode_InternFromString("price");
    str_size = PyUnicode_InternFromString("size");
    if (str_price == NULL || str_size == NULL || PyType_Ready(&SideType) < 0) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(m, "Side", (PyObject *)&SideType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
