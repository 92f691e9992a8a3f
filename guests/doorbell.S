# doorbell.S -- a stand-alone e500mc SMP guest of processor doorbells (msgsnd/msgclr, IVOR36/37), the
# inter-processor interrupts Linux uses on e500mc (doorbell_global_ipi). vCPU 0 sends, the others wait
# (`wait` with MSR[EE|CE] on) and count what they take. Per vCPU at `area + PIR * 0x100`:
#   +0  doorbells taken (IVOR36)          +4  SRR0 of the last one
#   +8  critical doorbells (IVOR37)       +12 CSRR0 of the last one
#   +16 program interrupts (IVOR6)        +20 ESR of the last one (e500v2: msgsnd is illegal, ESR[PIL])
# vCPU 0 also tests on itself: a doorbell sent with MSR[EE] = 0 and cleared by msgclr is never taken
# (+24 = its count after wrteei 1: 0); one sent and left pending is taken at the instruction after the
# wrteei 1 (`self_taken`). Then `rounds` doorbells to PIR 1, each waited for; one broadcast (every vCPU,
# itself included); one critical doorbell to PIR 1; `finished` = 1 and a last broadcast. PIR 1 goes to
# `done` when it has taken rounds + 2 doorbells (each was sent after it took the one before); the others
# when they wake and see `finished`: a doorbell is one pending bit, so the two broadcasts are one interrupt
# to a vCPU that had not taken the first when the second came (1 or 2 taken). A doorbell taken between a
# waiter's check and its `wait` returns past the `wait` (as Linux's _TLF_NAPPING does), so no wake-up is
# lost. On e500v2 msgsnd, msgclr and wait are illegal: run it on one vCPU to `self_taken` (three program
# interrupts).
        .set IVPR, 63
        .set SRR0, 26
        .set SRR1, 27
        .set CSRR0, 58
        .set ESR, 62
        .set PIR, 286
        .set IVOR36, 532
        .set IVOR37, 533
        .set DBELL_CRIT, 0x08000000             # type 1 << 27
        .set BRDCAST, 0x04000000

        .section .vectors, "ax"
        .globl _vectors
_vectors:
        .globl _start
_start:
        b       setup
        .balign 16
        .globl on_dbell
on_dbell:                                       # IVOR36
        lwz     r20, 0(r24)
        addi    r20, r20, 1
        stw     r20, 0(r24)
        mfspr   r20, SRR0
        stw     r20, 4(r24)
        cmpw    r20, r26
        bne     1f
        addi    r20, r20, 4                     # about to wait: return past it
        mtspr   SRR0, r20
1:      rfi
        .balign 16
        .globl on_cdbell
on_cdbell:                                      # IVOR37
        lwz     r21, 8(r24)
        addi    r21, r21, 1
        stw     r21, 8(r24)
        mfspr   r21, CSRR0
        stw     r21, 12(r24)
        rfci
        .balign 16
        .globl on_prog
on_prog:                                        # IVOR6: count, note ESR, skip the instruction
        lwz     r22, 16(r24)
        addi    r22, r22, 1
        stw     r22, 16(r24)
        mfspr   r22, ESR
        stw     r22, 20(r24)
        mfspr   r22, SRR0
        addi    r22, r22, 4
        mtspr   SRR0, r22
        rfi
        .balign 16
on_other:
        b       on_other

        .text
setup:
        lis     r3, _vectors@h
        mtspr   IVPR, r3
        li      r3, on_other@l
        .irp n, 400, 401, 402, 403, 404, 405, 407, 408, 409, 410, 411, 412, 413, 414, 415
        mtspr   \n, r3
        .endr
        li      r3, on_prog@l
        mtspr   406, r3
        li      r3, on_dbell@l
        mtspr   IVOR36, r3
        li      r3, on_cdbell@l
        mtspr   IVOR37, r3
        mfspr   r28, PIR                        # me
        lis     r24, area@ha
        addi    r24, r24, area@l
        slwi    r3, r28, 8
        add     r24, r24, r3                    # my record
        lis     r26, waiting@ha
        addi    r26, r26, waiting@l
        cmpwi   r28, 0
        beq     sender

waiter:                                         # every vCPU but 0
        lis     r3, 0x0002                      # MSR[CE]
        ori     r3, r3, 0x8000                  # MSR[EE]
        mtmsr   r3
        lis     r3, ready@ha
        li      r4, 1
        stw     r4, ready@l(r3)                 # (PIR 1 says it is listening)
        lis     r3, rounds@ha
        lwz     r29, rounds@l(r3)
        addi    r29, r29, 2                     # PIR 1: the doorbells to take
        lis     r27, finished@ha
        addi    r27, r27, finished@l
1:      cmpwi   r28, 1
        bne     2f
        lwz     r3, 0(r24)
        cmpw    r3, r29
        bge     done
        b       3f
2:      lwz     r3, 0(r27)                      # the others: until `finished`
        cmpwi   r3, 0
        bne     done
3:
        .globl waiting
waiting:
        wait
        b       1b

sender:
        wrteei  0
        li      r3, 0                           # to PIR 0: myself
        msgsnd  r3
        msgclr  r3                              # ... cleared before it could be taken
        wrteei  1
        .globl self_cleared
self_cleared:
        lwz     r5, 0(r24)
        stw     r5, 24(r24)                     # 0: the cleared one never came
        wrteei  0
        msgsnd  r3                              # pending now
        wrteei  1                               # taken here: SRR0 = self_taken
        .globl self_taken
self_taken:
        nop
        lis     r3, ready@ha
2:      lwz     r4, ready@l(r3)                 # PIR 1 listening
        cmpwi   r4, 0
        beq     2b
        lis     r3, rounds@ha
        lwz     r30, rounds@l(r3)
        li      r31, 0
3:      addi    r31, r31, 1
        li      r3, 1                           # to PIR 1
        msgsnd  r3
4:      lwz     r4, 0x100(r24)                  # until PIR 1 counted it
        cmpw    r4, r31
        blt     4b
        cmpw    r31, r30
        blt     3b
        lis     r3, BRDCAST@h                   # to everyone
        msgsnd  r3
5:      lwz     r4, 0x100(r24)
        cmpw    r4, r31
        beq     5b                              # PIR 1 took the broadcast too
        lis     r3, DBELL_CRIT@h
        ori     r3, r3, 1                       # critical, to PIR 1
        msgsnd  r3
6:      lwz     r4, 0x108(r24)
        cmpwi   r4, 0
        beq     6b
        lis     r3, finished@ha
        li      r4, 1
        stw     r4, finished@l(r3)
        lis     r3, BRDCAST@h
        msgsnd  r3                              # the last broadcast
        .globl done
done:
        b       done

        .data
        .balign 16
        .globl rounds
rounds:
        .long   10
        .globl ready
ready:
        .long   0
        .globl finished
finished:
        .long   0
        .balign 256
        .globl area
area:
        .space  0x400                           # 4 vCPUs x 0x100
