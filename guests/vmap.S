# vmap.S -- a stand-alone guest for the ppce500 board whose code runs at a virtual address that is not
# its physical one: it maps EA 0x40000000 -> PA 0 (64 MiB, TLB1 entry 1, its own entry beside the boot
# map of TLB1[0]) and runs `loop_alias` through that alias 10 times, then comes back to `done` at its
# link address. A debugger's breakpoint at 0x40000000 + bp_alias must be planted at the physical word
# bp_alias through the guest TLB (as QEMU+KVM plant through the guest MMU); `mapped` is the first
# instruction after the map exists. `count` ends at 10.
        .set MAS0, 624
        .set MAS1, 625
        .set MAS2, 626
        .set MAS3, 627
        .set MAS7, 944
        .set ALIAS, 0x4000

        .section .vectors, "ax"
        .globl _vectors
_vectors:
        .globl _start
_start:
        b       boot

        .text
boot:
        lis     r4, 0x1001                      # MAS0: TLB1, entry 1
        mtspr   MAS0, r4
        lis     r4, 0x8000                      # MAS1: valid, TS 0, TID 0, 64 MiB (TSIZE 16)
        ori     r4, r4, 0x0800
        mtspr   MAS1, r4
        lis     r4, ALIAS                       # MAS2: EPN 0x40000000
        mtspr   MAS2, r4
        li      r4, 0x15                        # MAS3: RPN 0, SX|SW|SR
        mtspr   MAS3, r4
        li      r4, 0
        mtspr   MAS7, r4
        isync
        tlbwe
        isync
        .globl mapped
mapped:
        lis     r3, loop_alias@h
        ori     r3, r3, loop_alias@l
        oris    r3, r3, ALIAS                   # the same code through the alias
        mtctr   r3
        li      r5, 0
        bctr
        .globl loop_alias
loop_alias:
        addi    r5, r5, 1
        .globl bp_alias
bp_alias:
        addi    r6, r6, 1
        cmpwi   r5, 10
        blt     loop_alias
        lis     r7, count@ha
        stw     r5, count@l(r7)
        lis     r3, done@h
        ori     r3, r3, done@l
        mtctr   r3
        bctr                                    # back to the link address
        .globl done
done:
        b       done

        .data
        .balign 16
        .globl count
count:
        .space 16
