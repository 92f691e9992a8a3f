/* The baton's shared block and hand-over protocol in C (cosim/baton.py has the Python side and the
 * layout's description): included by cosim/_baton.c (the Python entry points) and by
 * cosim/vcpu/_icount.c, whose block hook runs a plan's consecutive quanta and passes the turn without
 * returning to Python (issue 22).
 *
 * A vCPU's wait state, `spinning[i]`: 0 not watching `turn` (asleep in its Python poll: a passer wakes
 * it with a byte in its FIFO), 1 spinning on `turn` (sees it by itself), 2 asleep on a futex on its own
 * `spinning` word (a passer or a kick sets 3 and wakes it). Every change of state and every store of
 * `turn` is sequentially consistent, and each side looks at the other's word after storing its own
 * (Dekker): either the waiter sees the turn, or the passer sees the waiter's state and wakes it. */
#ifndef COSIM_BATON_H
#define COSIM_BATON_H

#include <errno.h>
#include <linux/futex.h>
#include <sched.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define BATON_NONE (-1)
#define BATON_MAX_VCPUS 64
enum { WAIT_OFF = 0, WAIT_SPIN = 1, WAIT_SLEEP = 2, WAIT_WOKEN = 3 };

typedef struct {                    /* baton.py HEADER */
    uint64_t seq, vtime;
    int64_t next_due, due_synced;
    uint32_t length, index;
    int32_t turn;
    uint32_t pad;
} baton_header;

typedef struct { uint32_t vcpu, instructions; } baton_step;   /* baton.py PLAN_STEP */

/* One vCPU's view of the block (baton.py Baton.link): addresses in its own mapping. */
typedef struct {
    baton_header *header;
    uint64_t *counts;
    int32_t *spinning;
    baton_step *plan;
    int64_t own, vcpus;
    uint64_t spin_ns;               /* how long to spin for the turn before sleeping on the futex */
    int64_t fifo[BATON_MAX_VCPUS];  /* each vCPU's FIFO (non-blocking), to wake one asleep in its poll */
} baton_link;

static inline uint64_t baton_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Wake a vCPU asleep on its futex (state 2); any other state is left alone. */
static inline void baton_nudge(int32_t *state)
{
    int32_t sleeping = WAIT_SLEEP;
    if (__atomic_compare_exchange_n(state, &sleeping, WAIT_WOKEN, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
        syscall(SYS_futex, state, FUTEX_WAKE, 1, NULL, NULL, 0);
}

/* The turn is `next`'s now: store it, then wake `next` the way it waits. Returns 1 when `next` waits in
 * its Python poll (the caller writes its FIFO byte), 0 otherwise. */
static inline int baton_pass(baton_link *b, int32_t next)
{
    __atomic_store_n(&b->header->turn, next, __ATOMIC_SEQ_CST);
    int32_t *state = &b->spinning[next];
    int32_t s = __atomic_load_n(state, __ATOMIC_SEQ_CST);
    if (s == WAIT_SLEEP)
        baton_nudge(state);
    return s == WAIT_OFF;
}

/* The run of the plan is over (turn = none): every vCPU asleep on its futex wakes and goes back to its
 * Python loop (the supervisor settles next, and may need its answer). */
static inline void baton_end(baton_link *b)
{
    __atomic_store_n(&b->header->turn, BATON_NONE, __ATOMIC_SEQ_CST);
    for (int64_t i = 0; i < b->vcpus; i++)
        if (i != b->own)
            baton_nudge(&b->spinning[i]);
}

/* After spin_ns of spinning (when there is a host CPU per vCPU), a waiter in the block hook goes on
 * watching with sched_yield() between looks, up to BATON_YIELD_NS, before it sleeps on its futex: a
 * sleeping process's CPU goes idle, and waking it (an inter-processor interrupt; on a virtual machine,
 * through the hypervisor) took long enough to halve a 2-vCPU loop's speed, while a yield costs nothing
 * when nothing else wants the CPU and lets anything that does run. */
#define BATON_YIELD_NS 5000000ull

static inline int baton_over(baton_link *b, uint64_t seq, const uint64_t *stop, int32_t own)
{
    int32_t t = __atomic_load_n(&b->header->turn, __ATOMIC_SEQ_CST);
    return t == own || t == BATON_NONE || __atomic_load_n(&b->header->seq, __ATOMIC_SEQ_CST) != seq
           || __atomic_load_n(stop, __ATOMIC_SEQ_CST);
}

/* While another vCPU holds the turn of plan `seq`: spin up to spin_ns, yield up to BATON_YIELD_NS more,
 * then sleep on the futex (10 ms at a time), until the turn is this vCPU's, the plan is over (turn none,
 * or another plan: a new seq) or *stop (a kick) is set. Returns 1 when the turn of the same plan is this
 * vCPU's. */
static inline int baton_wait(baton_link *b, uint64_t seq, const uint64_t *stop)
{
    int32_t *state = &b->spinning[b->own];
    const int32_t own = (int32_t)b->own;
    __atomic_store_n(state, WAIT_SPIN, __ATOMIC_SEQ_CST);
    uint64_t deadline = baton_now_ns() + b->spin_ns;
    unsigned n = 0;
    for (;;) {
        if (baton_over(b, seq, stop, own))
            goto done;
        __builtin_ia32_pause();
        if ((++n & 63) == 0 && baton_now_ns() >= deadline)
            break;
    }
    if (b->spin_ns) {
        deadline += BATON_YIELD_NS;
        while (!baton_over(b, seq, stop, own)) {
            sched_yield();
            if (baton_now_ns() >= deadline)
                break;
        }
    }
    for (;;) {
        __atomic_store_n(state, WAIT_SLEEP, __ATOMIC_SEQ_CST);
        if (baton_over(b, seq, stop, own))
            break;
        struct timespec ts = {0, 10 * 1000 * 1000};
        syscall(SYS_futex, state, FUTEX_WAIT, WAIT_SLEEP, &ts, NULL, 0);
    }
done:
    __atomic_store_n(state, WAIT_OFF, __ATOMIC_SEQ_CST);
    return __atomic_load_n(&b->header->turn, __ATOMIC_SEQ_CST) == own
           && __atomic_load_n(&b->header->seq, __ATOMIC_SEQ_CST) == seq
           && !__atomic_load_n(stop, __ATOMIC_SEQ_CST);
}

#endif
