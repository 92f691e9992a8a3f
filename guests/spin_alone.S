# spin_alone.S -- a stand-alone SMP guest in which one vCPU spins while the others sleep: vCPU 0 (PIR 0)
# runs a delay loop on the time base (the shape of Linux's udelay and of smp-tbsync's handshakes: one or
# two blocks repeated) until TB >= `delay`, then sets `flag` and parks at `done`. Every other vCPU arms a
# one-shot decrementer of `nap` ticks and sleeps with MSR[WE]|MSR[EE] (as Linux's e500 idle loop does);
# its tick handler returns past the sleep, and it naps again until it sees `flag`, then parks at `done`.
# While the others sleep nobody but vCPU 0 moves the machine's clock: a spinning vCPU alone
# (cosim/vcpu/_icount.c SPIN_BLOCKS). Per vCPU at `area + PIR * 0x100`: delay-loop iterations
# (vCPU 0), ticks taken (the others).
        .set IVPR, 63
        .set DEC, 22
        .set TSR, 336
        .set TCR, 340
        .set SRR0, 26
        .set SRR1, 27
        .set PIR, 286
        .set TSR_DIS, 0x0800
        .set TCR_DIE, 0x0400                    # TCR[DIE], upper half (no auto-reload)
        .set MSR_WE_H, 0x0004                   # MSR[WE], upper half

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
        mfspr   r22, SRR1
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
        lis     r29, flag@ha
        addi    r29, r29, flag@l
        cmpwi   r28, 0
        bne     sleeper
        lis     r3, delay@ha
        lwz     r30, delay@l(r3)
        li      r5, 0
        .globl spin
spin:
        mftb    r4
        addi    r5, r5, 1
        cmplw   r4, r30
        blt     spin                            # (TBU stays 0: delay < 2^32)
        stw     r5, 0(r24)                      # iterations
        li      r3, 1
        stw     r3, 0(r29)                      # flag
        b       done

sleeper:
        lis     r25, after@ha
        addi    r25, r25, after@l               # where the handler returns
        lis     r3, TCR_DIE
        mtspr   TCR, r3
        .globl nap
nap:
        lis     r3, nap_ticks@ha
        lwz     r3, nap_ticks@l(r3)
        mtspr   DEC, r3
        mfmsr   r3
        oris    r3, r3, MSR_WE_H
        ori     r3, r3, 0x8000                  # MSR[EE]
        mtmsr   r3                              # sleep until the tick
        isync
asleep:
        b       asleep
        .globl after
after:
        lwz     r5, 0(r29)
        cmpwi   r5, 0
        beq     nap
        wrteei  0
        .globl done
done:
        b       done

        .data
        .balign 16
        .globl delay
delay:
        .long   2000000
        .globl nap_ticks
nap_ticks:
        .long   1000000
        .globl flag
flag:
        .long   0
        .balign 256
        .globl area
area:
        .space  0x400                           # 4 vCPUs x 0x100
