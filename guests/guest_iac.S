# guest_iac.S -- the guest uses its own hardware breakpoint (IAC1) on bp_target.
# main: IAC1 = bp_target, DBCR0 = IDM|IAC1, MSR[DE] = 1, then the loop calls bp_target
# cfg_iterations times; afterwards DE and DBCR0 are cleared again.
# debug_hook (called by the kernel's debug handler with r3 = DBSR, after it cleared DBSR):
#   DBSR[IC]   -> DBCR0 |= IAC1, DBCR0 &= ~IC       (stepped past the first instruction: re-arm)
#   DBSR[IAC1] -> DBCR0 &= ~IAC1, DBCR0 |= IC       (hit: step one instruction with IAC1 off)
# so every call of bp_target gives one IAC1 and one IC debug interrupt:
#   cnt_debug[pir] = 2 * cfg_iterations, cnt_hits[pir] = cnt_iter[pir] = cfg_iterations.

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
        LOAD_ADDR r4, bp_target
        mtspr   SPRN_IAC1, r4
        lis     r4, (DBCR0_IDM | DBCR0_IAC1) >> 16
        mtspr   SPRN_DBCR0, r4
        isync
        mfmsr   r4
        ori     r4, r4, MSR_DE
        mtmsr   r4
        isync
        cmplwi  r30, 0
        beq     2f
        .globl loop_body_start
loop_body_start:
1:      bl      bp_target
        lwz     r4, 0(r31)
        addi    r4, r4, 1
        stw     r4, 0(r31)
        subic.  r30, r30, 1
        bne     1b
        .globl loop_body_end
loop_body_end:
2:      mfmsr   r4                              # MSR[DE] = 0, DBCR0 = 0
        li      r5, MSR_DE
        andc    r4, r4, r5
        mtmsr   r4
        isync
        li      r4, 0
        mtspr   SPRN_DBCR0, r4
        isync
        li      r3, EXIT_OK
        EPILOGUE 30, 16
        .size main, . - main

        .globl debug_hook                       # overrides the kernel's weak no-op
        .type debug_hook, @function
debug_hook:                                     # r3 = DBSR; may clobber r0, r3..r12, CR
        andis.  r0, r3, DBSR_IC >> 16
        beq     1f
        mfspr   r4, SPRN_DBCR0                  # single step done: re-arm IAC1, stop stepping
        oris    r4, r4, DBCR0_IAC1 >> 16
        lis     r5, DBCR0_IC >> 16
        andc    r4, r4, r5
        mtspr   SPRN_DBCR0, r4
1:      andis.  r0, r3, DBSR_IAC1 >> 16
        beq     2f
        mfspr   r4, SPRN_DBCR0                  # IAC1 hit: disarm it, step one instruction
        lis     r5, DBCR0_IAC1 >> 16
        andc    r4, r4, r5
        oris    r4, r4, DBCR0_IC >> 16
        mtspr   SPRN_DBCR0, r4
2:      blr
        .size debug_hook, . - debug_hook

        BP_TARGET bp_target
