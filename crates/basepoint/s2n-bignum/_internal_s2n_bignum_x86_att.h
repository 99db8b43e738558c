// The macros s2n-bignum's x86-64 (AT&T syntax) sources expect, for ELF targets only
// (build.rs compiles these files on x86-64 Linux and nowhere else). Written for OpenHive
// after s2n-bignum's own header of the same name, which aws-lc-sys 0.32.3 ships with an
// include of aws-lc's symbol prefixes that we do not have.
// SPDX-License-Identifier: MIT

#define S2N_BN_SYMBOL(name) name
#define S2N_BN_SYM_VISIBILITY_DIRECTIVE(name) .globl S2N_BN_SYMBOL(name)
// Hidden: the symbols stay inside the binary that links this crate.
#define S2N_BN_SYM_PRIVACY_DIRECTIVE(name) .hidden S2N_BN_SYMBOL(name)
#define S2N_BN_FUNCTION_TYPE_DIRECTIVE(name) .type name, %function
#define S2N_BN_SIZE_DIRECTIVE(name) .size S2N_BN_SYMBOL(name), .-S2N_BN_SYMBOL(name)

// ENDBR64, a no-op on CPUs without indirect branch tracking.
#if defined(__CET__)
#   include <cet.h>
#else
#   define _CET_ENDBR .byte 0xf3,0x0f,0x1e,0xfa
#endif

#define CFI_START .cfi_startproc
#define CFI_RET retq ; .cfi_endproc
#define CFI_CALL(target) callq   target
#define CFI_PUSH(reg) pushq   reg ; .cfi_adjust_cfa_offset 8 ; .cfi_rel_offset reg, 0
#define CFI_POP(reg) popq    reg ; .cfi_adjust_cfa_offset -8 ; .cfi_restore reg
#define CFI_INC_RSP(offset) addq    $offset, %rsp ; .cfi_adjust_cfa_offset -offset
#define CFI_DEC_RSP(offset) subq    $offset, %rsp ; .cfi_adjust_cfa_offset offset
