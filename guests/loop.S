# loop.S -- the speed benchmark: main(pir) calls bp_target cfg_iterations times, counting cnt_iter.
# loop_body_start .. loop_body_end brackets the loop body (the second label is the first
# instruction after the loop).

        .include "kernel.inc"

        .text
        .globl main
        .type main, @function
main:                                           # r3 = pir; returns r3 = 0
        PROLOGUE 30, 16
        slwi    r31, r3, PERCPU_SHIFT
        PCPU_ADDR r31, cnt_iter, r31            # r31 = &cnt_iter[pir]
        lis     r30, cfg_iterations@ha
        lwz     r30, cfg_iterations@l(r30)      # r30 = iterations left
        cmplwi  r30, 0
        beq     loop_body_end
        .globl loop_body_start
loop_body_start:
        bl      bp_target
        lwz     r4, 0(r31)
        addi    r4, r4, 1
        stw     r4, 0(r31)
        subic.  r30, r30, 1
        bne     loop_body_start
        .globl loop_body_end
loop_body_end:
        li      r3, EXIT_OK
        EPILOGUE 30, 16
        .size main, . - main

        BP_TARGET bp_target
