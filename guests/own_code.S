# own_code.S -- a stand-alone Book E guest that touches its own code (issue 20): per vCPU it
#   - rewrites `patch_site` once (li r0,1 -> li r0,2, with dcbst/sync/icbi/isync) before its loop;
#   - then ITER times: executes the strategies' breakpoint words as its own instructions
#     (`own_illegal` 0x00dddd00, `own_trap` tw 31,0,0, `own_ehpriv` ehpriv 1; each takes a program
#     interrupt that its own vector counts and skips), executes `patch_site` (counted from r0), and
#     reads its own code word at `read_spot` with lwz (counted when it is not the loaded word);
#   - parks at `done`.
# Per vCPU (PIR < 8), `counts + PIR * 32`: +0 interrupts taken, +4 iterations, +8 the last word read
# at read_spot, +12 reads that were not the loaded word (a planted breakpoint), +16 executions of the
# rewritten patch_site (r0 = 2), +20 executions of the original patch_site (r0 = 1, never: the
# rewrite comes first), +24 0x600d when parked.
        .set IVPR, 63
        .set SPRG6, 278
        .set PIR, 286
        .set ITER, 20
        .set LI_R0_0, 0x38000000
        .set LI_R0_2, 0x38000002

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
        lwz     r21, 0(r20)
        addi    r21, r21, 1
        stw     r21, 0(r20)
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
        slwi    r3, r3, 5
        lis     r30, counts@ha
        addi    r30, r30, counts@l
        add     r30, r30, r3
        mtspr   SPRG6, r30
        lis     r27, patch_site@ha
        addi    r27, r27, patch_site@l
        lis     r4, LI_R0_2@h
        ori     r4, r4, LI_R0_2@l
        stw     r4, 0(r27)                      # the guest rewrites its own code
        dcbst   0, r27
        sync
        icbi    0, r27
        isync
        lis     r28, LI_R0_0@h                  # the word the guest loaded at read_spot
        li      r29, ITER
1:
        .globl own_illegal
own_illegal:
        .long   0x00dddd00
        .globl own_trap
own_trap:
        tw      31, 0, 0
        .globl own_ehpriv
own_ehpriv:
        .long   0x7c000a1c
        .globl patch_site
patch_site:
        li      r0, 1
        cmpwi   r0, 2
        li      r5, 16
        beq     2f
        li      r5, 20
2:      lwzx    r4, r30, r5
        addi    r4, r4, 1
        stwx    r4, r30, r5
        .globl read_spot
read_spot:
        li      r0, 0
        lis     r5, read_spot@ha
        lwz     r6, read_spot@l(r5)             # the guest reads its own code
        stw     r6, 8(r30)
        cmpw    r6, r28
        beq     3f
        lwz     r4, 12(r30)
        addi    r4, r4, 1
        stw     r4, 12(r30)
3:      lwz     r4, 4(r30)
        addi    r4, r4, 1
        stw     r4, 4(r30)
        addic.  r29, r29, -1
        bne     1b
        li      r4, 0x600d
        stw     r4, 24(r30)
        .globl done
done:
        b       done

        .bss
        .balign 32
        .globl counts
counts:
        .space  8 * 32
