# kernel.S -- the mini guest kernel linked into every guest program.
#
# Boot (_start, all vCPUs at once, MSR = 0): per-vCPU area and stack from PIR, IVPR/IVORs, MSR[ME],
# then `bl main` with r3 = PIR; main's return value is the exit code of the HALT hypercall.
# Interrupt handlers: program (WARN/BUG bookkeeping), system call (count and return), debug (count,
# clear DBSR, call the program's debug_hook), everything else: record and halt with 0xdead.
#
# Register conventions: r1 = stack, r2 = &pcpu_area[pir] (never changed after boot). Handlers save
# what they use in the per-vCPU save area (SPRG3 = &pcpu_area[pir]); SPRG0 is the non-critical
# scratch register, SPRG2 the debug one, so a debug interrupt inside a non-critical handler is safe.

        .include "kernel.inc"

# ==================================================================================================
# Data: counters readable by name (per-vCPU arrays: MAX_VCPUS words, PERCPU_STRIDE bytes apart, unless
# noted; `pcpu_stride` exports the stride to the harness)
# ==================================================================================================
        .macro PERCPU_ARRAY name, fill=0
        .globl \name
        .type \name, @object
        .balign PERCPU_STRIDE
\name:
        .rept MAX_VCPUS
        .long \fill
        .space PERCPU_STRIDE - 4
        .endr
        .size \name, . - \name
        .endm

        .globl pcpu_stride                      # absolute: bytes between two vCPUs' words of an array
        .set pcpu_stride, PERCPU_STRIDE

        .data
        .globl cfg_iterations                   # ONE word: iterations main runs (harness may poke it)
        .type cfg_iterations, @object
        .balign 4
cfg_iterations:
        .long 1000
        .size cfg_iterations, 4

        .section .rodata
        .globl guest_abi_version                # ONE word: version of this symbol/ABI contract
        .type guest_abi_version, @object
        .balign 4
guest_abi_version:
        .long 1
        .size guest_abi_version, 4

        .data
        PERCPU_ARRAY exit_code, 0xffffffff      # code passed to HALT; -1 = not halted through kernel
        PERCPU_ARRAY unexpected_ivor, 0xffffffff # IVOR number of an unexpected interrupt; -1 = none

        .bss
        PERCPU_ARRAY cnt_warn                   # WARNs handled (resumed)
        PERCPU_ARRAY cnt_bug                    # BUGs (halted with EXIT_BUG)
        PERCPU_ARRAY bug_srr0                   # address of the BUG trap
        PERCPU_ARRAY cnt_bad_prog               # program interrupts not in the bug table
        PERCPU_ARRAY bad_prog_srr0              # ... their SRR0
        PERCPU_ARRAY bad_prog_esr               # ... their ESR
        PERCPU_ARRAY cnt_syscall                # system call interrupts (sc, any LEV)
        PERCPU_ARRAY last_sc_srr0               # SRR0 of the last one (= address after the sc)
        PERCPU_ARRAY cnt_debug                  # debug interrupts
        PERCPU_ARRAY last_dbsr                  # DBSR at the last one
        PERCPU_ARRAY last_debug_pc              # CSRR0 (e500v2) / DSRR0 (e500mc) at the last one
        PERCPU_ARRAY unexpected_srr0            # SRR0 at an unexpected interrupt
        PERCPU_ARRAY cnt_iter                   # iterations completed by main
        PERCPU_ARRAY cnt_hits                   # calls into breakpoint targets (counted by them)
        PERCPU_ARRAY cnt_mismatch               # selfcheck: checksum mismatches

        .globl warn_log                         # [MAX_VCPUS][WARN_LOG_LEN] words: SRR0 of each WARN,
        .type warn_log, @object                 # entry cnt_warn[pir] % WARN_LOG_LEN (before the ++)
        .balign 4
warn_log:
        .space MAX_VCPUS * WARN_LOG_LEN * 4
        .size warn_log, . - warn_log

        .globl pcpu_area                        # [MAX_VCPUS][PCPU_SIZE] bytes, see kernel.inc
        .type pcpu_area, @object
        .balign PCPU_SIZE
pcpu_area:
        .space MAX_VCPUS * PCPU_SIZE
        .size pcpu_area, . - pcpu_area

        .globl kernel_stacks                    # [MAX_VCPUS][STACK_SIZE]
        .type kernel_stacks, @object
        .balign 16
kernel_stacks:
        .space MAX_VCPUS * STACK_SIZE
        .size kernel_stacks, . - kernel_stacks

# ==================================================================================================
# Vectors: IVPR = _vectors (64 KiB aligned, see guest.ld), IVORn = offset of the handler below
# ==================================================================================================
        .section .vectors, "ax"
        .globl _vectors
_vectors:

# --- save/restore of everything a handler may touch: r0, r3..r13, CR, LR, CTR, XER ----------------
# On entry r13 is parked in the scratch SPRG, r13 = &pcpu_area[pir]; r12 carries r13 into the area.
        .macro EXC_SAVE area, scratch
        mtspr   \scratch, r13
        mfspr   r13, SPRN_SPRG3
        stw     r12, \area+SV_R3+4*9(r13)
        mfspr   r12, \scratch
        stw     r12, \area+SV_R3+4*10(r13)      # the interrupted r13
        stw     r0,  \area+SV_R0(r13)
        stw     r3,  \area+SV_R3+4*0(r13)
        stw     r4,  \area+SV_R3+4*1(r13)
        stw     r5,  \area+SV_R3+4*2(r13)
        stw     r6,  \area+SV_R3+4*3(r13)
        stw     r7,  \area+SV_R3+4*4(r13)
        stw     r8,  \area+SV_R3+4*5(r13)
        stw     r9,  \area+SV_R3+4*6(r13)
        stw     r10, \area+SV_R3+4*7(r13)
        stw     r11, \area+SV_R3+4*8(r13)
        mfcr    r12
        stw     r12, \area+SV_CR(r13)
        mflr    r12
        stw     r12, \area+SV_LR(r13)
        mfctr   r12
        stw     r12, \area+SV_CTR(r13)
        mfxer   r12
        stw     r12, \area+SV_XER(r13)
        .endm

        .macro EXC_RESTORE area
        lwz     r12, \area+SV_CR(r13)
        mtcr    r12
        lwz     r12, \area+SV_LR(r13)
        mtlr    r12
        lwz     r12, \area+SV_CTR(r13)
        mtctr   r12
        lwz     r12, \area+SV_XER(r13)
        mtxer   r12
        lwz     r0,  \area+SV_R0(r13)
        lwz     r3,  \area+SV_R3+4*0(r13)
        lwz     r4,  \area+SV_R3+4*1(r13)
        lwz     r5,  \area+SV_R3+4*2(r13)
        lwz     r6,  \area+SV_R3+4*3(r13)
        lwz     r7,  \area+SV_R3+4*4(r13)
        lwz     r8,  \area+SV_R3+4*5(r13)
        lwz     r9,  \area+SV_R3+4*6(r13)
        lwz     r10, \area+SV_R3+4*7(r13)
        lwz     r11, \area+SV_R3+4*8(r13)
        lwz     r12, \area+SV_R3+4*9(r13)
        lwz     r13, \area+SV_R3+4*10(r13)      # last: r13 was the base
        .endm

# --- IVOR6: program interrupt ------------------------------------------------------------------------
        .balign 16
        .globl program_vector
program_vector:
        EXC_SAVE PCPU_SAVE, SPRN_SPRG0
        lwz     r3, PCPU_IDX(r13)               # r3 = pir << PERCPU_SHIFT
        mfspr   r4, SPRN_SRR0                   # r4 = faulting instruction
        mfspr   r5, SPRN_ESR                    # r5 = ESR
        andis.  r0, r5, ESR_PTR >> 16
        beq     .Lprog_bad                      # not a trap
        LOAD_ADDR r6, __bug_table
        LOAD_ADDR r7, __bug_table_end
.Lprog_search:                                  # linear search for SRR0 in the bug table
        cmplw   r6, r7
        bge     .Lprog_bad
        lwz     r8, 0(r6)
        cmplw   r8, r4
        beq     .Lprog_found
        addi    r6, r6, 8
        b       .Lprog_search
.Lprog_found:
        lwz     r8, 4(r6)                       # flags
        andi.   r0, r8, BUGFLAG_BUG
        bne     .Lprog_bug
        andi.   r0, r8, BUGFLAG_WARN
        beq     .Lprog_bad
        # WARN: warn_log[pir][cnt % 256] = SRR0; cnt_warn[pir]++; resume after the trap
        PCPU_ADDR r9, cnt_warn, r3
        lwz     r10, 0(r9)
        rlwinm  r11, r10, 2, 22, 29             # (cnt % 256) * 4
        srwi    r12, r3, PERCPU_SHIFT - 10      # pir * 1024 = pir * WARN_LOG_LEN * 4
        add     r11, r11, r12
        addis   r11, r11, warn_log@ha
        stw     r4, warn_log@l(r11)
        addi    r10, r10, 1
        stw     r10, 0(r9)
        addi    r4, r4, 4
        mtspr   SPRN_SRR0, r4
        EXC_RESTORE PCPU_SAVE
        rfi
.Lprog_bug:                                     # BUG: record and halt(EXIT_BUG)
        PCPU_STORE bug_srr0, r3, r4, r9
        PCPU_INC cnt_bug, r3, r9, r10
        li      r3, EXIT_BUG
        b       kernel_halt
.Lprog_bad:                                     # unexplained: record and halt(EXIT_BAD_PROG)
        PCPU_STORE bad_prog_srr0, r3, r4, r9
        PCPU_STORE bad_prog_esr, r3, r5, r9
        PCPU_INC cnt_bad_prog, r3, r9, r10
        li      r3, EXIT_BAD_PROG
        b       kernel_halt

# --- IVOR8: system call: count, remember SRR0 (= the instruction after the sc), return ------------
        .balign 16
        .globl syscall_vector
syscall_vector:
        mtspr   SPRN_SPRG0, r13
        mfspr   r13, SPRN_SPRG3
        stw     r3, PCPU_SAVE+SV_R3+4*0(r13)    # only r3..r5 are used; no CR/LR/CTR/XER change
        stw     r4, PCPU_SAVE+SV_R3+4*1(r13)
        stw     r5, PCPU_SAVE+SV_R3+4*2(r13)
        lwz     r3, PCPU_IDX(r13)
        mfspr   r4, SPRN_SRR0
        PCPU_STORE last_sc_srr0, r3, r4, r5
        PCPU_INC cnt_syscall, r3, r5, r4
        lwz     r3, PCPU_SAVE+SV_R3+4*0(r13)
        lwz     r4, PCPU_SAVE+SV_R3+4*1(r13)
        lwz     r5, PCPU_SAVE+SV_R3+4*2(r13)
        mfspr   r13, SPRN_SPRG0
        rfi

# --- IVOR15: debug interrupt. Two flavours, IVOR15 picks one at boot from PVR --------------------
# e500v2: critical class, CSRR0/CSRR1 + rfci. e500mc: debug class, DSRR0/DSRR1 + rfdi.
# Body: cnt_debug++, last_dbsr = DBSR, last_debug_pc = xSRR0, DBSR <- DBSR (write 1 to clear what
# was read), then debug_hook(r3 = DBSR) -- weak no-op here, guest_iac overrides it.
        .macro DEBUG_HANDLER name, srr0, rfx
        .balign 16
        .globl \name
\name:
        EXC_SAVE PCPU_DSAVE, SPRN_SPRG2
        lwz     r5, PCPU_IDX(r13)
        mfspr   r4, \srr0
        mfspr   r3, SPRN_DBSR
        mtspr   SPRN_DBSR, r3                   # clear exactly the bits we saw
        PCPU_INC cnt_debug, r5, r6, r7
        PCPU_STORE last_dbsr, r5, r3, r6
        PCPU_STORE last_debug_pc, r5, r4, r6
        bl      debug_hook                      # may clobber r0, r3..r12, CR, CTR, XER, LR
        EXC_RESTORE PCPU_DSAVE
        \rfx
        .endm

        DEBUG_HANDLER debug_vector_e500v2, SPRN_CSRR0, rfci
        DEBUG_HANDLER debug_vector_e500mc, SPRN_DSRR0, rfdi

# --- every other IVOR (and IVOR41, HV privilege): record and halt(EXIT_UNEXPECTED) ------------------
        .macro UNEXPECTED n
        .balign 16
.Lunexpected_\n:
        li      r3, \n
        b       unexpected_common
        .endm

        .irp n, 0,1,2,3,4,5,7,9,10,11,12,13,14,32,33,34,35,36,37,40,42
        UNEXPECTED \n
        .endr

        .balign 16
        .globl hv_priv_vector
hv_priv_vector:                                 # IVOR41 (ehpriv reaching the guest)
        li      r3, 41
        b       unexpected_common

unexpected_common:                              # r3 = IVOR number; nothing to preserve: we halt
        mfspr   r4, SPRN_SPRG3
        lwz     r4, PCPU_IDX(r4)
        PCPU_STORE unexpected_ivor, r4, r3, r5
        mfspr   r6, SPRN_SRR0
        PCPU_STORE unexpected_srr0, r4, r6, r5
        li      r3, 0
        ori     r3, r3, EXIT_UNEXPECTED
        b       kernel_halt

# --- halt: exit_code[pir] = r3; HALT hypercall (never returns; re-issued if it ever does) ----------
        .globl kernel_halt
        .type kernel_halt, @function
kernel_halt:
        mfspr   r4, SPRN_SPRG3
        lwz     r4, PCPU_IDX(r4)
        PCPU_STORE exit_code, r4, r3, r5
        msync
.Lhalt:
        li      r11, HC_HALT
        sc      1
        b       .Lhalt
        .size kernel_halt, . - kernel_halt

# --- default debug hook (weak): guest_iac overrides it ----------------------------------------------
        .weak debug_hook
        .type debug_hook, @function
debug_hook:
        blr
        .size debug_hook, . - debug_hook

# ==================================================================================================
# Boot
# ==================================================================================================
        .macro SET_IVOR spr, handler
        li      r4, \handler - _vectors
        mtspr   \spr, r4
        .endm

        .globl _start
        .type _start, @function
_start:
        mfspr   r3, SPRN_PIR
        cmplwi  r3, MAX_VCPUS
        bge     .Lbad_pir
        # r2 = SPRG3 = &pcpu_area[pir]; record pir and pir << PERCPU_SHIFT
        LOAD_ADDR r2, pcpu_area
        slwi    r4, r3, PCPU_SHIFT
        add     r2, r2, r4
        stw     r3, PCPU_PIR(r2)
        slwi    r4, r3, PERCPU_SHIFT
        stw     r4, PCPU_IDX(r2)
        mtspr   SPRN_SPRG3, r2
        # r1 = top of this vCPU's stack, with a terminating back chain
        LOAD_ADDR r1, kernel_stacks
        addi    r4, r3, 1
        slwi    r4, r4, STACK_SHIFT
        add     r1, r1, r4
        li      r0, 0
        stwu    r0, -16(r1)
        # interrupt vectors
        lis     r4, _vectors@h
        mtspr   SPRN_IVPR, r4
        .irp n, 0,1,2,3,4,5,7,9,10,11,12,13,14
        SET_IVOR SPRN_IVOR0+\n, .Lunexpected_\n
        .endr
        SET_IVOR SPRN_IVOR0+6, program_vector
        SET_IVOR SPRN_IVOR0+8, syscall_vector
        .irp n, 32,33,34,35,36,37
        SET_IVOR SPRN_IVOR32+\n-32, .Lunexpected_\n
        .endr
        SET_IVOR SPRN_IVOR38+40-38, .Lunexpected_40
        SET_IVOR SPRN_IVOR38+41-38, hv_priv_vector
        SET_IVOR SPRN_IVOR38+42-38, .Lunexpected_42
        # debug flavour from PVR: e500mc (0x8023xxxx) uses DSRR0/1 + rfdi, e500v2 CSRR0/1 + rfci
        mfspr   r4, SPRN_PVR
        srwi    r4, r4, 16
        cmplwi  r4, PVR_E500MC_HI
        beq     1f
        SET_IVOR SPRN_IVOR0+15, debug_vector_e500v2
        b       2f
1:      SET_IVOR SPRN_IVOR0+15, debug_vector_e500mc
2:      isync
        # MSR: supervisor, machine check enabled, no EE/CE/DE
        li      r4, MSR_ME
        mtmsr   r4
        isync
        # exit code = main(pir)
        lwz     r3, PCPU_PIR(r2)
        bl      main
        b       kernel_halt

.Lbad_pir:                                      # no per-vCPU slot to record anything in
        li      r3, EXIT_BAD_PIR
        li      r11, HC_HALT
        sc      1
        b       .Lbad_pir
        .size _start, . - _start
