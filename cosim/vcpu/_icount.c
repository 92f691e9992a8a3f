/* Instruction counting for the vCPU core at C speed.
 *
 * cosim_count_block is installed as a unicorn UC_HOOK_BLOCK callback with user_data pointing at a
 * uint64 in the vCPU's run page. Book E instructions are all 4 bytes, so a block of `size` bytes
 * retires size/4 instructions (a block left early by an exception is counted whole: the over-count is
 * at most one block per exit). A Python callback here would cost ~3x the guest's own speed; this costs
 * ~0.3x. The module exports only the callback's address. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

static void cosim_count_block(void *uc, uint64_t addr, uint32_t size, void *user_data)
{
    (void)uc; (void)addr;
    *(uint64_t *)user_data += size >> 2;
}

static PyObject *block_hook_address(PyObject *self, PyObject *noargs)
{
    (void)self; (void)noargs;
    return PyLong_FromVoidPtr((void *)&cosim_count_block);
}

static PyMethodDef methods[] = {
    {"block_hook_address", block_hook_address, METH_NOARGS,
     "Address of the C UC_HOOK_BLOCK callback that adds size/4 to *(uint64_t *)user_data."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_icount", NULL, -1, methods};

PyMODINIT_FUNC PyInit__icount(void) { return PyModule_Create(&module); }
