# hello: the bundled example's program, a static x86-64 Linux executable with no libc.
# `hello --greeting WORD` prints "WORD from imgbuild"; without it, "hello from imgbuild".
# Built by recipes/hello/src/build.sh (GNU as and ld); the binary is committed so that
# building the example needs no toolchain.
        .globl _start
        .text
_start:
        mov     (%rsp), %rcx            # argc
        lea     default(%rip), %rsi     # the greeting, unless argv[2] is given
        mov     $5, %rdx
        cmp     $3, %rcx
        jb      1f
        mov     24(%rsp), %rsi          # argv[2]
        xor     %rdx, %rdx
2:      cmpb    $0, (%rsi,%rdx)         # its length
        je      1f
        inc     %rdx
        jmp     2b
1:      mov     $1, %eax                # write(1, greeting, len)
        mov     $1, %edi
        syscall
        mov     $1, %eax                # write(1, suffix, suffix_len)
        mov     $1, %edi
        lea     suffix(%rip), %rsi
        mov     $suffix_len, %edx
        syscall
        mov     $60, %eax               # exit(0)
        xor     %edi, %edi
        syscall
default:
        .ascii  "hello"
suffix:
        .ascii  " from imgbuild\n"
        .set    suffix_len, . - suffix
