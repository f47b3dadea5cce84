/* The C accelerator of ratchetpy.protocol.masking: RFC 6455 5.3 unmasking, eight bytes at a
 * time. Built at install where a compiler is found (setup.py marks it optional); the pure
 * Python version in masking.py is the fallback and the reference the tests compare it with. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

PyDoc_STRVAR(unmask_doc,
"unmask(data, start, end, mask, /)\n--\n\n"
"data[start:end] XORed with the 4-byte mask repeated, as bytes.\n\n"
"data is any contiguous buffer; 0 <= start <= end <= len(data) or ValueError.");

static PyObject *
unmask(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer data, mask;
    Py_ssize_t start, end;
    PyObject *result = NULL;

    if (nargs != 4) {
        PyErr_Format(PyExc_TypeError, "unmask() takes 4 arguments (%zd given)", nargs);
        return NULL;
    }
    start = PyLong_AsSsize_t(args[1]);
    if (start == -1 && PyErr_Occurred()) {
        return NULL;
    }
    end = PyLong_AsSsize_t(args[2]);
    if (end == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &data, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (PyObject_GetBuffer(args[3], &mask, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&data);
        return NULL;
    }
    if (mask.len != 4) {
        PyErr_SetString(PyExc_ValueError, "the mask must be 4 bytes");
        goto done;
    }
    if (start < 0 || end < start || end > data.len) {
        PyErr_SetString(PyExc_ValueError, "start and end must satisfy 0 <= start <= end <= len(data)");
        goto done;
    }

    Py_ssize_t n = end - start;
    result = PyBytes_FromStringAndSize(NULL, n);
    if (result == NULL) {
        goto done;
    }
    const unsigned char *src = (const unsigned char *)data.buf + start;
    const unsigned char *key = (const unsigned char *)mask.buf;
    unsigned char *dst = (unsigned char *)PyBytes_AS_STRING(result);

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

done:
    PyBuffer_Release(&mask);
    PyBuffer_Release(&data);
    return result;
}

static PyMethodDef speedups_methods[] = {
    {"unmask", (PyCFunction)(void (*)(void))unmask, METH_FASTCALL, unmask_doc},
    {NULL, NULL, 0, NULL},
};

static PyModuleDef_Slot speedups_slots[] = {
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
