# selfcheck.S -- a guest that checksums its own code.
# checksum(begin, end): c = 0; for each big-endian word w in [begin, end): c = rotl(c, 1) ^ w
# (32-bit rotate). At boot boot_checksum[pir] = checksum(check_begin, check_end); then each
# iteration calls bp_target, recomputes it into last_checksum[pir] and counts a difference in
# cnt_mismatch[pir]. The checked region holds bp_target, checksum and main: a software breakpoint
# planted there is visible to the guest. Python reference: guests/expected.py, checksum().

        .include "kernel.inc"

        .bss
        .globl boot_checksum                    # per-vCPU word: checksum at boot
        .type boot_checksum, @object
        .balign PERCPU_STRIDE
boot_checksum:
        .space MAX_VCPUS * PERCPU_STRIDE
        .size boot_checksum, . - boot_checksum
        .globl last_checksum                    # per-vCPU word: checksum of the last iteration
        .type last_checksum, @object
last_checksum:
        .space MAX_VCPUS * PERCPU_STRIDE
        .size last_checksum, . - last_checksum

        .text
        .balign 16
        .globl check_begin
check_begin:

        BP_TARGET bp_target

        .balign 4
        .globl checksum
        .type checksum, @function
checksum:                                       # r3 = begin, r4 = end (word aligned) -> r3
        li      r5, 0
1:      cmplw   r3, r4
        bge     2f
        lwz     r6, 0(r3)
        rotlwi  r5, r5, 1
        xor     r5, r5, r6
        addi    r3, r3, 4
        b       1b
2:      mr      r3, r5
        blr
        .size checksum, . - checksum

        .globl main
        .type main, @function
main:                                           # r3 = pir; returns r3 = 0
        PROLOGUE 27, 32
        slwi    r31, r3, PERCPU_SHIFT             # r31 = pir << PERCPU_SHIFT
        PCPU_ADDR r30, cnt_iter, r31            # r30 = &cnt_iter[pir]
        lis     r29, cfg_iterations@ha
        lwz     r29, cfg_iterations@l(r29)      # r29 = iterations left
        LOAD_ADDR r3, check_begin
        LOAD_ADDR r4, check_end
        bl      checksum
        mr      r28, r3                         # r28 = boot checksum
        PCPU_STORE boot_checksum, r31, r28, r4
        PCPU_ADDR r27, last_checksum, r31       # r27 = &last_checksum[pir]
        cmplwi  r29, 0
        beq     3f
1:      bl      bp_target
        LOAD_ADDR r3, check_begin
        LOAD_ADDR r4, check_end
        bl      checksum
        stw     r3, 0(r27)
        cmplw   r3, r28
        beq     2f
        PCPU_INC cnt_mismatch, r31, r4, r5
2:      lwz     r4, 0(r30)
        addi    r4, r4, 1
        stw     r4, 0(r30)                      # cnt_iter[pir]++
        subic.  r29, r29, 1
        bne     1b
3:      li      r3, EXIT_OK
        EPILOGUE 27, 32
        .size main, . - main

        .balign 4
        .globl check_end
check_end:
