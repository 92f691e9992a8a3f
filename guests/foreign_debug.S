# foreign_debug.S -- a stand-alone Book E guest that switches its own MSR[DE] (E.HV's MSRP[DEP]
# test): it calls `spot` ITER times with MSR[DE] = 1, then ITER times with MSR[DE] = 0, and parks at
# `done`. Its own vectors record any interrupt (none is expected: it never enables a debug event of
# its own, DBCR0 stays 0). A host breakpoint at `spot` is hit 2*ITER times when the host owns MSR[DE]
# (MSRP[DEP] = 1) and ITER times when the guest does (MSRP[DEP] = 0).
# Per vCPU (PIR < 8), `counts + PIR * 16`: +0 calls with DE on, +4 calls with DE off, +8 interrupts
# taken, +12 MSR as read back after setting DE.
        .set IVPR, 63
        .set SPRG6, 278
        .set PIR, 286
        .set MSR_DE, 0x200
        .set ITER, 5

        .section .vectors, "ax"
        .globl _vectors
_vectors:
        .globl _start
_start:
        b       setup

        .balign 16
        .globl on_any
on_any:                                         # count it and resume after the instruction
        mfspr   r20, SPRG6
        lwz     r21, 8(r20)
        addi    r21, r21, 1
        stw     r21, 8(r20)
        mfspr   r21, 26
        addi    r21, r21, 4
        mtspr   26, r21
        rfi

        .text
setup:
        lis     r3, _vectors@h
        mtspr   IVPR, r3
        li      r3, on_any@l
        .irp n, 400, 401, 402, 403, 404, 405, 406, 407, 408, 409, 410, 411, 412, 413, 414, 415
        mtspr   \n, r3
        .endr
        mfspr   r3, PIR
        andi.   r3, r3, 7
        slwi    r3, r3, 4
        lis     r30, counts@ha
        addi    r30, r30, counts@l
        add     r30, r30, r3
        mtspr   SPRG6, r30
        li      r3, MSR_DE
        mtmsr   r3
        isync
        mfmsr   r3
        stw     r3, 12(r30)
        li      r31, 0                          # offset of the counter `spot` bumps
        li      r29, ITER
1:      bl      spot
        addic.  r29, r29, -1
        bne     1b
        li      r3, 0
        mtmsr   r3                              # MSR[DE] = 0
        isync
        li      r31, 4
        li      r29, ITER
2:      bl      spot
        addic.  r29, r29, -1
        bne     2b
        .globl done
done:
        b       done

        .globl spot
spot:
        lwzx    r4, r30, r31
        addi    r4, r4, 1
        stwx    r4, r30, r31
        blr

        .bss
        .balign 16
        .globl counts
counts:
        .space  8 * 16
