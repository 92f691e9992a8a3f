# warn_storm.S -- guest-owned traps interleaved with breakpoint targets.
# Per iteration: 3 WARN_ON sites that fire, 1 WARN_ON and 1 BUG_ON that never fire, calls to
# bp_target_a and bp_target_b in between. Totals: cnt_warn[pir] = cfg_iterations * warns_per_iter,
# cnt_hits[pir] = 2 * cfg_iterations, cnt_iter[pir] = cfg_iterations.

        .include "kernel.inc"

        .section .rodata
        .globl warns_per_iter                   # ONE word: WARN_ON sites that fire per iteration
        .type warns_per_iter, @object
        .balign 4
warns_per_iter:
        .long 3
        .size warns_per_iter, 4

        .text
        .globl main
        .type main, @function
main:                                           # r3 = pir; returns r3 = 0
        PROLOGUE 27, 32
        slwi    r31, r3, PERCPU_SHIFT
        PCPU_ADDR r31, cnt_iter, r31            # r31 = &cnt_iter[pir]  (never 0)
        lis     r30, cfg_iterations@ha
        lwz     r30, cfg_iterations@l(r30)      # r30 = iterations left
        li      r29, 1                          # r29 = 1: fires
        li      r28, 0                          # r28 = 0: never fires
        li      r27, 0                          # r27 = iteration number (1, 2, ...)
        cmplwi  r30, 0
        beq     2f
1:      addi    r27, r27, 1
        WARN_ON r29                             # fires
        bl      bp_target_a
        WARN_ON r28                             # does not fire
        WARN_ON r27                             # fires (iteration number != 0)
        BUG_ON  r28                             # does not fire
        bl      bp_target_b
        WARN_ON r31                             # fires (a non-null pointer)
        lwz     r4, 0(r31)
        addi    r4, r4, 1
        stw     r4, 0(r31)
        subic.  r30, r30, 1
        bne     1b
2:      li      r3, EXIT_OK
        EPILOGUE 27, 32
        .size main, . - main

        BP_TARGET bp_target_a
        BP_TARGET bp_target_b
