/* The baton's hand-over, Python's entry points (cosim/baton.py; the protocol itself is cosim/baton.h,
 * which the vCPU's block hook in cosim/vcpu/_icount.c shares).
 *
 * Why in C: under the deterministic schedule a default quantum is ~10,000 instructions, ~25 us of guest
 * code, and every change of vCPU went through a FIFO write, a process wake-up and the waker's poll
 * (tools/bench_deterministic.py: deterministic 0.24x of one free-running vCPU). A spinning waiter sees
 * the turn within a fraction of a microsecond, with the GIL released. It costs the host CPU it spins
 * on, so the spin is bounded; a vCPU waiting here (not in the block hook) then sleeps in its poll. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "baton.h"

static baton_link *link_at(PyObject *arg)
{
    baton_link *b = (baton_link *)PyLong_AsVoidPtr(arg);
    if (b == NULL && !PyErr_Occurred())
        PyErr_SetString(PyExc_ValueError, "null baton link");
    return b;
}

/* wait_turn(link address) -> True once the turn is this vCPU's (within the link's spin_ns), else False
 * (the caller sleeps in its poll: state 0 again, passers write its FIFO). */
static PyObject *wait_turn(PyObject *self, PyObject *arg)
{
    (void)self;
    baton_link *b = link_at(arg);
    if (b == NULL)
        return NULL;
    int mine = 0;
    int32_t *state = &b->spinning[b->own];
    const int32_t own = (int32_t)b->own;
    Py_BEGIN_ALLOW_THREADS
    __atomic_store_n(state, WAIT_SPIN, __ATOMIC_SEQ_CST);
    uint64_t deadline = baton_now_ns() + b->spin_ns;
    unsigned n = 0;
    while (!(mine = __atomic_load_n(&b->header->turn, __ATOMIC_ACQUIRE) == own)) {
        __builtin_ia32_pause();
        if ((++n & 63) == 0 && baton_now_ns() >= deadline)
            break;
    }
    __atomic_store_n(state, WAIT_OFF, __ATOMIC_SEQ_CST);
    if (!mine)
        mine = __atomic_load_n(&b->header->turn, __ATOMIC_SEQ_CST) == own;
    Py_END_ALLOW_THREADS
    return PyBool_FromLong(mine);
}

/* pass_turn(link address, next) -> True when `next` waits in its poll (the caller writes its FIFO). */
static PyObject *pass_turn(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *addr;
    int next;
    if (!PyArg_ParseTuple(args, "Oi", &addr, &next))
        return NULL;
    baton_link *b = link_at(addr);
    if (b == NULL)
        return NULL;
    if (next < 0 || next >= b->vcpus) {
        PyErr_SetString(PyExc_ValueError, "no such vCPU");
        return NULL;
    }
    return PyBool_FromLong(baton_pass(b, next));
}

/* end_run(link address): turn none; every vCPU asleep in its block hook wakes. */
static PyObject *end_run(PyObject *self, PyObject *arg)
{
    (void)self;
    baton_link *b = link_at(arg);
    if (b == NULL)
        return NULL;
    baton_end(b);
    Py_RETURN_NONE;
}

/* nudge(link address): this vCPU, if asleep in its block hook, wakes (after a kick). */
static PyObject *nudge(PyObject *self, PyObject *arg)
{
    (void)self;
    baton_link *b = link_at(arg);
    if (b == NULL)
        return NULL;
    baton_nudge(&b->spinning[b->own]);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"wait_turn", wait_turn, METH_O,
     "wait_turn(link address) -> True if the turn came to this vCPU within the link's spin_ns."},
    {"pass_turn", pass_turn, METH_VARARGS,
     "pass_turn(link address, next) -> True when next waits in its poll (wake it through its FIFO)."},
    {"end_run", end_run, METH_O, "end_run(link address): turn none; vCPUs asleep in their hooks wake."},
    {"nudge", nudge, METH_O, "nudge(link address): wake this vCPU if it sleeps in its block hook."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_baton", NULL, -1, methods};

PyMODINIT_FUNC PyInit__baton(void)
{
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && (PyModule_AddIntConstant(m, "MAX_VCPUS", BATON_MAX_VCPUS) < 0
                      || PyModule_AddIntConstant(m, "LINK_SIZE", (long)sizeof(baton_link)) < 0)) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
