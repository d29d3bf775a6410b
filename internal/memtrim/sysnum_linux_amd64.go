package memtrim

const sysUserfaultfd = 323
