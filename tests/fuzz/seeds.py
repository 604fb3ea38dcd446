#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets added for issue 16
(tests/fuzz/corpus/NAME/): each seed is a short, readable scenario in the
input layout that the target's header comment describes, so the fuzzer
starts from inputs that reach deep into the code instead of finding the
shape of a valid driver, frame or image by chance.

usage: tests/fuzz/seeds.py [NAME...]   (from anywhere; all targets by default)
Rerun it after changing an input layout, and commit the files it writes.
"""
import json
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def write(name, seed, data):
    d = os.path.join(HERE, 'corpus', name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, seed), 'wb') as f:
        f.write(data)


# ---- virtio-pci (fuzz_virtio_pci.c) ----

BAR_READ, BAR_WRITE, ECAM_READ, ECAM_WRITE, PORT, IO_KICK, IO_TURN, RAM_WRITE = range(8)
WIDTH = {1: 0, 2: 1, 4: 2, 8: 3}
RNG, STUB = 0, 1
# struct virtio_pci_common_cfg offsets
DFSEL, DF, GFSEL, GF, MSIXCFG, NUMQ, STATUS, GEN = 0, 4, 8, 12, 16, 18, 20, 21
QSEL, QSIZE, QMSIX, QENABLE, QNOFF, QDESC, QAVAIL, QUSED = 22, 24, 26, 28, 30, 32, 40, 48
ACK, DRIVER, DRIVER_OK, FEATURES_OK = 1, 2, 4, 8
NOTIFY, MSIX_TABLE, PBA, DEVCFG, ISR = 0x3000, 0x4000, 0x5000, 0x2000, 0x1000
MSIX_CAP_FLAGS = None  # found by the fuzzer; the seeds enable MSI-X via both paths


class Pci:
    def __init__(self):
        self.recs = []
        self.ram = bytearray(0x8000)

    def rec(self, kind, off, value=0, width=4, dev=STUB):
        op = kind | WIDTH[width] << 3 | dev << 5
        self.recs.append(struct.pack('<BHI', op, off & 0xffff, value & 0xffffffff))

    def w(self, off, value, width, dev=STUB):
        self.rec(BAR_WRITE, off, value, width, dev)

    def r(self, off, width, dev=STUB):
        self.rec(BAR_READ, off, 0, width, dev)

    def bring_up(self, dev, queues, qsize=8, msix=True):
        self.rec(ECAM_WRITE, 0x04, 0x6, 2, dev)        # memory decode + bus master
        self.w(STATUS, ACK | DRIVER, 1, dev)
        self.w(DFSEL, 1, 4, dev)
        self.r(DF, 4, dev)
        self.w(GFSEL, 1, 4, dev)
        self.w(GF, 1, 4, dev)                           # VERSION_1
        self.w(GFSEL, 0, 4, dev)
        self.w(GF, (1 << 28) | (1 << 29), 4, dev)       # INDIRECT_DESC, EVENT_IDX
        self.w(STATUS, ACK | DRIVER | FEATURES_OK, 1, dev)
        self.r(STATUS, 1, dev)
        if msix:
            for v in range(queues + 1):
                self.w(MSIX_TABLE + 16 * v, 0xfee00000, 4, dev)
                self.w(MSIX_TABLE + 16 * v + 8, 0x40 + v, 4, dev)
                self.w(MSIX_TABLE + 16 * v + 12, 0, 4, dev)  # unmask
            self.w(MSIXCFG, 0, 2, dev)
        for q in range(queues):
            base = 0x1000 + q * 0x1000 + dev * 0x4000
            self.w(QSEL, q, 2, dev)
            self.r(QSIZE, 2, dev)
            self.w(QSIZE, qsize, 2, dev)
            if msix:
                self.w(QMSIX, q + 1, 2, dev)
            self.w(QDESC, base, 4, dev)
            self.w(QDESC + 4, 0, 4, dev)
            self.w(QAVAIL, base + 0x400, 4, dev)
            self.w(QUSED, base + 0x800, 4, dev)
            self.w(QUSED + 4, 0, 4, dev)
            self.w(QENABLE, 1, 2, dev)
        self.w(STATUS, ACK | DRIVER | FEATURES_OK | DRIVER_OK, 1, dev)

    def chain(self, dev, q, buf_len=64):
        """One writable descriptor made available in queue q (set up by bring_up)."""
        base = 0x1000 + q * 0x1000 + dev * 0x4000
        struct.pack_into('<QIHH', self.ram, base, 0x2000 + 0x100 * q, buf_len, 2, 0)
        struct.pack_into('<HHH', self.ram, base + 0x400, 0, 1, 0)

    def data(self):
        assert len(self.recs) < 256
        return bytes([len(self.recs)]) + b''.join(self.recs) + bytes(self.ram).rstrip(b'\0')


def virtio_pci():
    p = Pci()
    p.bring_up(RNG, 1)
    p.chain(RNG, 0)
    p.w(NOTIFY, 0, 2, RNG)
    p.rec(IO_KICK, 0, dev=RNG)
    p.r(ISR, 1, RNG)
    p.rec(ECAM_WRITE, 0x04, 0, 2, RNG)                 # bus master off, then a kick
    p.w(NOTIFY, 0, 2, RNG)
    write('virtio-pci', 'rng-bring-up', p.data())

    p = Pci()
    p.bring_up(STUB, 3)
    for q in range(3):
        p.chain(STUB, q)
        p.w(NOTIFY + 4 * q, q, 2)
    p.rec(IO_TURN, 0)
    p.w(DEVCFG, 0x12345678, 4)
    p.r(DEVCFG + 8, 4)
    p.r(DEVCFG + 10, 4)                                 # straddles the config's end
    p.w(MSIX_TABLE + 12, 1, 4)                          # mask vector 0, then interrupt
    p.w(NOTIFY + 4, 1, 2)
    p.r(PBA, 4)
    p.w(MSIX_TABLE + 12, 0, 4)                          # unmask: pending delivered
    p.w(STATUS, 0, 1)                                   # reset mid-way
    p.w(NOTIFY, 0, 2)
    write('virtio-pci', 'stub-three-queues', p.data())

    p = Pci()
    p.rec(ECAM_WRITE, 0x04, 0x6, 2)
    p.w(STATUS, ACK | DRIVER | FEATURES_OK, 1)          # no VERSION_1: refused
    p.w(QSEL, 0, 2)
    p.w(QSIZE, 1000, 2)                                  # not a power of two
    p.w(QENABLE, 1, 2)
    p.w(QSEL, 1, 2)
    p.w(QDESC, 0xfffff000, 4)                            # outside guest RAM
    p.w(QDESC + 4, 0xffffffff, 4)
    p.w(QENABLE, 1, 2)
    p.w(QSEL, 7, 2)                                      # no such queue
    p.r(QSIZE, 2)
    p.w(STATUS, DRIVER_OK, 1)
    p.w(STATUS, 0, 1)
    p.r(0x38, 8)                                         # beyond the common config
    p.r(MSIX_TABLE + 16 * 9, 4)                          # beyond the vectors
    write('virtio-pci', 'hostile-setup', p.data())

    p = Pci()
    p.rec(PORT, 16, 0x04, 4)                            # CF8: the stub's command register
    p.rec(PORT, 4, 0x6, 2)                              # CFC
    p.rec(PORT, 8 | 4, 0, 2)
    p.rec(PORT, 1, 0, 1)                                # 0xCF9 without a reset register
    p.rec(ECAM_READ, 0x34, 0, 1)                        # capability list
    p.rec(ECAM_READ, 0x10, 0, 4)
    p.rec(ECAM_WRITE, 0x10, 0xffffffff, 4)              # BAR sizing
    p.rec(ECAM_READ, 0x10, 0, 4)
    p.rec(ECAM_WRITE, 0x1000, 0, 4)                     # function 1
    for reg in range(0x40, 0x80, 4):
        p.rec(ECAM_WRITE, reg, 0xc0000000, 4)           # MSI-X enable + mask-all, wherever it is
    p.bring_up(STUB, 2, qsize=64, msix=True)
    write('virtio-pci', 'config-space', p.data())


TARGETS = {'virtio-pci': virtio_pci}

if __name__ == '__main__':
    for t in sys.argv[1:] or TARGETS:
        TARGETS[t]()
