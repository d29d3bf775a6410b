package netns

// sysSetns is setns(2): the syscall package's table for 386 predates it.
const sysSetns = 346
