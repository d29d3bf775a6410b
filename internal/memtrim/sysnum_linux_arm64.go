package memtrim

const sysUserfaultfd = 282
