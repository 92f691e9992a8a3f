# dec_same.S -- a stand-alone guest whose decrementer expires, with MSR[EE] = 1, on one known instruction
# (issue 21 item 3): DEC is written with 8 after interrupts are enabled, so in a free run the interrupt
# is taken before `tick_site` executes (SRR0 = tick_site). A breakpoint on `tick_site` and the expiry
# then fall on the same instruction: the hit must reach the debugger once, the interrupt the guest once.
# `ticks` counts decrementer interrupts, `ticks + 4` keeps the last SRR0, `ticks + 8` counts how many
# times tick_site itself ran (a double execution would show).
        .set IVPR, 63
        .set DEC, 22
        .set TSR, 336
        .set TCR, 340
        .set SRR0, 26
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
        lis     r22, ticks@ha
        addi    r22, r22, ticks@l
        li      r6, 0
        li      r7, 0
        lis     r3, TCR_DIE
        mtspr   TCR, r3
        wrteei  1                               # interrupts on before the decrementer is armed
        li      r3, 8
        mtspr   DEC, r3                         # expires 8 time-base ticks (instructions) from here
        nop
        nop
        nop
        nop
        nop
        nop
        nop
        .globl before_tick
before_tick:
        nop
        .globl tick_site
tick_site:
        addi    r7, r7, 1                       # the instruction the interrupt is taken before
        .globl after_tick
after_tick:
        stw     r7, 8(r22)
        addi    r4, r4, 1
        .globl done
done:
        b       done

        .data
        .balign 16
        .globl ticks
ticks:
        .space 16
