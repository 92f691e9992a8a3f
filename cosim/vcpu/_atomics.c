/* lwarx / stwcx. that hold across vCPU processes (issue 20).
 *
 * Why: unicorn 2.1.4 translates stwcx. (qemu/target/ppc/translate.c, gen_conditional_store) as a
 * compare of the address against the vCPU's reservation, then tcg_gen_atomic_cmpxchg_tl(reserve,
 * reserve_val, rS). TCG emits a host compare-and-swap only for blocks translated with CF_PARALLEL, and
 * unicorn's curr_cflags() is a constant 0 (qemu/include/exec/exec-all.h), with no setting to change it:
 * every stwcx. is a plain load, compare and store. Guest RAM is one shared-memory block mapped into
 * every vCPU process, so two processes' stwcx. interleave inside that window and increments are lost
 * (4 vCPUs x 20,000 lwarx/addi/stwcx. increments ended at 976 .. 79,983 instead of 80,000 in 3 of 4
 * runs; a process preempted between the load and the store writes back a value from long before).
 *
 * What: every lwarx and stwcx. in guest RAM gets a unicorn code hook at its address (C, here) that
 * executes the instruction itself and moves the PC past it:
 *   lwarx  rD,rA,rB : rD = the word at EA (an atomic load of shared RAM); reservation = (EA, rD);
 *   stwcx. rS,rA,rB : if a reservation exists for EA, a host compare-and-swap of the word at EA from the
 *                     reserved value to rS (as QEMU's multi-threaded TCG does); CR0 = 00 || success
 *                     || XER[SO]; the reservation is gone either way (also on an address mismatch,
 *                     which fails without storing, as in QEMU).
 * The reservation is also lost when an interrupt is delivered to the guest (`atomics_lose`).
 * Sites are found whenever a page is fetched through a TLB fill (a UC_HOOK_TLB_FILL callback
 * registered before the engine's own fill, which always returns false so the engine's fill decides
 * the mapping): that page and the next are scanned (a block that runs into the next page is
 * translated before that page's own fill), and each new site gets its hook (one bit per RAM word
 * remembers it). A steady-state guest makes almost no fills; the engine flushes the TLB after every
 * out-of-line step, so code the guest writes into a page it already runs is found at the next fill
 * (not before: a site written and run with no fill in between runs as unicorn's non-atomic stwcx.).
 * A hook whose word is no longer lwarx/stwcx. (a planted breakpoint, rewritten code) does nothing.
 * Left to unicorn (the word as translated): an EA that is unaligned or outside RAM (its alignment or
 * access fault), and an address listed in `skip` (an armed IAC or the run's `until` address: their
 * own code hooks must stop before the instruction; the engine executes it after with atomics_exec),
 * or an access that touches an armed DAC (the engine's DAC hooks see only unicorn's own accesses).
 *
 * Cost: one C hook call per lwarx/stwcx. executed, plus leaving the translated block (the hook writes
 * the PC; unicorn resumes at the next instruction without returning from emu_start). The block that
 * resumes there is counted again by the instruction counter (as a block left by an exception is).
 * Addresses are guest-physical: the engine maps guest RAM 1:1 (a guest MMU must translate here).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdbool.h>
#include <stdint.h>

typedef int (*reg_fn)(void *uc, int regid, void *value);
typedef int (*hook_add_fn)(void *uc, size_t *hh, int type, void *callback, void *user_data,
                           uint64_t begin, uint64_t end, ...);

enum { HOOK_CODE = 1 << 2, MEM_FETCH = 18, PAGE_BITS = 12, NSKIP = 4, NDAC = 2 };
enum { XO_LWARX = 20, XO_STWCX = 150 };

typedef struct {
    uint8_t *ram;                 /* host address of guest RAM (the shared-memory block) */
    uint64_t ram_size;
    reg_fn reg_read, reg_write;   /* uc_reg_read, uc_reg_write */
    hook_add_fn hook_add;         /* uc_hook_add */
    int32_t reg_gpr0, reg_pc, reg_cr, reg_xer;   /* unicorn register ids */
    uint64_t valid, res_addr, res_val;           /* the reservation */
    uint64_t skip[NSKIP];         /* addresses left to unicorn (UINT64_MAX: unused) */
    uint64_t dac[NDAC];           /* armed DAC addresses (UINT64_MAX: none) */
    uint64_t larx, stcx_ok, stcx_fail, passed, sites, hook_errors;   /* counters */
    uint8_t hooked[];             /* one bit per word of RAM: a code hook is there */
} cosim_atomics;

static inline uint32_t be32(const uint8_t *p)
{
    uint32_t v;
    __builtin_memcpy(&v, p, 4);
    return __builtin_bswap32(v);
}

static inline uint32_t kind(uint32_t w)
{
    if ((w >> 26) != 31)
        return 0;
    uint32_t xo = (w >> 1) & 0x3FF;
    if (xo == XO_LWARX)
        return XO_LWARX;
    if (xo == XO_STWCX && (w & 1))
        return XO_STWCX;
    return 0;
}

static uint32_t gpr(cosim_atomics *st, void *uc, int n)
{
    uint64_t v = 0;
    st->reg_read(uc, st->reg_gpr0 + n, &v);
    return (uint32_t)v;
}

static void set_reg(cosim_atomics *st, void *uc, int id, uint32_t value)
{
    uint64_t v = value;
    st->reg_write(uc, id, &v);
}

static bool left_to_unicorn(cosim_atomics *st, uint64_t pc, uint64_t ea)
{
    if ((ea & 3) || ea + 4 > st->ram_size)
        return true;
    for (int i = 0; i < NSKIP; i++)
        if (st->skip[i] == pc)
            return true;
    for (int i = 0; i < NDAC; i++)
        if (st->dac[i] != UINT64_MAX && st->dac[i] + 4 > ea && st->dac[i] < ea + 4)
            return true;
    return false;
}

/* Execute `w` (lwarx or stwcx.) as if at `pc`; PC = pc + 4. Returns 0 (nothing done) for any other
 * word or an access left to unicorn. `from_hook`: the skip list applies (the engine calls with 0 to
 * execute an instruction its own IAC or `until` stop held). */
static int atomics_exec_word(cosim_atomics *st, void *uc, uint64_t pc, uint32_t w, int from_hook)
{
    uint32_t k = kind(w);
    if (!k)
        return 0;
    int rd = (w >> 21) & 31, ra = (w >> 16) & 31, rb = (w >> 11) & 31;
    uint64_t ea = (uint32_t)((ra ? gpr(st, uc, ra) : 0) + gpr(st, uc, rb));
    if (left_to_unicorn(st, from_hook ? pc : UINT64_MAX, ea)) {
        st->passed++;
        return 0;
    }
    uint32_t *word = (uint32_t *)(st->ram + ea);
    if (k == XO_LWARX) {
        uint32_t v = __builtin_bswap32(__atomic_load_n(word, __ATOMIC_SEQ_CST));
        set_reg(st, uc, st->reg_gpr0 + rd, v);
        st->res_addr = ea;
        st->res_val = v;
        st->valid = 1;
        st->larx++;
    } else {
        bool ok = false;
        if (st->valid && st->res_addr == ea) {
            uint32_t expected = __builtin_bswap32((uint32_t)st->res_val);
            ok = __atomic_compare_exchange_n(word, &expected, __builtin_bswap32(gpr(st, uc, rd)), false,
                                             __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
        } else {
            __atomic_thread_fence(__ATOMIC_SEQ_CST);
        }
        st->valid = 0;
        if (ok)
            st->stcx_ok++;
        else
            st->stcx_fail++;
        uint64_t cr = 0, xer = 0;
        st->reg_read(uc, st->reg_cr, &cr);
        st->reg_read(uc, st->reg_xer, &xer);
        uint32_t cr0 = (ok ? 0x2u : 0u) | ((uint32_t)(xer >> 31) & 1u);
        set_reg(st, uc, st->reg_cr, ((uint32_t)cr & 0x0FFFFFFFu) | (cr0 << 28));
    }
    set_reg(st, uc, st->reg_pc, (uint32_t)(pc + 4));
    return 1;
}

/* UC_HOOK_CODE at each site. */
static void atomics_code_hook(void *uc, uint64_t address, uint32_t size, void *user_data)
{
    cosim_atomics *st = (cosim_atomics *)user_data;
    (void)size;
    address &= 0xFFFFFFFFull;
    if (address + 4 <= st->ram_size)
        atomics_exec_word(st, uc, address, be32(st->ram + address), 1);
}

static void scan_page(cosim_atomics *st, void *uc, uint64_t page)
{
    uint64_t begin = page << PAGE_BITS;
    if (begin >= st->ram_size)
        return;
    uint64_t end = begin + (1u << PAGE_BITS);
    if (end > st->ram_size)
        end = st->ram_size;
    for (uint64_t a = begin; a < end; a += 4) {
        uint64_t bit = a >> 2;
        if (!(st->hooked[bit >> 3] & (1u << (bit & 7))) && kind(be32(st->ram + a))) {
            st->hooked[bit >> 3] |= (uint8_t)(1u << (bit & 7));
            size_t hh = 0;
            if (st->hook_add(uc, &hh, HOOK_CODE, (void *)&atomics_code_hook, st, a, a))
                st->hook_errors++;
            else
                st->sites++;
        }
    }
}

/* UC_HOOK_TLB_FILL, registered before the engine's own: scans on a fetch, never decides a mapping. */
static bool atomics_tlb_fill(void *uc, uint64_t vaddr, int type, void *entry, void *user_data)
{
    cosim_atomics *st = (cosim_atomics *)user_data;
    (void)entry;
    if (type == MEM_FETCH) {
        uint64_t page = (vaddr & 0xFFFFFFFFull) >> PAGE_BITS;
        scan_page(st, uc, page);
        scan_page(st, uc, page + 1);
    }
    return false;
}

/* For the engine: execute the lwarx/stwcx. `word` as if at `pc` (a breakpoint's displaced original,
 * a single step, an instruction held by an IAC). Returns 1 if done (PC = pc + 4). */
static int atomics_exec(cosim_atomics *st, void *uc, uint64_t pc, uint32_t word)
{
    return atomics_exec_word(st, uc, pc, word, 0);
}

static PyObject *addresses(PyObject *self, PyObject *noargs)
{
    (void)self; (void)noargs;
    return Py_BuildValue("(NNN)", PyLong_FromVoidPtr((void *)&atomics_tlb_fill),
                         PyLong_FromVoidPtr((void *)&atomics_exec),
                         PyLong_FromSize_t(sizeof(cosim_atomics)));
}

static PyMethodDef methods[] = {
    {"addresses", addresses, METH_NOARGS,
     "(tlb_fill, exec, header_size): the UC_HOOK_TLB_FILL callback that finds lwarx/stwcx. sites, "
     "int exec(state, uc, pc, word), and the size of cosim_atomics before its per-page bytes."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_atomics", NULL, -1, methods};

PyMODINIT_FUNC PyInit__atomics(void) { return PyModule_Create(&module); }
