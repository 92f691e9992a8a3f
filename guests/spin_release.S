# spin_release.S -- a stand-alone guest for the ppce500 board (`[machine] board = "ppce500"`, 2+ vCPUs):
# the boot vCPU starts vCPU 1 through the ePAPR spin table as an operating system does (QEMU's
# hw/ppc/ppce500_spin.c; the table at physical 0xF_EF00_0000, entry 1 at +0x20), then both park at
# `done`. vCPU 0 maps the table with its own TLB1 entry 2 (EA 0xE0000000, 4 KiB, cache-inhibited and
# guarded: a 36-bit physical address), writes r3 = 0x55 and then the entry address (the even word
# releases); vCPU 1 starts there with r3 from the table and PIR 1, records both in `released`, and
# vCPU 0 waits until it has.
#   released + 0: r3 the secondary started with (0x55), +4: its PIR (1), +8: vCPU 0's wait loops
        .set PIR, 286
        .set MAS0, 624
        .set MAS1, 625
        .set MAS2, 626
        .set MAS3, 627
        .set MAS7, 944

        .section .vectors, "ax"
        .globl _vectors
_vectors:
        .globl _start
_start:
        b       boot

        .text
boot:
        mfspr   r3, PIR
        cmpwi   r3, 0
        bne     done                            # (a secondary never runs this: it starts held)
        lis     r4, 0x1002                      # MAS0: TLB1, entry 2
        mtspr   MAS0, r4
        lis     r4, 0x8000                      # MAS1: valid, TID 0, TS 0, 4 KiB (TSIZE 2)
        ori     r4, r4, 0x0100
        mtspr   MAS1, r4
        lis     r4, 0xE000                      # MAS2: EPN 0xE0000000, I|G
        ori     r4, r4, 0x000A
        mtspr   MAS2, r4
        lis     r4, 0xEF00                      # MAS3: RPN 0xEF000000, SR|SW
        ori     r4, r4, 0x0005
        mtspr   MAS3, r4
        li      r4, 0xF                         # MAS7: physical bits 32-35
        mtspr   MAS7, r4
        isync
        tlbwe
        isync
        lis     r5, 0xE000                      # the spin table, entry 1 at +0x20
        li      r6, 0x55
        stw     r6, 0x2C(r5)                    # r3 (low word)
        li      r6, 0
        stw     r6, 0x20(r5)                    # addr, high word
        lis     r6, secondary@h
        ori     r6, r6, secondary@l
        stw     r6, 0x24(r5)                    # addr, low word: even, the release
        lis     r7, released@ha
        addi    r7, r7, released@l
        li      r8, 0
1:      addi    r8, r8, 1
        stw     r8, 8(r7)
        lwz     r9, 0(r7)
        cmpwi   r9, 0
        beq     1b
        b       done

secondary:                                      # r3 from the table; TLB1[1] maps EA 0 -> PA 0, 64 MiB
        lis     r7, released@ha
        addi    r7, r7, released@l
        mfspr   r4, PIR
        stw     r4, 4(r7)
        msync
        stw     r3, 0(r7)
        .globl done
done:
        b       done

        .data
        .balign 32
        .globl released
released:
        .space 32
