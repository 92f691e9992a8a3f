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
#include <sched.h>
#include "baton.h"

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
    uint32_t *tb;                   /* unicorn's env->spr[268] (TBL; [269] TBU), or NULL: the time base */
    uint64_t tb_offset;             /* TB = count + tb_offset (one tick per instruction: virtual time) */
    uint64_t *clock;                /* NULL, or the VM's shared clock: TB = clock + tb_offset (SMP) */
    uint64_t unshared;              /* instructions retired and not yet added to the shared clock */
    uint64_t spin_pc[2];            /* the last two blocks' addresses (a spin loop is one or two blocks) */
    uint64_t spin_blocks;           /* blocks in a row that repeated one of them */
    uint64_t spin_clock, spin_count;  /* the clock and this vCPU's count when the run of repeats began */
    uint64_t spin_yields;           /* times this vCPU gave its host CPU up while spinning alone */
    uint64_t spin_yield;            /* nonzero: do that (several vCPUs running free; not under a
                                     * deterministic schedule, where the others wait for the turn anyway) */
    uint64_t clock_batch;           /* instructions added to the shared clock at a time: CLOCK_BATCH when
                                     * running free, 1 under a deterministic schedule (below) */
    /* The deterministic schedule's plan, run here (below: cosim_baton_next). The engine keeps budget =
     * min(user_budget, deadline) in step with these. */
    baton_link *baton;              /* NULL: every quantum's end goes back to Python */
    uint64_t chain;                 /* set by Python for this run: nothing waits in the core between two
                                     * quanta (no interrupt pending, not stepping); an MMIO access clears it */
    uint64_t user_budget;           /* where the quantum ends */
    uint64_t budget_start;          /* the count when it started */
    uint64_t deadline;              /* the next timer event, as a count of this vCPU */
    uint64_t deadline_clock;        /* ... as the clock says (UINT64_MAX: none) */
    uint64_t max_count;             /* the run's instruction limit (0: none): its exact end is Python's */
    uint64_t until;                 /* the scenario's end address (UINT64_MAX: none): a quantum that would
                                     * begin there is Python's (it stops before running it) */
    uint64_t in_step;               /* 1 while this vCPU holds a quantum of the plan, 0 once passed on */
    uint64_t chained, passes, resumed;   /* quanta begun here: after its own, the turn passed, come back */
} cosim_gate;

/* A vCPU adds its instructions to the shared clock CLOCK_BATCH at a time (and whenever its run ends:
 * flush_clock). One atomic add per translated block made the clock's cache line bounce between the
 * cores on every block: a tight loop on two vCPUs ran at a fifth of its speed (96 against 485 MIPS). */
#define CLOCK_BATCH 1024
/* Under a deterministic schedule one vCPU runs at a time (no line to bounce) and the clock is added to
 * at every block (clock_batch 1): what the guest reads from its time base must not depend on where its
 * runs were cut, and a kick served late on a loaded host (a stop at a block boundary, otherwise
 * invisible) moved the batches' phase and so the time base a seed's replay read (a seeded SMP Linux
 * boot stopped replaying under load). */

/* A vCPU spinning on a word another vCPU will write (a lock, Linux's time-base handshake, a CPU waiting
 * for another in stop_machine) makes no progress while that vCPU's process waits for a host CPU: on a
 * loaded host it burnt its whole time slice per handshake, and Linux's software time-base sync
 * (arch/powerpc/kernel/smp-tbsync.c: ~9,750 handshakes) took minutes, or hit the run's limits. As a
 * hypervisor's pause-loop exiting does, a vCPU that has repeated the same one or two blocks
 * SPIN_BLOCKS times while no other vCPU moved the shared clock (every other one descheduled, halted or
 * gone) yields its host CPU (sched_yield). Only with a shared clock (several vCPUs running free: the
 * gate's spin_yield), and invisible to the guest: counts, the clock and the time base are what they
 * would have been; only host time moves. A loop of useful work on one vCPU while another runs is not
 * touched (the other moves the clock). */
#define SPIN_BLOCKS 1024

/* The time base the guest reads natively (mfspr 268/269 runs in unicorn as a load from its SPR array):
 * written before every block from the instruction count, so a polling loop sees time advance by its
 * own length per iteration (QEMU's icount idea: the same run gives the same ticks). */
static inline void cosim_retire(cosim_gate *g, uint64_t n)
{
    /* With a shared clock (more than one vCPU), the block's instructions advance the VM's one virtual
     * clock, which every vCPU's time base reads: the cores' time bases stay in step (Linux needs that:
     * it never synchronises them on this board) and never run backwards from one core to another. */
    uint64_t now;
    if (g->clock == NULL)
        now = *g->count;
    else if (g->clock_batch == 1) {
        /* exact, under a deterministic schedule: one vCPU runs at a time (the turn's hand-over orders
         * the runs), so no other writes the clock meanwhile and a plain add does (the locked add was
         * ~10% of this hook's samples in a 2-vCPU loop, perf) */
        now = __atomic_load_n(g->clock, __ATOMIC_RELAXED);
        __atomic_store_n(g->clock, now + n, __ATOMIC_RELAXED);
    } else if ((g->unshared += n) >= g->clock_batch) {
        /* (the time base reads the clock before this block, as without batching) */
        now = __atomic_fetch_add(g->clock, g->unshared, __ATOMIC_RELAXED) + g->unshared - n;
        g->unshared = 0;
    } else
        /* the clock as every core reads it: a time base never behind what another core already read
         * (Linux's timekeeping takes a time base below its last cycle count for a huge forward jump),
         * at the price of lagging this vCPU's own unshared instructions (fewer than CLOCK_BATCH) */
        now = __atomic_load_n(g->clock, __ATOMIC_RELAXED);
    if (g->tb) {
        uint64_t tb = now + g->tb_offset;
        g->tb[0] = (uint32_t)tb;
        g->tb[1] = (uint32_t)(tb >> 32);
    }
    *g->count += n;
}

/* limit = budget, unless a kick waits. The kicker stores kick = 1 then limit = 0; storing limit before
 * reading kick (a full barrier between them) means a kick that comes meanwhile leaves limit = 0. */
static void cosim_gate_reset_limit(cosim_gate *g)
{
    __atomic_store_n(&g->limit, g->budget, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&g->kick, __ATOMIC_SEQ_CST))
        __atomic_store_n(&g->limit, 0, __ATOMIC_SEQ_CST);
}

static inline void cosim_spin_check(cosim_gate *g, uint64_t addr)
{
    if (addr != g->spin_pc[0] && addr != g->spin_pc[1]) {
        g->spin_pc[1] = g->spin_pc[0];
        g->spin_pc[0] = addr;
        g->spin_blocks = 0;
        return;
    }
    g->spin_pc[1] = g->spin_pc[0];
    g->spin_pc[0] = addr;
    if (g->spin_blocks++ == 0) {
        g->spin_clock = __atomic_load_n(g->clock, __ATOMIC_RELAXED);
        g->spin_count = *g->count;
    } else if (g->spin_blocks >= SPIN_BLOCKS) {
        uint64_t clock = __atomic_load_n(g->clock, __ATOMIC_RELAXED);
        /* what the other vCPUs added meanwhile: the clock's advance beyond this vCPU's own (its
         * unshared instructions make its own share look up to a batch larger or smaller) */
        if (clock - g->spin_clock <= *g->count - g->spin_count + g->clock_batch) {
            g->spin_yields++;
            sched_yield();
        }
        g->spin_blocks = 0;
    }
}

/* The deterministic schedule's plan (cosim/baton.py) run inside the hook: at a quantum's clean end the
 * hook does what the vCPU's Python loop would (cosim/lockstep.py VcpuGate._step, Baton.done) without
 * leaving unicorn: the plan's next quantum, if it is this vCPU's, starts at once; if it is another's,
 * the turn is passed and this vCPU waits here (cosim/baton.h baton_wait) for it to come back. The plan,
 * the instants and so the digests are the same; only Python's ~30 us per quantum and the emu_start
 * exits are gone. Whatever the hook cannot decide goes back to Python as before, nothing committed:
 * the end of the plan or a userspace timer due (the supervisor is answered), a timer deadline of this
 * vCPU, a block larger than what is left, the run's instruction limit, the scenario's `until`. */
enum { NEXT_RUN = 0, NEXT_BUDGET = 1, NEXT_LEFT = 2 };

/* Begin a quantum of `q` instructions at the current count, if its first block (`n` instructions) fits
 * (else the engine single-steps it: Python's), and it is not the run's last (exact) one. */
static int cosim_begin_quantum(cosim_gate *g, uint64_t q, uint64_t n)
{
    uint64_t count = *g->count, target = count + q, dl = g->deadline_clock, budget;
    if (g->max_count && g->max_count <= target)
        return 0;
    if (g->clock != NULL && dl != UINT64_MAX) {       /* (engine.py _local_deadline) */
        uint64_t now = __atomic_load_n(g->clock, __ATOMIC_RELAXED);
        dl = count + (dl > now ? dl - now : 0);
    }
    budget = target < dl ? target : dl;
    if (count + n > budget)
        return 0;
    g->user_budget = target;
    g->budget_start = count;
    g->deadline = dl;
    g->budget = budget;
    cosim_gate_reset_limit(g);
    return 1;
}

/* Called at a budget stop while Python armed the chain: NEXT_RUN (a new quantum began; run the block),
 * NEXT_BUDGET (an ordinary budget stop: Python decides), NEXT_LEFT (the turn was passed on and did not
 * come back to this plan's next quantum here: Python takes it from the baton). */
static int cosim_baton_next(cosim_gate *g, uint64_t addr, uint64_t n)
{
    baton_link *b = g->baton;
    baton_header *h = b->header;
    uint64_t count = *g->count;
    if (g->budget != g->user_budget || count <= g->budget_start || addr == g->until)
        return NEXT_BUDGET;              /* a timer deadline, the quantum's first block too large, the end */
    uint32_t index = h->index + 1;
    uint64_t vtime = h->vtime + (count - g->budget_start);
    if (index >= __atomic_load_n(&h->length, __ATOMIC_ACQUIRE)    /* (the supervisor extends it) */
            || (h->next_due != BATON_NONE && vtime >= (uint64_t)h->next_due && (int64_t)vtime != h->due_synced))
        return NEXT_BUDGET;              /* the run ends: Python answers the supervisor */
    int32_t next = (int32_t)b->plan[index].vcpu;
    if (next == b->own && !cosim_begin_quantum(g, b->plan[index].instructions, n))
        return NEXT_BUDGET;
    h->vtime = vtime;
    h->index = index;
    b->counts[b->own] = count;
    if (next == b->own) {
        g->chained++;
        return NEXT_RUN;
    }
    uint64_t seq = h->seq;
    g->in_step = 0;
    g->passes++;
    if (baton_pass(b, next)) {
        char byte = 't';
        ssize_t w = write((int)b->fifo[next], &byte, 1);   /* (full: it is awake anyway) */
        (void)w;
    }
    if (!baton_wait(b, seq, &g->kick))
        return NEXT_LEFT;
    if (!cosim_begin_quantum(g, b->plan[h->index].instructions, n))
        return NEXT_LEFT;                /* (its turn, and Python begins the quantum) */
    g->in_step = 1;
    g->resumed++;
    return NEXT_RUN;
}

static void cosim_count_block(void *uc, uint64_t addr, uint32_t size, void *user_data)
{
    cosim_gate *g = (cosim_gate *)user_data;
    uint64_t n = size >> 2;
    if (__builtin_expect(*g->count + n <= __atomic_load_n(&g->limit, __ATOMIC_RELAXED), 1)) {
        cosim_retire(g, n);
        if (g->spin_yield)
            cosim_spin_check(g, addr);
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
            int next = g->baton != NULL && g->chain ? cosim_baton_next(g, addr, n) : NEXT_BUDGET;
            if (next == NEXT_LEFT) {
                g->emu_stop(uc);
                return;
            }
            if (next == NEXT_BUDGET) {
                g->stops++;
                g->emu_stop(uc);
                return;
            }
        }
    }
    if (__atomic_load_n(&g->limit, __ATOMIC_RELAXED) != g->budget)
        cosim_gate_reset_limit(g);     /* a kick already served, or one for the next guest block */
    cosim_retire(g, n);
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

/* TLB fill (unicorn's UC_TLB_VIRTUAL mode, UC_HOOK_TLB_FILL), called on every host TLB miss, never per
 * instruction. Two machines:
 *
 * Bare (mmu_on = 0): identity mapping. Why not unicorn's real mode: in unicorn 2.1.4 every writable TLB
 * entry of a page that is executable keeps TLB_NOTDIRTY, so every store takes the softmmu slow path
 * (~35 ns); real mode makes every page executable. Here a page is granted execute only once it has been
 * fetched from (it is then refilled RWX, and stores to it keep invalidating its translations:
 * self-modifying code and breakpoint patches still work); a page only read and written stays RW and its
 * stores take the fast path. Addresses outside guest RAM get RWX (unmapped accesses fault through the
 * unmapped-memory hook).
 *
 * Guest MMU (mmu_on = 1, a Book E board): the guest's own TLBs (cosim/machine/guest_tlb.py: TLB1 then
 * TLB0 by set, MAS1/MAS2/MAS3/MAS7 per entry, in shared memory) are walked with the architected
 * context the vCPU last stored here (MSR[IS/DS/PR], PID). A miss or a permission the entry denies is
 * recorded (miss_*) and refused: unicorn then ends emu_start with UC_ERR_EXCEPTION and the PC restored
 * to the faulting instruction (cpu_restore_state runs before this callback), and the vCPU delivers the
 * TLB-miss or storage interrupt. A physical address in RAM maps to it; any other (36-bit) physical page
 * is folded into the engine's MMIO window, one 4 KiB slot per page (slot_pages[slot] = the guest page),
 * where unicorn's mmio callbacks turn each access into an MMIO exit: unicorn faults on a physical
 * address above 4 GiB, so 36-bit addresses never reach it. The execute-once trick above applies to RAM.
 *
 * user_data points at a cosim_tlb_state owned by the engine (a NumPy buffer). */
typedef struct {
    uint64_t ram_size;
    uint64_t fills;
    uint64_t reserved_lo, reserved_hi;  /* the engine's own pages: never the guest's */
    uint64_t reserved_open;             /* nonzero while the engine itself runs there */
    uint64_t mmu_on;
    uint32_t *tlb;                      /* this vCPU's entries: 4 x uint32 each, TLB1 first */
    uint64_t tlb1_n, tlb0_sets, tlb0_ways;
    uint64_t pid, msr;                  /* architected context */
    uint64_t miss_vaddr, miss_type, miss_reason;   /* the last refused access */
    uint64_t mmio_base, mmio_slots, mmio_used;
    uint64_t *slot_pages;               /* guest-physical page number of each MMIO slot */
    uint64_t pad[13];
    uint8_t executed[];
} cosim_tlb_state;

typedef struct { uint64_t paddr; uint32_t perms; } cosim_tlb_entry;   /* unicorn's uc_tlb_entry */

enum { MEM_READ = 16, MEM_WRITE = 17, MEM_FETCH = 18, PROT_R = 1, PROT_W = 2, PROT_X = 4, PROT_RW = 3,
       PROT_ALL = 7, PAGE_BITS = 12 };
enum { MISS_NONE = 0, MISS_TLB = 1, MISS_PERM = 2, MISS_RESERVED = 3, MISS_FETCH_IO = 4,
       MISS_MMIO_FULL = 5 };
enum { MSR_PR = 0x4000, MSR_IS = 0x20, MSR_DS = 0x10 };
enum { MAS1_V = 0x80000000u, MAS1_TS = 0x1000, MAS1_TID_MASK = 0x3FFF0000, MAS1_TSIZE_MASK = 0xF80 };
enum { UX = 0x20, SX = 0x10, UW = 0x08, SW = 0x04, UR = 0x02, SR = 0x01 };

static bool cosim_refuse(cosim_tlb_state *st, uint64_t vaddr, int type, uint64_t reason)
{
    st->miss_vaddr = vaddr;
    st->miss_type = (uint64_t)type;
    st->miss_reason = reason;
    return false;
}

static const uint32_t *cosim_walk(const cosim_tlb_state *st, uint32_t vaddr, uint32_t ts, uint32_t pid)
{
    uint64_t i, base;
    for (i = 0; i < st->tlb1_n + st->tlb0_ways; i++) {
        const uint32_t *e;
        uint32_t mas1, tid, mask;
        if (i < st->tlb1_n) {
            e = st->tlb + 4 * i;
        } else {
            base = st->tlb1_n + ((vaddr >> PAGE_BITS) % st->tlb0_sets) * st->tlb0_ways;
            e = st->tlb + 4 * (base + (i - st->tlb1_n));
        }
        mas1 = e[0];
        if (!(mas1 & MAS1_V) || ((mas1 & MAS1_TS) ? 1u : 0u) != ts)
            continue;
        tid = (mas1 & MAS1_TID_MASK) >> 16;
        if (tid && tid != pid)
            continue;
        mask = (uint32_t)~((1024ull << ((mas1 & MAS1_TSIZE_MASK) >> 7)) - 1);
        if ((vaddr & mask) == (e[1] & mask))
            return e;
    }
    return NULL;
}

static bool cosim_tlb_fill(void *uc, uint64_t vaddr, int type, cosim_tlb_entry *result, void *user_data)
{
    cosim_tlb_state *st = (cosim_tlb_state *)user_data;
    uint64_t paddr, page, slot;
    uint32_t perms;
    (void)uc;
    vaddr &= 0xFFFFFFFFull;
    st->fills++;
    page = vaddr & ~((1ull << PAGE_BITS) - 1);
    if (vaddr >= st->reserved_lo && vaddr < st->reserved_hi + (1ull << PAGE_BITS)) {
        /* the engine's own pages: the step page (open only while the engine runs there) and, right
         * after it, the page of emu_start's `until` address (translated, never executed) */
        if (vaddr < st->reserved_hi && !st->reserved_open)
            return cosim_refuse(st, vaddr, type, MISS_RESERVED);
        result->paddr = page;
        result->perms = PROT_ALL;
        return true;
    }
    if (!st->mmu_on) {
        result->paddr = page;
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
    {
        uint32_t ts = (uint32_t)((type == MEM_FETCH ? st->msr & MSR_IS : st->msr & MSR_DS) ? 1 : 0);
        bool user = (st->msr & MSR_PR) != 0;
        const uint32_t *e = cosim_walk(st, (uint32_t)vaddr, ts, (uint32_t)st->pid);
        uint32_t mas3, need;
        uint64_t size;
        if (e == NULL)
            return cosim_refuse(st, vaddr, type, MISS_TLB);
        mas3 = e[2];
        perms = user ? ((mas3 & UR ? PROT_R : 0) | (mas3 & UW ? PROT_W : 0) | (mas3 & UX ? PROT_X : 0))
                     : ((mas3 & SR ? PROT_R : 0) | (mas3 & SW ? PROT_W : 0) | (mas3 & SX ? PROT_X : 0));
        need = type == MEM_FETCH ? PROT_X : type == MEM_WRITE ? PROT_W : PROT_R;
        if (!(perms & need))
            return cosim_refuse(st, vaddr, type, MISS_PERM);
        size = 1024ull << ((e[0] & MAS1_TSIZE_MASK) >> 7);
        paddr = ((((uint64_t)(e[3] & 0xF) << 32) | (mas3 & 0xFFFFF000u)) & ~(size - 1)) | (page & (size - 1));
    }
    if (paddr + (1ull << PAGE_BITS) <= st->ram_size) {
        result->paddr = paddr;
        if (type == MEM_FETCH)
            st->executed[paddr >> PAGE_BITS] = 1;
        else if (!st->executed[paddr >> PAGE_BITS])
            perms &= ~(uint32_t)PROT_X;
        result->perms = perms;
        return true;
    }
    if (type == MEM_FETCH)
        return cosim_refuse(st, vaddr, type, MISS_FETCH_IO);
    for (slot = 0; slot < st->mmio_used; slot++)
        if (st->slot_pages[slot] == paddr >> PAGE_BITS)
            break;
    if (slot == st->mmio_used) {
        if (slot >= st->mmio_slots)
            return cosim_refuse(st, vaddr, type, MISS_MMIO_FULL);
        st->slot_pages[slot] = paddr >> PAGE_BITS;
        st->mmio_used++;
    }
    result->paddr = st->mmio_base + (slot << PAGE_BITS);
    result->perms = perms & PROT_RW;
    return true;
}

/* translate(state address, vaddr, access 0/1/2 = fetch/read/write) -> guest-physical address, or -1 when
 * the guest TLB has no entry for it in the current context (the same walk as the fill callback; for
 * the vCPU's own reads of guest memory by virtual address: the faulting word, a breakpoint's site). */
static PyObject *translate(PyObject *self, PyObject *args)
{
    unsigned long long st_addr, vaddr;
    int access;
    const cosim_tlb_state *st;
    const uint32_t *e;
    uint32_t ts;
    uint64_t size;
    (void)self;
    if (!PyArg_ParseTuple(args, "KKi", &st_addr, &vaddr, &access))
        return NULL;
    st = (const cosim_tlb_state *)(uintptr_t)st_addr;
    vaddr &= 0xFFFFFFFFull;
    if (!st->mmu_on)
        return PyLong_FromUnsignedLongLong(vaddr);
    ts = (uint32_t)(((access == 0) ? st->msr & MSR_IS : st->msr & MSR_DS) ? 1 : 0);
    e = cosim_walk(st, (uint32_t)vaddr, ts, (uint32_t)st->pid);
    if (e == NULL)
        return PyLong_FromLong(-1);
    size = 1024ull << ((e[0] & MAS1_TSIZE_MASK) >> 7);
    return PyLong_FromUnsignedLongLong(((((uint64_t)(e[3] & 0xF) << 32) | (e[2] & 0xFFFFF000u)) & ~(size - 1))
                                       | (vaddr & (size - 1)));
}

/* At the end of a run: the vCPU's unshared instructions join the shared clock (so the clock is every
 * vCPU's instructions whenever none runs, and a deterministic schedule's quanta see exact time). */
static PyObject *flush_clock(PyObject *self, PyObject *arg)
{
    (void)self;
    cosim_gate *g = (cosim_gate *)PyLong_AsVoidPtr(arg);
    if (g == NULL)
        return PyErr_Occurred() ? NULL : PyLong_FromLong(0);
    uint64_t n = g->unshared;
    if (g->clock != NULL && n) {
        __atomic_fetch_add(g->clock, n, __ATOMIC_RELAXED);
        g->unshared = 0;
    }
    return PyLong_FromUnsignedLongLong(n);
}

/* The shared clock of a machine whose every vCPU is idle (cosim/vcpu/idle.py): raise it to `target`
 * unless it is already there, atomically against the block hooks' adds and other idle vCPUs' raises
 * (a plain store could undo an add: time would run backwards). Returns the ticks added. */
static PyObject *raise_clock(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *addr;
    unsigned long long target;
    if (!PyArg_ParseTuple(args, "OK", &addr, &target))
        return NULL;
    uint64_t *clock = (uint64_t *)PyLong_AsVoidPtr(addr);
    if (clock == NULL)
        return PyErr_Occurred() ? NULL : PyLong_FromLong(0);
    uint64_t now = __atomic_load_n(clock, __ATOMIC_SEQ_CST);
    while (now < target) {
        if (__atomic_compare_exchange_n(clock, &now, (uint64_t)target, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
            return PyLong_FromUnsignedLongLong(target - now);
    }
    return PyLong_FromLong(0);
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
    {"flush_clock", flush_clock, METH_O,
     "flush_clock(gate address) -> instructions the vCPU had not yet added to the shared clock, now added."},
    {"raise_clock", raise_clock, METH_VARARGS,
     "raise_clock(address, target) -> ticks added: the uint64 there raised to target (atomically) if lower."},
    {"translate", translate, METH_VARARGS,
     "translate(state address, vaddr, access) -> guest-physical address through the guest TLB, or -1."},
    {"tlb_fill_address", tlb_fill_address, METH_NOARGS,
     "Address of the C UC_HOOK_TLB_FILL callback (identity map or the guest TLB walk; execute only for "
     "fetched pages; non-RAM physical pages folded into the MMIO window)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_icount", NULL, -1, methods};

PyMODINIT_FUNC PyInit__icount(void)
{
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && PyModule_AddIntConstant(m, "CLOCK_BATCH", CLOCK_BATCH) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
