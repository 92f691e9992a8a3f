# dec_step.S -- a stand-alone guest with its decrementer armed (issue 21): the decrementer expires
# while MSR[EE] = 0, so at `bp_site` (wrteei 1) its interrupt is pending and becomes deliverable by that
# very instruction. Run free, the interrupt is taken right after it (SRR0 = after_site); a debugger's
# single step over `bp_site` decides, by its flags, whether the step stops at `after_site` (interrupts
# held during a step: QEMU's default) or at the first instruction of `on_dec` (Qqemu.sstep=0x1).
# `ticks` counts decrementer interrupts, `srr0_seen` keeps the last SRR0 (4 words per vCPU < 8).
        .set IVPR, 63
        .set DEC, 22
        .set TSR, 336
        .set TCR, 340
        .set SRR0, 26
        .set PIR, 286
        .set TSR_DIS, 0x0800
        .set TCR_DIE, 0x0400

        .section .vectors, "ax"
        .globl _vectors
_vectors:
        .globl _start
_start:
        b       setup
        .balign 16
        .globl on_dec
on_dec:                                         # IVOR10
        lis     r20, TSR_DIS
        mtspr   TSR, r20                        # write one to clear: the interrupt is served
        addi    r6, r6, 1
        mfspr   r21, SRR0
        lis     r22, ticks@ha
        addi    r22, r22, ticks@l
        stw     r6, 0(r22)
        stw     r21, 4(r22)
        rfi
        .balign 16
on_other:
        b       on_other

        .text
setup:
        lis     r3, _vectors@h
        mtspr   IVPR, r3
        li      r3, on_other@l
        .irp n, 400, 401, 402, 403, 404, 405, 406, 407, 408, 409, 411, 412, 413, 414, 415
        mtspr   \n, r3
        .endr
        li      r3, on_dec@l
        mtspr   410, r3
        li      r6, 0
        li      r3, 5
        mtspr   DEC, r3                         # expires after 5 time-base ticks (instructions)
        lis     r3, TCR_DIE
        mtspr   TCR, r3
        .rept 16
        nop                                     # ... it has: TSR[DIS] pending, MSR[EE] = 0
        .endr
        .globl bp_site
bp_site:
        wrteei  1
        .globl after_site
after_site:
        addi    r4, r4, 1
        addi    r4, r4, 1
        .globl done
done:
        b       done

        .data
        .balign 16
        .globl ticks
ticks:
        .space 16
