package proxyinit

// sysSetns is setns(2) (arch/x86/entry/syscalls/syscall_64.tbl); the
// syscall package does not define it.
const sysSetns = 308
