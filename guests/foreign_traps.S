# foreign_traps.S -- a small stand-alone Book E guest written as an outside user would: its own
# IVPR/IVORs and vectors, no mini kernel, no project symbols. It takes interrupts of its own, records
# each one in memory, and parks at `done` (a scenario ends it there with `[guest] until = "done"`).
#
# Every vCPU (PIR < 8) uses the record at `records + PIR * 0x100` (words):
#   +0  program interrupts taken      +4  system calls taken      +8  loop iterations completed
#   +12 last program SRR0             +16 last program ESR        +20 last system call SRR0
#   +24 sum of the loop index over the iterations with a trap     +28 0x600d when parked at `done`
#   +32 log: SRR0 of the first 16 interrupts (program and syscall alike)
# The loop runs ITER times: `trap_site` (twnei) fires on odd iterations, `sc_site` is a system call
# every iteration, and `ill_site`, an illegal word, runs on the last iteration only. The program
# handler resumes after the faulting instruction; the syscall handler returns to SRR0 (= sc_site + 4,
# labelled `sc_return`).
        .set SRR0, 26
        .set SRR1, 27
        .set ESR, 62
        .set IVPR, 63
        .set SPRG4, 276
        .set SPRG5, 277
        .set SPRG6, 278
        .set PIR, 286
        .set ITER, 6
        .set STRIDE, 0x100

        .section .vectors, "ax"
        .globl _vectors
_vectors:
        .globl _start
_start:
        b       setup

        .balign 16
        .globl on_program
on_program:
        mtspr   SPRG4, r20
        mtspr   SPRG5, r21
        mfspr   r20, SPRG6                      # this vCPU's record
        lwz     r21, 0(r20)
        addi    r21, r21, 1
        stw     r21, 0(r20)
        mfspr   r21, SRR0
        stw     r21, 12(r20)
        bl      log_srr0
        mfspr   r21, ESR
        stw     r21, 16(r20)
        mfspr   r21, SRR0
        addi    r21, r21, 4                     # past the instruction
        mtspr   SRR0, r21
        mfspr   r21, SPRG5
        mfspr   r20, SPRG4
        rfi

        .balign 16
        .globl on_syscall
on_syscall:
        mtspr   SPRG4, r20
        mtspr   SPRG5, r21
        mfspr   r20, SPRG6
        lwz     r21, 4(r20)
        addi    r21, r21, 1
        stw     r21, 4(r20)
        mfspr   r21, SRR0
        stw     r21, 20(r20)
        bl      log_srr0
        mfspr   r21, SPRG5
        mfspr   r20, SPRG4
        rfi

        .balign 16
        .globl on_other
on_other:                                       # not expected: park with a marker
        li      r3, 0x0bad
        b       .

# log_srr0: log[(n_program + n_syscall - 1) % 16] = SRR0 (r20 = record; clobbers r21, r22, LR ok:
# the guest's own code never relies on LR across an interrupt)
log_srr0:
        mtspr   SPRG4 + 3, r22                  # SPRG7
        lwz     r21, 0(r20)
        lwz     r22, 4(r20)
        add     r21, r21, r22
        addi    r21, r21, -1
        andi.   r21, r21, 15
        slwi    r21, r21, 2
        add     r21, r21, r20
        mfspr   r22, SRR0
        stw     r22, 32(r21)
        mfspr   r22, SPRG4 + 3
        blr

        .text
setup:
        lis     r3, _vectors@h
        mtspr   IVPR, r3
        li      r3, on_other@l
        .irp n, 400, 401, 402, 403, 404, 405, 407, 409, 410, 411, 412, 413, 414, 415
        mtspr   \n, r3
        .endr
        li      r3, on_program@l
        mtspr   406, r3
        li      r3, on_syscall@l
        mtspr   408, r3
        mfspr   r3, PIR
        andi.   r3, r3, 7
        slwi    r3, r3, 8
        lis     r4, records@ha
        addi    r4, r4, records@l
        add     r30, r4, r3                     # r30 = record (kept across the loop)
        mtspr   SPRG6, r30
        li      r29, 0                          # i
        li      r27, 0                          # sum of odd i
loop:
        andi.   r28, r29, 1
        beq     1f
        add     r27, r27, r29
1:
        .globl trap_site
trap_site:
        twnei   r28, 0
        .globl sc_site
sc_site:
        sc
        .globl sc_return
sc_return:
        cmpwi   r29, ITER - 1
        bne     2f
        .globl ill_site
ill_site:
        .long   0                               # an illegal word of the guest's own
2:
        addi    r29, r29, 1
        stw     r29, 8(r30)
        cmpwi   r29, ITER
        blt     loop
        stw     r27, 24(r30)
        li      r3, 0x600d
        stw     r3, 28(r30)
        .globl done
done:
        b       done

        .bss
        .balign 16
        .globl records
records:
        .space  8 * STRIDE
