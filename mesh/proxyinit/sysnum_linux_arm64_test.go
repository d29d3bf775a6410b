package proxyinit

// sysSetns is setns(2) (include/uapi/asm-generic/unistd.h); the syscall
// package does not define it.
const sysSetns = 268
