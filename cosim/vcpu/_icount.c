/* The vCPU engine's hot callbacks in C: instruction counting (with the budget and the kick) and the
 * TLB fill.
 *
 * Instruction counting.
 *
 * cosim_count_block is installed as a unicorn UC_HOOK_BLOCK callback with user_data pointing at a
 * cosim_gate whose `count` is a uint64 in the vCPU's run page. Book E instructions are all 4 bytes, so
 * a block of `size` bytes retires size/4 instructions (a block left early by an exception is counted
 * whole: the over-count is at most one block per exit). A Python callback here would cost ~3x the
 * guest's own speed; this costs ~0.3x. The module exports only the callbacks' addresses. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdbool.h>
#include <stdint.h>

/* The block hook: instruction counting, the budget (deterministic schedules) and the kick, one C
 * callback per translated block, user_data a cosim_gate.
 *
 * Budget: a block that would take the count past `budget` is neither counted nor run: emu_stop() from
 * a block hook stops before the block executes (measured on unicorn 2.1.4: PC is left at the block's
 * first instruction). The caller then retires the last instructions one at a time (out-of-line single
 * steps, whose scratch page at or above `exempt_from` is never stopped here), so a vCPU stops at an
 * exact count. Without a budget, `budget` is UINT64_MAX.
 *
 * Kick: another thread asking the vCPU to come out sets `kick`; the next guest block stops here, before
 * it runs, and the request is consumed. Not uc_emu_stop() from that thread: measured on unicorn 2.1.4,
 * a cross-thread emu_stop that lands while a load misses the TLB ends the run with the PC left at that
 * load after it ran, so resuming there runs it again (on bare unicorn, a list walk `lwz r3,0(r3)`
 * skips nodes in every run, default TLB or UC_TLB_VIRTUAL; in warn_storm `lwz r30,d(r30)` read 0
 * iterations in 14 runs of 300). Stopped from its own block hook, the vCPU always stops on a block
 * boundary with nothing of the block run (tests/test_kick.py). */
typedef struct {
    uint64_t *count;
    uint64_t limit;                 /* the fast path's one compare: budget, or 0 while a kick waits */
    uint64_t budget;
    uint64_t exempt_from;
    uint64_t stops;                 /* budget stops */
    int (*emu_stop)(void *uc);
    uint64_t kick;                  /* set by another thread (then limit = 0): stop before the next block */
    uint64_t kicks;                 /* kick stops */
} cosim_gate;

/* limit = budget, unless a kick waits. The kicker stores kick = 1 then limit = 0; storing limit before
 * reading kick (a full barrier between them) means a kick that comes meanwhile leaves limit = 0. */
static void cosim_gate_reset_limit(cosim_gate *g)
{
    __atomic_store_n(&g->limit, g->budget, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&g->kick, __ATOMIC_SEQ_CST))
        __atomic_store_n(&g->limit, 0, __ATOMIC_SEQ_CST);
}

static void cosim_count_block(void *uc, uint64_t addr, uint32_t size, void *user_data)
{
    cosim_gate *g = (cosim_gate *)user_data;
    uint64_t n = size >> 2;
    if (__builtin_expect(*g->count + n <= __atomic_load_n(&g->limit, __ATOMIC_RELAXED), 1)) {
        *g->count += n;
        return;
    }
    if (addr < g->exempt_from) {
        if (__atomic_exchange_n(&g->kick, 0, __ATOMIC_SEQ_CST)) {
            cosim_gate_reset_limit(g);
            g->kicks++;
            g->emu_stop(uc);
            return;
        }
        if (*g->count + n > g->budget) {
            g->stops++;
            g->emu_stop(uc);
            return;
        }
    }
    if (__atomic_load_n(&g->limit, __ATOMIC_RELAXED) != g->budget)
        cosim_gate_reset_limit(g);     /* a kick already served, or one for the next guest block */
    *g->count += n;
}

static PyObject *reset_limit(PyObject *self, PyObject *arg)
{
    (void)self;
    void *p = PyLong_AsVoidPtr(arg);
    if (p == NULL && PyErr_Occurred())
        return NULL;
    cosim_gate_reset_limit((cosim_gate *)p);
    Py_RETURN_NONE;
}

/* TLB fill (unicorn's UC_TLB_VIRTUAL mode, UC_HOOK_TLB_FILL): identity mapping. Why: in unicorn 2.1.4
 * every writable TLB entry of a page that is executable through the guest MMU keeps TLB_NOTDIRTY, so
 * every store takes the softmmu slow path (~35 ns); PPC real mode makes every page executable. Here a
 * page is granted execute only once it has been fetched from (it is then refilled RWX, and stores to
 * it keep invalidating its translations: self-modifying code and breakpoint patches still work); a
 * page only read and written stays RW and its stores take the fast path. Addresses outside guest RAM
 * get RWX (unmapped accesses still fault through the unmapped-memory hook).
 *
 * user_data points at a cosim_tlb_state owned by the engine (a NumPy buffer): guest RAM size, fills,
 * the engine's reserved pages (refused, so a guest access there faults, unless the engine opened them
 * for its own out-of-line step), then one byte per 4 KiB page of RAM, set once fetched from. */
typedef struct {
    uint64_t ram_size;
    uint64_t fills;
    uint64_t reserved_lo, reserved_hi;  /* the engine's own pages: never the guest's */
    uint64_t reserved_open;             /* nonzero while the engine itself runs there */
    uint8_t executed[];
} cosim_tlb_state;

typedef struct { uint64_t paddr; uint32_t perms; } cosim_tlb_entry;   /* unicorn's uc_tlb_entry */

enum { MEM_FETCH = 18, PROT_RW = 3, PROT_ALL = 7, PAGE_BITS = 12 };

static bool cosim_tlb_fill(void *uc, uint64_t vaddr, int type, cosim_tlb_entry *result, void *user_data)
{
    cosim_tlb_state *st = (cosim_tlb_state *)user_data;
    (void)uc;
    vaddr &= 0xFFFFFFFFull;
    st->fills++;
    result->paddr = vaddr & ~((1ull << PAGE_BITS) - 1);
    if (vaddr >= st->reserved_lo && vaddr < st->reserved_hi && !st->reserved_open)
        return false;
    if (vaddr >= st->ram_size) {
        result->perms = PROT_ALL;
    } else if (type == MEM_FETCH) {
        st->executed[vaddr >> PAGE_BITS] = 1;
        result->perms = PROT_ALL;
    } else {
        result->perms = st->executed[vaddr >> PAGE_BITS] ? PROT_ALL : PROT_RW;
    }
    return true;
}

static PyObject *tlb_fill_address(PyObject *self, PyObject *noargs)
{
    (void)self; (void)noargs;
    return PyLong_FromVoidPtr((void *)&cosim_tlb_fill);
}

static PyObject *block_hook_address(PyObject *self, PyObject *noargs)
{
    (void)self; (void)noargs;
    return PyLong_FromVoidPtr((void *)&cosim_count_block);
}

static PyMethodDef methods[] = {
    {"block_hook_address", block_hook_address, METH_NOARGS,
     "Address of the C UC_HOOK_BLOCK callback that counts instructions (size/4 per block) and stops "
     "before a block past a budget or after a kick (user_data: cosim_gate)."},
    {"reset_limit", reset_limit, METH_O,
     "After the budget of the cosim_gate at this address changed: its limit = budget, unless a kick "
     "waits (then 0)."},
    {"tlb_fill_address", tlb_fill_address, METH_NOARGS,
     "Address of the C UC_HOOK_TLB_FILL callback (identity map; execute only for fetched pages)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_icount", NULL, -1, methods};

PyMODINIT_FUNC PyInit__icount(void) { return PyModule_Create(&module); }
