# idle_smp.S -- a stand-alone SMP guest whose vCPUs sleep between decrementer ticks the way Linux's
# e500 idle loop does: MSR[WE] and MSR[EE] set by mtmsr, then a branch to itself. Every vCPU (PIR = its
# index) arms an auto-reloading decrementer (DECAR = DEC = 100,000 time-base ticks) and naps `naps`
# times; its handler counts the tick, records SRR0 (the instruction after the mtmsr that slept), clears
# MSR[WE] in SRR1 and returns past the sleep (Linux's _TLF_NAPPING does the same). Where MSR[WE] halts
# the vCPU (cosim/vcpu/idle.py) a nap costs a handful of instructions; where it does not, the vCPU spins
# ~100,000 instructions in `asleep` per tick. Per vCPU at `area + PIR * 0x100`: ticks taken, the last
# SRR0, the number of SRR0s that were not `woke`. Parks at `done`.
        .set IVPR, 63
        .set DEC, 22
        .set DECAR, 54
        .set TSR, 336
        .set TCR, 340
        .set SRR0, 26
        .set SRR1, 27
        .set PIR, 286
        .set TSR_DIS, 0x0800
        .set TCR_DIE_ARE, 0x0440                # TCR[DIE] | TCR[ARE], upper half
        .set MSR_WE_H, 0x0004                   # MSR[WE], upper half
        .set PERIOD, 100000

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
        mtspr   TSR, r20
        lwz     r23, 0(r24)
        addi    r23, r23, 1
        stw     r23, 0(r24)                     # a tick
        mfspr   r21, SRR0
        stw     r21, 4(r24)
        cmpw    r21, r26
        beq     1f
        lwz     r23, 8(r24)
        addi    r23, r23, 1
        stw     r23, 8(r24)                     # woken somewhere else than after the sleep
1:      mfspr   r22, SRR1
        rlwinm  r22, r22, 0, 14, 12             # clear MSR[WE], as Linux's exception prolog does
        mtspr   SRR1, r22
        mtspr   SRR0, r25                       # return past the sleep
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
        mfspr   r28, PIR                        # me
        lis     r24, area@ha
        addi    r24, r24, area@l
        slwi    r3, r28, 8
        add     r24, r24, r3                    # my record
        lis     r25, after@ha
        addi    r25, r25, after@l               # where the handler returns
        lis     r26, woke@ha
        addi    r26, r26, woke@l                # the SRR0 of a tick taken asleep
        lis     r3, naps@ha
        lwz     r30, naps@l(r3)
        lis     r3, PERIOD@h
        ori     r3, r3, PERIOD@l
        mtspr   DECAR, r3
        mtspr   DEC, r3
        lis     r3, TCR_DIE_ARE
        mtspr   TCR, r3
        .globl nap
nap:
        mfmsr   r3
        oris    r3, r3, MSR_WE_H
        ori     r3, r3, 0x8000                  # MSR[EE]
        mtmsr   r3                              # sleep until the tick
        .globl woke
woke:
        isync
        .globl asleep
asleep:
        b       asleep
        .globl after
after:
        lwz     r5, 0(r24)
        cmpw    r5, r30
        blt     nap
        wrteei  0
        .globl done
done:
        b       done

        .data
        .balign 16
        .globl naps
naps:
        .long   20
        .balign 256
        .globl area
area:
        .space  0x400                           # 4 vCPUs x 0x100
