# dec_smp.S -- a stand-alone SMP guest whose decrementers tick while its vCPUs hand a token back and forth
# (issue 21 item 5). Every vCPU (PIR = its index) arms an auto-reloading decrementer (DECAR = DEC = 997
# time-base ticks) and plays `rounds` rounds of ping-pong on the shared word `turn` with the next vCPU:
# it spins until turn = its PIR, then passes it on. How long each spin lasts depends on how the vCPUs
# were scheduled, so where its ticks land does too: under a seed (the deterministic schedule) the same
# seed must land them on the same instructions. Per vCPU at `area + PIR * 0x100`: decrementer
# interrupts taken, a hash of their SRR0s, the last SRR0, rounds played. Parks at `done`.
        .set IVPR, 63
        .set DEC, 22
        .set DECAR, 54
        .set TSR, 336
        .set TCR, 340
        .set SRR0, 26
        .set PIR, 286
        .set TSR_DIS, 0x0800
        .set TCR_DIE_ARE, 0x0440                # TCR[DIE] | TCR[ARE], upper half
        .set PERIOD, 997

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
        mfspr   r21, SRR0
        lwz     r23, 0(r24)
        addi    r23, r23, 1
        stw     r23, 0(r24)
        lwz     r23, 4(r24)
        rotlwi  r23, r23, 5
        xor     r23, r23, r21
        stw     r23, 4(r24)
        stw     r21, 8(r24)
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
        lis     r27, turn@ha
        addi    r27, r27, turn@l
        lis     r3, nvcpus@ha
        lwz     r29, nvcpus@l(r3)               # how many play
        lis     r3, rounds@ha
        lwz     r30, rounds@l(r3)
        addi    r31, r28, 1                     # next = (me + 1) % nvcpus
        cmpw    r31, r29
        blt     1f
        li      r31, 0
1:      li      r3, PERIOD
        mtspr   DECAR, r3
        mtspr   DEC, r3
        lis     r3, TCR_DIE_ARE
        mtspr   TCR, r3
        wrteei  1
        .globl play
play:
        .globl spin
spin:
        lwz     r5, 0(r27)
        cmpw    r5, r28
        bne     spin                            # not my turn yet
        lwz     r5, 12(r24)
        addi    r5, r5, 1
        stw     r5, 12(r24)                     # a round played
        sync
        stw     r31, 0(r27)                     # pass the token on
        cmpw    r5, r30
        blt     play
        wrteei  0
        .globl done
done:
        b       done

        .data
        .balign 16
        .globl turn
turn:
        .long   0
        .globl nvcpus
nvcpus:
        .long   2                               # the vCPUs that play (the config's machine.vcpus)
        .globl rounds
rounds:
        .long   12
        .balign 256
        .globl area
area:
        .space  0x400                           # 4 vCPUs x 0x100
