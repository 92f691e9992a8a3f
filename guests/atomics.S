# atomics.S -- SMP atomics across vCPUs: every vCPU, per iteration,
#   bl bp_target;
#   atomic_counter += 1 with lwarx/addi/stwcx./bne- (atomic_inc_site);
#   takes spin_lock (lwarx/cmpwi/stwcx., at lock_site), checks guarded_a == guarded_b (else
#   cnt_mismatch[pir] += 1: the lock let two vCPUs in), adds 1 to both with plain loads and stores,
#   releases the lock (msync; stw 0);
#   cnt_iter[pir] += 1.
# After N = cfg_iterations on V vCPUs: atomic_counter = guarded_a = guarded_b = V * N, spin_lock = 0,
# per vCPU cnt_iter = cnt_hits = N and cnt_mismatch = 0. A stwcx. that is not atomic across vCPUs
# loses increments of atomic_counter and lets the lock tear the guarded pair.

        .include "kernel.inc"

        .bss
        .balign 64
        .globl atomic_counter                   # shared: one word, its own cache line
        .type atomic_counter, @object
atomic_counter:
        .space 64
        .size atomic_counter, 64
        .globl spin_lock                        # shared: 0 = free, 1 = held
        .type spin_lock, @object
spin_lock:
        .space 64
        .size spin_lock, 64
        .globl guarded_a                        # shared, updated only under spin_lock
        .type guarded_a, @object
guarded_a:
        .space 4
        .size guarded_a, 4
        .globl guarded_b
        .type guarded_b, @object
guarded_b:
        .space 60
        .size guarded_b, 60

        .text
        .globl main
        .type main, @function
main:                                           # r3 = pir; returns r3 = 0
        PROLOGUE 25, 48
        slwi    r28, r3, PERCPU_SHIFT           # r28 = pir << PERCPU_SHIFT
        LOAD_ADDR r31, atomic_counter
        LOAD_ADDR r30, spin_lock
        LOAD_ADDR r27, guarded_a
        lis     r29, cfg_iterations@ha
        lwz     r29, cfg_iterations@l(r29)      # r29 = iterations left
        cmplwi  r29, 0
        beq     9f
1:      bl      bp_target
        .globl atomic_inc_site
atomic_inc_site:
        lwarx   r4, 0, r31
        addi    r4, r4, 1
        stwcx.  r4, 0, r31
        bne-    atomic_inc_site
        .globl lock_site
lock_site:
        lwarx   r4, 0, r30
        cmpwi   r4, 0
        bne-    lock_site
        li      r4, 1
        stwcx.  r4, 0, r30
        bne-    lock_site
        isync
        lwz     r5, 0(r27)                      # guarded_a
        lwz     r6, 4(r27)                      # guarded_b
        cmpw    r5, r6
        beq     2f
        PCPU_INC cnt_mismatch, r28, r7, r8
2:      addi    r5, r5, 1
        stw     r5, 0(r27)
        addi    r6, r6, 1
        stw     r6, 4(r27)
        msync
        li      r4, 0
        stw     r4, 0(r30)                      # unlock
        PCPU_INC cnt_iter, r28, r7, r8
        subic.  r29, r29, 1
        bne     1b
9:      li      r3, EXIT_OK
        EPILOGUE 25, 48
        .size main, . - main

        BP_TARGET bp_target
