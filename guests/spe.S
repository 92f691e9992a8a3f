# spe.S -- a stand-alone Book E guest that runs an SPE instruction (issue 20): `evaddw r5,r3,r4` at
# `spe_off` with MSR[SPE] = 0, then at `spe_on` with MSR[SPE] = 1, and parks at `done`.
# e500v2 (SPE): spe_off takes the SPE unavailable interrupt (IVOR32, ESR[SPV]); spe_on runs (r5 = 12).
# e500mc (no SPE): both take an illegal-instruction program interrupt (IVOR6, ESR[PIL]).
# Its vectors count and skip the instruction. Per vCPU (PIR < 8), `counts + PIR * 32`: +0 SPE
# unavailable interrupts, +4 program interrupts, +8 the last ESR, +12 r5 after spe_on (0xffffffff
# when it did not run), +16 0x600d when parked.
        .set IVPR, 63
        .set ESR, 62
        .set SPRG6, 278
        .set PIR, 286
        .set MSR_SPE, 0x02000000

        .section .vectors, "ax"
        .globl _vectors
_vectors:
        .globl _start
_start:
        b       setup

        .balign 16
on_spe:                                         # IVOR32: count at +0
        mfspr   r20, SPRG6
        lwz     r21, 0(r20)
        b       skip
        .balign 16
on_program:                                     # IVOR6: count at +4
        mfspr   r20, SPRG6
        addi    r20, r20, 4
        lwz     r21, 0(r20)
skip:   addi    r21, r21, 1
        stw     r21, 0(r20)
        mfspr   r20, SPRG6
        mfspr   r21, ESR
        stw     r21, 8(r20)
        mfspr   r21, 26
        addi    r21, r21, 4
        mtspr   26, r21
        rfi
        .balign 16
on_other:
        b       on_other

        .text
setup:
        lis     r3, _vectors@h
        mtspr   IVPR, r3
        li      r3, on_other@l
        .irp n, 400, 401, 402, 403, 404, 405, 407, 408, 409, 410, 411, 412, 413, 414, 415, 529, 530, 531
        mtspr   \n, r3
        .endr
        li      r3, on_program@l
        mtspr   406, r3
        li      r3, on_spe@l
        mtspr   528, r3
        mfspr   r3, PIR
        andi.   r3, r3, 7
        slwi    r3, r3, 5
        lis     r30, counts@ha
        addi    r30, r30, counts@l
        add     r30, r30, r3
        mtspr   SPRG6, r30
        li      r3, 5
        li      r4, 7
        li      r5, -1
        .globl spe_off
spe_off:
        .long   0x10a32200                      # evaddw r5, r3, r4
        lis     r6, MSR_SPE@h
        mtmsr   r6
        isync
        li      r5, -1
        .globl spe_on
spe_on:
        .long   0x10a32200                      # evaddw r5, r3, r4
        stw     r5, 12(r30)
        li      r4, 0x600d
        stw     r4, 16(r30)
        .globl done
done:
        b       done

        .bss
        .balign 32
        .globl counts
counts:
        .space  8 * 32
