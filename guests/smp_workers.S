# smp_workers.S -- every vCPU runs the same code on its own data, indexed by PIR.
#
# work_data[pir] is a 256-word array at work_data + pir * 1024. With M = 2**32, rotl = 32-bit rotate:
#   boot:        a[i] = (pir << 16) + i                          for i in 0..255
#   iteration k (k = 1 .. cfg_iterations):
#                bp_target(); WARN_ON(k)  (fires)
#                for i in 0..255: acc = ((rotl(acc, 5) ^ a[i]) + k) % M ; a[i] = acc
#                work_result[pir] = acc ; cnt_iter[pir] += 1
#   acc starts at 0. Python reference: guests/expected.py, smp_workers().
# Per vCPU: cnt_iter = cnt_hits = cnt_warn = cfg_iterations.

        .include "kernel.inc"

        .bss
        .globl work_data                        # [MAX_VCPUS][PERCPU_STRIDE bytes]: 256 words used each
        .type work_data, @object
        .balign PERCPU_STRIDE
work_data:
        .space MAX_VCPUS * PERCPU_STRIDE
        .size work_data, . - work_data

        .globl work_result                      # per-vCPU word: acc after the last iteration
        .type work_result, @object
        .balign PERCPU_STRIDE
work_result:
        .space MAX_VCPUS * PERCPU_STRIDE
        .size work_result, . - work_result

        .text
        .globl main
        .type main, @function
main:                                           # r3 = pir; returns r3 = 0
        PROLOGUE 25, 48
        slwi    r4, r3, PERCPU_SHIFT              # r4 = pir << PERCPU_SHIFT
        PCPU_ADDR r25, cnt_iter, r4             # r25 = &cnt_iter[pir]
        PCPU_ADDR r26, work_result, r4          # r26 = &work_result[pir]
        slwi    r30, r3, PERCPU_SHIFT
        addis   r30, r30, work_data@ha
        addi    r30, r30, work_data@l           # r30 = a = &work_data[pir][0]
        # a[i] = (pir << 16) + i
        slwi    r4, r3, 16
        li      r5, 256
        mtctr   r5
        mr      r6, r30
1:      stw     r4, 0(r6)
        addi    r4, r4, 1
        addi    r6, r6, 4
        bdnz    1b
        lis     r29, cfg_iterations@ha
        lwz     r29, cfg_iterations@l(r29)      # r29 = iterations left
        li      r28, 0                          # r28 = acc
        li      r27, 0                          # r27 = k
        cmplwi  r29, 0
        beq     4f
2:      addi    r27, r27, 1                     # k = 1, 2, ...
        bl      bp_target
        WARN_ON r27                             # fires every iteration
        li      r5, 256
        mtctr   r5
        mr      r6, r30
3:      lwz     r7, 0(r6)
        rotlwi  r28, r28, 5
        xor     r28, r28, r7
        add     r28, r28, r27
        stw     r28, 0(r6)
        addi    r6, r6, 4
        bdnz    3b
        stw     r28, 0(r26)                     # work_result[pir] = acc
        lwz     r4, 0(r25)
        addi    r4, r4, 1
        stw     r4, 0(r25)                      # cnt_iter[pir]++
        subic.  r29, r29, 1
        bne     2b
4:      li      r3, EXIT_OK
        EPILOGUE 25, 48
        .size main, . - main

        BP_TARGET bp_target
