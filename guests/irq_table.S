# irq_table.S -- a stand-alone Book E guest (no mini kernel) that executes one of each interrupting
# instruction and records, in its own memory, every interrupt it takes.
#
# Written independently of kernel.S/kernel.inc, as a user of the harness would: its own IVPR/IVORs and
# vectors, its own per-vCPU bookkeeping, no project counter symbols. Linked alone by guest.ld.
#
# Per vCPU (PIR < 4), irq_area + PIR * AREA:
#   +0          total interrupts taken
#   +4 + 4*n    interrupts taken through IVOR n (n < 16; 99 = any other vector, at +4 + 4*16)
#   +RES + 4*i  ESR as read by `site_mfspr` in iteration i
#   +LOG + 16*k log entry k (k = total % 64): IVOR number, SRR0, ESR, SRR1 at entry
# Each of ITER iterations runs, in supervisor state unless noted:
#   site_twi    twnei r29,0     fires on odd iterations (a WARN_ON-style trap)
#   site_tw     tweq r29,r28    fires on even iterations
#   site_sc     sc              system call (handler returns after it)
#   site_mfspr  mfspr r20,ESR   privileged: emulated under e500v2 (KVM PR), native on e500mc
#   site_illegal .long 0        an illegal word of the guest's own (program interrupt, ESR[PIL])
#   site_rfi    rfi             to problem state at user_part
#   site_user_priv mfmsr r20    privileged in problem state: program interrupt, ESR[PPR]
#   site_user_sc sc             back to supervisor state (the handler clears SRR1[PR])
# The program handler resumes after the faulting instruction (SRR0 + 4). At the end the guest halts
# with the ePAPR hypercall (r11 = 1, r3 = 0, sc 1) and parks in a loop if that ever returns.
# Entered at `_start_fault` instead of `_start`, it ends with `site_load`, a load outside RAM.

        .set SPRG0, 272
        .set SPRG1, 273
        .set SPRG2, 274
        .set SPRG3, 275
        .set SRR0, 26
        .set SRR1, 27
        .set ESR, 62
        .set IVPR, 63
        .set PIR, 286
        .set AREA, 0x800
        .set RES, 0x100
        .set LOG, 0x400
        .set ITER, 8
        .set MAXCPU, 4

# ---- vectors --------------------------------------------------------------------------------------
        .macro ENTER ivor
        mtspr   SPRG0, r10
        mtspr   SPRG1, r11
        mtspr   SPRG2, r12
        mfspr   r10, SPRG3
        lwz     r11, 4 + 4 * \ivor(r10)
        addi    r11, r11, 1
        stw     r11, 4 + 4 * \ivor(r10)
        lwz     r11, 0(r10)
        addi    r12, r11, 1
        stw     r12, 0(r10)
        rlwinm  r11, r11, 4, 22, 27             # (total % 64) * 16
        add     r11, r11, r10
        li      r12, \ivor
        stw     r12, LOG(r11)
        mfspr   r12, SRR0
        stw     r12, LOG + 4(r11)
        mfspr   r12, ESR
        stw     r12, LOG + 8(r11)
        mfspr   r12, SRR1
        stw     r12, LOG + 12(r11)
        .endm

        .macro LEAVE
        mfspr   r12, SPRG2
        mfspr   r11, SPRG1
        mfspr   r10, SPRG0
        rfi
        .endm

        .section .vectors, "ax"
        .globl _vectors
_vectors:
        .globl _start
_start:
        li      r25, 0
        b       boot
        .globl _start_fault
_start_fault:
        li      r25, 1
        b       boot

        .balign 16
        .globl irq_program
irq_program:                                    # IVOR6: record, resume after the instruction
        ENTER   6
        mfspr   r11, SRR0
        addi    r11, r11, 4
        mtspr   SRR0, r11
        LEAVE

        .balign 16
        .globl irq_syscall
irq_syscall:                                    # IVOR8: record, return in supervisor state
        ENTER   8
        mfspr   r11, SRR1
        rlwinm  r11, r11, 0, 18, 16             # clear MSR[PR]
        mtspr   SRR1, r11
        LEAVE

        .balign 16
        .globl irq_other
irq_other:                                      # any other vector: record and halt (0xdead)
        ENTER   16
        li      r3, 0
        ori     r3, r3, 0xdead
        li      r11, 1
        sc      1
        b       .

# ---- boot and the table ---------------------------------------------------------------------------
        .text
boot:
        lis     r10, _vectors@h
        mtspr   IVPR, r10
        li      r10, irq_other@l
        mtspr   400, r10                        # IVOR0..15 (6 and 8 set below)
        mtspr   401, r10
        mtspr   402, r10
        mtspr   403, r10
        mtspr   404, r10
        mtspr   405, r10
        mtspr   407, r10
        mtspr   409, r10
        mtspr   410, r10
        mtspr   411, r10
        mtspr   412, r10
        mtspr   413, r10
        mtspr   414, r10
        mtspr   415, r10
        li      r10, irq_program@l
        mtspr   406, r10
        li      r10, irq_syscall@l
        mtspr   408, r10
        mfspr   r10, PIR
        cmplwi  r10, MAXCPU
        blt     1f
        li      r3, 4                           # too many vCPUs for irq_area
        li      r11, 1
        sc      1
1:      slwi    r10, r10, 11                    # * AREA
        lis     r11, irq_area@ha
        addi    r11, r11, irq_area@l
        add     r24, r10, r11
        mtspr   SPRG3, r24
        li      r10, 0x1000                     # MSR[ME]
        mtmsr   r10
        isync
        li      r30, 0
iter:
        andi.   r29, r30, 1
        li      r28, 0
        .globl site_twi
site_twi:
        twnei   r29, 0
        .globl site_tw
site_tw:
        tweq    r29, r28
        .globl site_sc
site_sc:
        sc
        .globl site_mfspr
site_mfspr:
        mfspr   r20, ESR
        slwi    r11, r30, 2
        add     r11, r11, r24
        stw     r20, RES(r11)
        .globl site_illegal
site_illegal:
        .long   0
        lis     r11, user_part@h
        ori     r11, r11, user_part@l
        mtspr   SRR0, r11
        mfmsr   r11
        ori     r11, r11, 0x4000                # MSR[PR]
        mtspr   SRR1, r11
        .globl site_rfi
site_rfi:
        rfi
user_part:
        .globl site_user_priv
site_user_priv:
        mfmsr   r20
        .globl site_user_sc
site_user_sc:
        sc
        addi    r30, r30, 1
        cmpwi   r30, ITER
        blt     iter
        cmpwi   r25, 0
        beq     done
        lis     r11, 0xf000
        .globl site_load
site_load:
        lwz     r20, 0(r11)                     # outside RAM
done:
        li      r3, 0
        li      r11, 1
        sc      1
park:
        b       park

        .bss
        .balign 16
        .globl irq_area
irq_area:
        .space  MAXCPU * AREA
