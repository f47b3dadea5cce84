/* The C accelerator of ratchetpy.protocol.masking: RFC 6455 5.3 unmasking, eight bytes at a
 * time, into a new bytes object (unmask) or into a message's final bytes as its pieces arrive
 * (MessageBuffer). Built at install where a compiler is found (setup.py marks it optional);
 * the pure Python versions in masking.py are the fallback and the reference the tests compare
 * these with. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* dst[0:n] = src[0:n] XOR key repeated. */
static void
xor_mask(unsigned char *dst, const unsigned char *src, Py_ssize_t n, const unsigned char *key)
{
    /* The key repeated over 8 bytes; memcpy keeps unaligned loads and stores well defined. */
    unsigned char key8[8];
    for (int i = 0; i < 8; i++) {
        key8[i] = key[i & 3];
    }
    uint64_t key64;
    memcpy(&key64, key8, 8);

    Py_ssize_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t chunk;
        memcpy(&chunk, src + i, 8);
        chunk ^= key64;
        memcpy(dst + i, &chunk, 8);
    }
    for (; i < n; i++) {
        dst[i] = src[i] ^ key[i & 3];
    }
}

/* The four arguments (data, start, end, mask) both functions take: the buffers are held
 * (release them with PyBuffer_Release) only when this returns 0. */
static int
parse_unmask_args(PyObject *const *args, Py_buffer *data, Py_ssize_t *start, Py_ssize_t *end,
                  Py_buffer *mask)
{
    *start = PyLong_AsSsize_t(args[1]);
    if (*start == -1 && PyErr_Occurred()) {
        return -1;
    }
    *end = PyLong_AsSsize_t(args[2]);
    if (*end == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (PyObject_GetBuffer(args[0], data, PyBUF_SIMPLE) < 0) {
        return -1;
    }
    if (PyObject_GetBuffer(args[3], mask, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(data);
        return -1;
    }
    if (mask->len != 4) {
        PyErr_SetString(PyExc_ValueError, "the mask must be 4 bytes");
    }
    else if (*start < 0 || *end < *start || *end > data->len) {
        PyErr_SetString(PyExc_ValueError,
                        "start and end must satisfy 0 <= start <= end <= len(data)");
    }
    else {
        return 0;
    }
    PyBuffer_Release(mask);
    PyBuffer_Release(data);
    return -1;
}

PyDoc_STRVAR(unmask_doc,
"unmask(data, start, end, mask, /)\n--\n\n"
"data[start:end] XORed with the 4-byte mask repeated, as bytes.\n\n"
"data is any contiguous buffer; 0 <= start <= end <= len(data) or ValueError.");

static PyObject *
unmask(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer data, mask;
    Py_ssize_t start, end;

    if (nargs != 4) {
        PyErr_Format(PyExc_TypeError, "unmask() takes 4 arguments (%zd given)", nargs);
        return NULL;
    }
    if (parse_unmask_args(args, &data, &start, &end, &mask) < 0) {
        return NULL;
    }
    PyObject *result = PyBytes_FromStringAndSize(NULL, end - start);
    if (result != NULL) {
        xor_mask((unsigned char *)PyBytes_AS_STRING(result),
                 (const unsigned char *)data.buf + start, end - start,
                 (const unsigned char *)mask.buf);
    }
    PyBuffer_Release(&mask);
    PyBuffer_Release(&data);
    return result;
}

/* MessageBuffer: a message's bytes, unmasked into place as its pieces arrive, so that the
 * message needs no join at the end. The bytes object is new and nobody else holds it until
 * take() hands it over whole: filling it before then is what PyBytes_FromStringAndSize(NULL, n)
 * is for. */

typedef struct {
    PyObject_HEAD
    PyObject *bytes; /* NULL once taken */
    Py_ssize_t size;
    Py_ssize_t filled;
} MessageBuffer;

static PyObject *
MessageBuffer_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    Py_ssize_t size;
    static char *keywords[] = {"size", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "n:MessageBuffer", keywords, &size)) {
        return NULL;
    }
    if (size < 0) {
        PyErr_SetString(PyExc_ValueError, "size must be >= 0");
        return NULL;
    }
    MessageBuffer *self = (MessageBuffer *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->bytes = PyBytes_FromStringAndSize(NULL, size);
    if (self->bytes == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    self->size = size;
    self->filled = 0;
    return (PyObject *)self;
}

static void
MessageBuffer_dealloc(MessageBuffer *self)
{
    PyTypeObject *type = Py_TYPE(self);
    Py_CLEAR(self->bytes);
    type->tp_free((PyObject *)self);
    Py_DECREF(type);
}

PyDoc_STRVAR(MessageBuffer_unmask_into_doc,
"unmask_into($self, data, start, end, mask, /)\n--\n\n"
"Append data[start:end] XORed with the 4-byte mask repeated.\n\n"
"ValueError if it does not fit in what is left of size, or after take().");

static PyObject *
MessageBuffer_unmask_into(MessageBuffer *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer data, mask;
    Py_ssize_t start, end;

    if (nargs != 4) {
        PyErr_Format(PyExc_TypeError, "unmask_into() takes 4 arguments (%zd given)", nargs);
        return NULL;
    }
    if (self->bytes == NULL) {
        PyErr_SetString(PyExc_ValueError, "the message was already taken");
        return NULL;
    }
    if (parse_unmask_args(args, &data, &start, &end, &mask) < 0) {
        return NULL;
    }
    PyObject *result = NULL;
    if (end - start > self->size - self->filled) {
        PyErr_SetString(PyExc_ValueError, "more bytes than the message has room for");
    }
    else {
        xor_mask((unsigned char *)PyBytes_AS_STRING(self->bytes) + self->filled,
                 (const unsigned char *)data.buf + start, end - start,
                 (const unsigned char *)mask.buf);
        self->filled += end - start;
        result = Py_NewRef(Py_None);
    }
    PyBuffer_Release(&mask);
    PyBuffer_Release(&data);
    return result;
}

PyDoc_STRVAR(MessageBuffer_take_doc,
"take($self, /)\n--\n\n"
"The message as bytes, once all of size is filled; the buffer is empty afterwards.\n\n"
"ValueError before it is full, or a second time.");

static PyObject *
MessageBuffer_take(MessageBuffer *self, PyObject *Py_UNUSED(ignored))
{
    if (self->bytes == NULL) {
        PyErr_SetString(PyExc_ValueError, "the message was already taken");
        return NULL;
    }
    if (self->filled != self->size) {
        PyErr_Format(PyExc_ValueError, "the message has %zd of its %zd bytes", self->filled,
                     self->size);
        return NULL;
    }
    PyObject *result = self->bytes;
    self->bytes = NULL;
    return result;
}

static PyObject *
MessageBuffer_get_filled(MessageBuffer *self, void *Py_UNUSED(closure))
{
    return PyLong_FromSsize_t(self->filled);
}

static PyMethodDef MessageBuffer_methods[] = {
    {"unmask_into", (PyCFunction)(void (*)(void))MessageBuffer_unmask_into, METH_FASTCALL,
     MessageBuffer_unmask_into_doc},
    {"take", (PyCFunction)MessageBuffer_take, METH_NOARGS, MessageBuffer_take_doc},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef MessageBuffer_getset[] = {
    {"filled", (getter)MessageBuffer_get_filled, NULL, "bytes written so far", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyDoc_STRVAR(MessageBuffer_doc,
"MessageBuffer(size)\n--\n\n"
"A message of size bytes, unmasked into place piece by piece, then taken whole as bytes.");

static PyType_Slot MessageBuffer_slots[] = {
    {Py_tp_new, MessageBuffer_new},
    {Py_tp_dealloc, MessageBuffer_dealloc},
    {Py_tp_methods, MessageBuffer_methods},
    {Py_tp_getset, MessageBuffer_getset},
    {Py_tp_doc, (void *)MessageBuffer_doc},
    {0, NULL},
};

static PyType_Spec MessageBuffer_spec = {
    .name = "ratchetpy.protocol._speedups.MessageBuffer",
    .basicsize = sizeof(MessageBuffer),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = MessageBuffer_slots,
};

static int
speedups_exec(PyObject *module)
{
    PyObject *type = PyType_FromModuleAndSpec(module, &MessageBuffer_spec, NULL);
    if (type == NULL) {
        return -1;
    }
    int rc = PyModule_AddObjectRef(module, "MessageBuffer", type);
    Py_DECREF(type);
    return rc;
}

static PyMethodDef speedups_methods[] = {
    {"unmask", (PyCFunction)(void (*)(void))unmask, METH_FASTCALL, unmask_doc},
    {NULL, NULL, 0, NULL},
};

static PyModuleDef_Slot speedups_slots[] = {
    {Py_mod_exec, speedups_exec},
#ifdef Py_mod_multiple_interpreters
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
#ifdef Py_mod_gil
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "ratchetpy.protocol._speedups",
    .m_doc = "C speedups for ratchetpy.protocol (see ratchetpy.protocol.masking).",
    .m_size = 0,
    .m_methods = speedups_methods,
    .m_slots = speedups_slots,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModuleDef_Init(&speedups_module);
}
