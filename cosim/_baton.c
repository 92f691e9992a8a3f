/* The baton's hand-over in C (cosim/baton.py): a vCPU whose turn is near waits for it by spinning on
 * the shared `turn` word for a few tens of microseconds, with the GIL released, before it falls back to
 * sleeping in its poll; the vCPU that passes the turn writes the FIFO byte that wakes a sleeper only when
 * the next vCPU is not spinning.
 *
 * Why: under the deterministic schedule a default quantum is ~10,000 instructions, ~25 us of guest code,
 * and every change of vCPU went through a FIFO write, a process wake-up and the waker's poll (tools/
 * bench_deterministic.py: deterministic 0.24x of one free-running vCPU). A spinning waiter sees the turn
 * within a fraction of a microsecond. It costs the host CPU it spins on, so the spin is bounded.
 *
 * Ordering: the waiter announces itself (spinning = 1), watches `turn`, then withdraws (spinning = 0)
 * and looks at `turn` once more; the passer stores `turn`, then reads `spinning`. Both pairs are
 * sequentially consistent (a store then a load of another word: x86 would otherwise let the load pass
 * the store), so either the waiter sees its turn or the passer sees it gone and wakes it: a turn is
 * never left unseen. A wake-up it did not need (the waiter saw the turn in its last look) is one byte a
 * later drain reads. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <time.h>

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* wait_turn(turn address, own, spinning address, spin ns) -> True once the int32 at `turn` is `own`
 * (within spin ns), else False. */
static PyObject *wait_turn(PyObject *self, PyObject *args)
{
    unsigned long long turn_addr, spin_addr, spin_ns;
    int own, mine = 0;
    (void)self;
    if (!PyArg_ParseTuple(args, "KiKK", &turn_addr, &own, &spin_addr, &spin_ns))
        return NULL;
    int32_t *turn = (int32_t *)(uintptr_t)turn_addr;
    int32_t *spinning = (int32_t *)(uintptr_t)spin_addr;
    Py_BEGIN_ALLOW_THREADS
    __atomic_store_n(spinning, 1, __ATOMIC_SEQ_CST);
    uint64_t deadline = now_ns() + spin_ns;
    unsigned n = 0;
    while (!(mine = __atomic_load_n(turn, __ATOMIC_ACQUIRE) == own)) {
        __builtin_ia32_pause();
        if ((++n & 63) == 0 && now_ns() >= deadline)
            break;
    }
    __atomic_store_n(spinning, 0, __ATOMIC_SEQ_CST);
    if (!mine)
        mine = __atomic_load_n(turn, __ATOMIC_SEQ_CST) == own;
    Py_END_ALLOW_THREADS
    return PyBool_FromLong(mine);
}

/* pass_turn(turn address, next, spinning address of next) -> True when `next` is not spinning (the
 * caller wakes it through its FIFO). */
static PyObject *pass_turn(PyObject *self, PyObject *args)
{
    unsigned long long turn_addr, spin_addr;
    int next;
    (void)self;
    if (!PyArg_ParseTuple(args, "KiK", &turn_addr, &next, &spin_addr))
        return NULL;
    __atomic_store_n((int32_t *)(uintptr_t)turn_addr, next, __ATOMIC_SEQ_CST);
    return PyBool_FromLong(__atomic_load_n((int32_t *)(uintptr_t)spin_addr, __ATOMIC_SEQ_CST) == 0);
}

static PyMethodDef methods[] = {
    {"wait_turn", wait_turn, METH_VARARGS,
     "wait_turn(turn address, own, spinning address, spin ns) -> True if the turn came within spin ns."},
    {"pass_turn", pass_turn, METH_VARARGS,
     "pass_turn(turn address, next, spinning address) -> True when next is not spinning (wake it)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_baton", NULL, -1, methods};

PyMODINIT_FUNC PyInit__baton(void)
{
    return PyModule_Create(&module);
}
