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
# Where each device's MSI-X capability lands in config space: virtio-pci.c
# adds common, ISR, device config (the stub only), notify (20 bytes), then
# MSI-X, each dword-aligned from 0x40 (pci.c). If that changes, the seeds
# only lose depth: the fuzzer finds the capability again.
MSIX_CAP = {RNG: 0x74, STUB: 0x84}


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
            self.rec(ECAM_WRITE, MSIX_CAP[dev] + 2, 0x8000, 2, dev)  # MSI-X enable
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

    # A vector goes pending behind its mask, bus mastering goes off, the
    # vector is unmasked: the MSI must wait (see delivering_pending).
    p = Pci()
    p.bring_up(STUB, 1)
    p.w(MSIX_TABLE + 16 * 1 + 12, 1, 4)
    p.chain(STUB, 0)
    p.w(NOTIFY, 0, 2)
    p.rec(ECAM_WRITE, 0x04, 0x2, 2)
    p.w(MSIX_TABLE + 16 * 1 + 12, 0, 4)
    write('virtio-pci', 'msi-pending-without-bus-master', p.data())

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


# ---- net-slirp (fuzz_net_slirp.c) ----

GUEST_MAC = bytes.fromhex('027368 6f0000'.replace(' ', ''))
GW_MAC = bytes.fromhex('525500 000202'.replace(' ', ''))  # any: slirp answers ARP for it
BCAST = b'\xff' * 6
GUEST, GW, DNS = bytes([10, 0, 2, 15]), bytes([10, 0, 2, 2]), bytes([10, 0, 2, 3])
FIX_ALL = 1 | 2 | 4   # IPv4 checksum, L4 checksum, IPv4 total length


def eth(dst, ethertype, payload, src=GUEST_MAC):
    return dst + src + struct.pack('>H', ethertype) + payload


def ipv4(src, dst, proto, payload, frag=0, ident=1):
    # checksum and total length left for the harness to fill in (FIX_ALL)
    return struct.pack('>BBHHHBBH4s4s', 0x45, 0, 0, ident, frag, 64, proto, 0, src, dst) + payload


def udp(sport, dport, payload):
    return struct.pack('>HHHH', sport, dport, 8 + len(payload), 0) + payload


def tcp(sport, dport, seq, ack, flags, payload=b'', opts=b''):
    off = (20 + len(opts)) // 4
    return struct.pack('>HHIIBBHHH', sport, dport, seq, ack, off << 4, flags, 65535, 0, 0) + opts + payload


def arp_request(target, sender=GUEST):
    return eth(BCAST, 0x0806, struct.pack('>HHBBH6s4s6s4s', 1, 0x0800, 6, 4, 1,
                                          GUEST_MAC, sender, b'\0' * 6, target))


def dhcp(msg_type, requested=None):
    bootp = struct.pack('>BBBBIHH4s4s4s4s16s64s128s', 1, 1, 6, 0, 0x12345678, 0, 0x8000,
                        b'\0' * 4, b'\0' * 4, b'\0' * 4, b'\0' * 4, GUEST_MAC, b'', b'')
    opts = b'\x63\x82\x53\x63' + bytes([53, 1, msg_type])
    if requested:
        opts += bytes([50, 4]) + requested + bytes([54, 4]) + GW
    opts += bytes([55, 4, 1, 3, 6, 15, 12, 5]) + b'shoji' + b'\xff'
    return eth(BCAST, 0x0800, ipv4(b'\0' * 4, b'\xff' * 4, 17, udp(68, 67, bootp + opts)))


def dns_query(name):
    q = b''.join(bytes([len(p)]) + p.encode() for p in name.split('.')) + b'\0'
    return struct.pack('>HHHHHH', 0x1234, 0x0100, 1, 0, 0, 0) + q + struct.pack('>HH', 1, 1)


def slirp_seed(config, frames):
    out = bytes([config])
    for flags, f in frames:
        out += struct.pack('<BH', flags, len(f)) + f
    return out


def net_slirp():
    write('net-slirp', 'arp-dhcp', slirp_seed(0, [
        (FIX_ALL, arp_request(GW)),
        (FIX_ALL, arp_request(DNS)),
        (FIX_ALL, dhcp(1)),                                   # DISCOVER
        (FIX_ALL, dhcp(3, GUEST)),                            # REQUEST
        (FIX_ALL, arp_request(GUEST, sender=GUEST)),          # gratuitous
    ]))
    write('net-slirp', 'dns-and-ping', slirp_seed(0, [
        (FIX_ALL, arp_request(GW)),
        (FIX_ALL, eth(GW_MAC, 0x0800, ipv4(GUEST, DNS, 17, udp(40000, 53, dns_query('example.org'))))),
        (FIX_ALL, eth(GW_MAC, 0x0800, ipv4(GUEST, GW, 1, struct.pack('>BBHHH', 8, 0, 0, 1, 1) + b'ping' * 8))),
        (FIX_ALL, eth(GW_MAC, 0x0800, ipv4(GUEST, bytes([192, 0, 2, 1]), 1,
                                           struct.pack('>BBHHH', 8, 0, 0, 1, 2) + b'x' * 32))),
        (FIX_ALL, eth(GW_MAC, 0x0800, ipv4(GUEST, bytes([192, 0, 2, 1]), 17, udp(40001, 9, b'refused')))),
    ]))
    mss = bytes([2, 4, 0x05, 0xb4])
    write('net-slirp', 'tcp-gateway', slirp_seed(1, [              # host_loopback on
        (FIX_ALL, arp_request(GW)),
        (FIX_ALL, eth(GW_MAC, 0x0800, ipv4(GUEST, GW, 6, tcp(40000, 9, 1000, 0, 0x02, opts=mss)))),
        (FIX_ALL, eth(GW_MAC, 0x0800, ipv4(GUEST, GW, 6, tcp(40000, 9, 1001, 1, 0x10)))),
        (FIX_ALL, eth(GW_MAC, 0x0800, ipv4(GUEST, GW, 6, tcp(40000, 9, 1001, 1, 0x18, b'hello')))),
        (FIX_ALL, eth(GW_MAC, 0x0800, ipv4(GUEST, GW, 6, tcp(40000, 9, 1006, 1, 0x11)))),
        (FIX_ALL, eth(GW_MAC, 0x0800, ipv4(GUEST, GW, 17, udp(40002, 9, b'to loopback')))),
    ]))
    write('net-slirp', 'tcp-outside-and-forward', slirp_seed(2, [  # a host forward
        (FIX_ALL, eth(GW_MAC, 0x0800, ipv4(GUEST, bytes([192, 0, 2, 1]), 6, tcp(40000, 80, 7, 0, 0x02)))),
        (FIX_ALL, eth(GW_MAC, 0x0800, ipv4(GUEST, GW, 6, tcp(8080, 5555, 7, 0, 0x12)))),
        (FIX_ALL | 8, eth(GW_MAC, 0x0800, ipv4(GUEST, GW, 6, tcp(40000, 22, 9, 0, 0x04)))),
    ]))
    write('net-slirp', 'fragments', slirp_seed(0, [
        (FIX_ALL | 16, eth(GW_MAC, 0x0800, ipv4(GUEST, DNS, 17, udp(40000, 53, b'A' * 40), frag=0x2000, ident=7))),
        (1 | 4, eth(GW_MAC, 0x0800, ipv4(GUEST, DNS, 17, b'B' * 24, frag=6, ident=7))),
        (1 | 4, eth(GW_MAC, 0x0800, ipv4(GUEST, DNS, 17, b'C' * 8, frag=0x2000 | 100, ident=8))),
        (0, eth(GW_MAC, 0x0800, b'\x46' + b'\0' * 19)),        # bad checksum, options cut off
        (0, eth(GW_MAC, 0x86dd, b'\x60' + b'\0' * 39)),        # IPv6, which is off
        (0, b'\0' * 10),                                        # shorter than Ethernet
    ]))


# ---- daemon (fuzz_daemon.c) ----

def daemon():
    full = {
        'name': 'web', 'role': 'client', 'kernel': '$D/vmlinuz', 'initrd': '$D/initrd',
        'cmdline': 'console=ttyS0 quiet', 'cpus': 2, 'memory': '1G',
        'disks': [{'path': '$D/disk.raw', 'format': 'raw'},
                  {'path': '$D/disk.qcow2', 'format': 'qcow2', 'readonly': True}],
        'nets': [{'type': 'user', 'hostfwd': ['tcp:127.0.0.1:2222-:22'], 'host_loopback': False},
                 {'type': 'tap', 'tap': 'tap0', 'mac': '02:00:00:00:00:01'}],
        'vsock': {'cid': 3}, 'rng': True, 'autostart': False, 'depends_on': 'db',
    }
    text = json.dumps(full, indent=2).encode()
    write('daemon', 'def-full', b'\x00\x01' + text)
    write('daemon', 'def-service', b'\x00\x00' + json.dumps(
        {'name': 'db', 'role': 'service', 'kernel': '$D/vmlinuz', 'memory': 256}).encode())
    write('daemon', 'def-bad-nested', b'\x00\x00' + b'{\n "name": "x",\n "role": "client",\n "kernel": "$D/vmlinuz",\n'
          b' "disks": [\n  {"path": "$D/disk.raw"},\n  {"path": "$D/none", "format": "vmdk"}\n ]\n}')
    write('daemon', 'def-hostile', b'\x00\x00' + b'{"name": "-..", "cpus": 1e400, "memory": '
          b'18446744073709551616, "nets": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}')
    write('daemon', 'def-huge-numbers', b'\x00\x00' + b'{"name": "big", "role": "client", "kernel": "$D/vmlinuz", '
          b'"cpus": 4294967297, "memory": "99999999999999999999G", "vsock": {"cid": -1}}')
    write('daemon', 'def-syntax', b'\x00\x00' + b'{\n"name": "a",\n"kernel": "\\u00e9\n')
    write('daemon', 'jsonpos-path', b'\x01' + b'nets[1].hostfwd\n' + text)
    write('daemon', 'jsonpos-deep', b'\x01' + b'a.b.c.d\n' + b'{"a": {"b": {"c": {"d": 1}}}, "x\\"y": [' * 3
          + b'0' + b']}' * 3)
    web = json.dumps({'name': 'web', 'role': 'client', 'kernel': '$D/vmlinuz', 'cpus': 4}).encode()
    new = json.dumps({'name': 'new1', 'role': 'client', 'kernel': '$D/vmlinuz'}).encode()
    reqs = {
        'api-list': b'GET /v1/vms\n',
        'api-create': b'POST /v1/vms\n' + new,
        'api-put': b'PUT /v1/vms/web\n' + web,
        'api-put-mismatch': b'PUT /v1/vms/other\n' + web,
        'api-show': b'GET /v1/vms/web\n',
        'api-delete': b'DELETE /v1/vms/web\n',
        'api-definition': b'GET /v1/vms/web/definition\n',
        'api-start': b'POST /v1/vms/web/start\n',
        'api-bad-name': b'GET /v1/vms/Bad..Name/logs\n',
        'api-version': b'GET /v1/version\n',
        'api-nul': b'POST /v1/vms\n{"name":\x00"x"}',
    }
    for seed, req in reqs.items():
        write('daemon', seed, b'\x02\x07\x00' + req)
    write('daemon', 'api-too-big', b'\x02\x00\xff' + b'POST /v1/vms\n' + b' ' * 300)


# ---- qcow2-ops (fuzz_qcow2_ops.c) ----
# The images are tests/block/corpus/*.qcow2, the qcow2 target's seeds (made
# with qemu-img and shoji-img: see tests/block/fuzz_qcow2.c), each behind
# 8 control bytes that pick the operations run on it.

CHAIN, WRITE, CHECK, SNAP_CREATE, SNAP_APPLY, SNAP_DELETE, RESIZE, CONVERT = (1 << i for i in range(8))
REBASE, MAKE_EMPTY = 1, 2


def qcow2_ops():
    corpus = os.path.join(HERE, '..', 'block', 'corpus')
    plans = {
        'data.qcow2': [('check-write', WRITE | CHECK, 0, 3), ('convert', CHAIN | CONVERT, 0, 0)],
        'empty.qcow2': [('resize-grow', WRITE | RESIZE, 40, 1), ('resize-shrink', RESIZE, 1, 0)],
        'overlay.qcow2': [('chain-convert', CHAIN | WRITE | CONVERT, 0, 2)],
        'rc1.qcow2': [('check-snap', CHECK | SNAP_CREATE | WRITE, 0, 0)],
        'snap.qcow2': [('apply-delete', SNAP_APPLY | SNAP_DELETE | CHECK, 0, 0),
                       ('create-apply', SNAP_CREATE | SNAP_APPLY | WRITE | RESIZE, 20, 5)],
        'v2.qcow2': [('all', 0xff, 16, 1)],
        'zlib.qcow2': [('compressed-convert', WRITE | CHECK | CONVERT, 0, 0)],
        'zstd.qcow2': [('compressed-snap', SNAP_CREATE | WRITE | SNAP_APPLY | CONVERT, 0, 0)],
    }
    more = {  # byte 3: rebase -u onto base.raw, make empty (commit's last step)
        'overlay.qcow2': [('rebase-empty', CHAIN | WRITE, 0, 1, REBASE | MAKE_EMPTY)],
        'data.qcow2': [('rebase-check', CHECK | CONVERT, 0, 0, REBASE)],
        'snap.qcow2': [('empty-snapshots', WRITE | SNAP_DELETE, 0, 2, MAKE_EMPTY)],
    }
    for img, seeds in more.items():
        plans.setdefault(img, []).extend(seeds)
    for img, seeds in plans.items():
        with open(os.path.join(corpus, img), 'rb') as f:
            data = f.read()
        for seed, ops, size, where, *op2 in seeds:
            write('qcow2-ops', seed, bytes([ops, size, where, op2[0] if op2 else 0, 0, 0, 0, 0]) + data)


# ---- vsock-handshake (fuzz_vsock_handshake.c) ----
# flags (bit 0: the guest refuses, bit 1: two writes), split, then the bytes.

def vsock_handshake():
    seeds = {
        'connect-data': (0, 0, b'CONNECT 5000\nhello, guest'),
        'connect-split': (2, 5, b'CONNECT 5000\nafter'),
        'connect-refused': (1, 0, b'CONNECT 7\n'),
        'connect-max-port': (0, 0, b'CONNECT 4294967295\n'),
        'connect-too-big': (0, 0, b'CONNECT 4294967296\n'),
        'connect-zeros': (0, 0, b'CONNECT 00000000000000000000000\n'),
        'connect-nul': (0, 0, b'CONNECT 5\x00junk\n'),
        'connect-space': (0, 0, b'CONNECT 5 \n'),
        'lowercase': (0, 0, b'connect 5\n'),
        'empty-line': (0, 0, b'\n'),
        'long-line': (2, 31, b'CONNECT 1234567890123456789012345\n'),
        'no-newline': (0, 0, b'CONNECT 5'),
        'two-lines': (0, 0, b'CONNECT 1\nCONNECT 2\n'),
    }
    for name, (flags, split, text) in seeds.items():
        write('vsock-handshake', name, bytes([flags, split]) + text)


# ---- agent-proto (fuzz_agent_proto.c) ----
# The byte stream a host or an agent receives: frames back to back.

def agent_frame(t, payload):
    if isinstance(payload, dict):
        payload = json.dumps(payload).encode()
    return bytes([t]) + len(payload).to_bytes(3, 'big') + payload


def agent_proto():
    REQUEST, REPLY, STDIN, CONTROL, DATA = 1, 2, 3, 7, 8
    seeds = {
        'ping': [(REQUEST, {'op': 'ping'})],
        'info': [(REQUEST, {'op': 'info'})],
        'exec-all-keys': [(REQUEST, {'op': 'exec', 'argv': ['sh', '-c', 'cat'], 'env': ['A=1', 'LANG=C'],
                                     'cwd': '/root', 'tty': True, 'rows': 24, 'cols': 80}),
                          (CONTROL, {'rows': 50, 'cols': 132}), (STDIN, b'hello\n'), (STDIN, b''),
                          (CONTROL, {'signal': 15})],
        'exec-bad-env': [(REQUEST, {'op': 'exec', 'argv': ['ls'], 'env': ['NOEQUALS']})],
        'read-file': [(REQUEST, {'op': 'read-file', 'path': '/etc/hostname'})],
        'write-file': [(REQUEST, {'op': 'write-file', 'path': '/root/x', 'mode': 0o600, 'size': 5}),
                       (DATA, b'12345'), (DATA, b'')],
        'shutdown': [(REQUEST, {'op': 'shutdown', 'reboot': True})],
        'set-time': [(REQUEST, {'op': 'set-time', 'time': 1765100000.25})],
        'reply-unicode': [(REPLY, {'ok': True, 'os': {'pretty_name': 'D\u00e9bian'}, 'n': [1, 2.5, None]})],
        'max-frame': [(DATA, b'\0' * 65536), (REQUEST, {'op': 'ping'})],
    }
    for name, frames in seeds.items():
        write('agent-proto', name, b''.join(agent_frame(t, p) for t, p in frames))
    write('agent-proto', 'oversize', b'\x08\x01\x00\x01' + b'x' * 16)
    write('agent-proto', 'cut-header', b'\x01\x00')
    write('agent-proto', 'cut-payload', b'\x01\x00\x00\x10{"op":')


# ---- virtio-gpu (fuzz_virtio_gpu.c) ----

def virtio_gpu():
    def hdr(t, flags=0, fence=0):
        return struct.pack('<IIQIB3x', t, flags, fence, 0, 0)

    def ctrl(cmd, resp=2048, split=False):
        return bytes([0x80 if split else 0]) + struct.pack('<HH', len(cmd), resp) + cmd

    def cursor(t, res, x, y, hx=0, hy=0, scanout=0):
        c = hdr(t) + struct.pack('<IIII', scanout, x, y, 0) + struct.pack('<IIII', res, hx, hy, 0)
        return bytes([1]) + struct.pack('<H', len(c)) + c

    INFO, CREATE, UNREF, SCANOUT, FLUSH, XFER, ATTACH, DETACH = range(0x100, 0x108)
    EDID, UPDATE, MOVE = 0x10a, 0x300, 0x301
    BGRX = 2

    def create(res, w, h, fmt=BGRX):
        return ctrl(hdr(CREATE) + struct.pack('<IIII', res, fmt, w, h))

    def attach(res, entries):
        return ctrl(hdr(ATTACH) + struct.pack('<II', res, len(entries)) +
                    b''.join(struct.pack('<QII', a, n, 0) for a, n in entries), split=True)

    def rect(x, y, w, h):
        return struct.pack('<IIII', x, y, w, h)

    pipeline = (create(1, 64, 32) + attach(1, [(0x100000, 4096), (0x300000, 64 * 32 * 4 - 4096)]) +
                ctrl(hdr(XFER, 1, 7) + rect(0, 0, 64, 32) + struct.pack('<QII', 0, 1, 0)) +
                ctrl(hdr(XFER) + rect(3, 4, 5, 6) + struct.pack('<QII', 4 * 64 * 4 + 12, 1, 0)) +
                ctrl(hdr(SCANOUT) + rect(2, 2, 40, 20) + struct.pack('<II', 0, 1)) +
                ctrl(hdr(FLUSH) + rect(0, 0, 64, 32) + struct.pack('<II', 1, 0)) +
                ctrl(hdr(DETACH) + struct.pack('<II', 1, 0)) + ctrl(hdr(UNREF) + struct.pack('<II', 1, 0)))
    write('virtio-gpu', 'info-edid', b'\x01' + ctrl(hdr(INFO)) + ctrl(hdr(EDID) + struct.pack('<II', 0, 0)) +
          b'\x02' + struct.pack('<HH', 1280, 800) + ctrl(hdr(INFO)))
    write('virtio-gpu', 'pipeline', b'\x00' + pipeline)
    write('virtio-gpu', 'cursor', b'\x00' + create(5, 64, 64, 1) + attach(5, [(0x200000, 64 * 64 * 4)]) +
          ctrl(hdr(XFER) + rect(0, 0, 64, 64) + struct.pack('<QII', 0, 5, 0)) +
          cursor(UPDATE, 5, 10, 10, 1, 2) + cursor(MOVE, 0, 20, 30) + cursor(UPDATE, 0, 0, 0))
    write('virtio-gpu', 'hostile', b'\x00' + create(0, 8, 8) + create(2, 0xffffffff, 1) + create(3, 16384, 16384) +
          attach(9, [(0, 16)]) + create(2, 8, 8) + attach(2, [(0xfffffffffffff000, 8192)]) +
          attach(2, [(0x100000, 100)]) + ctrl(hdr(XFER) + rect(0xffffffff, 0, 2, 1) + struct.pack('<QII', 0, 2, 0)) +
          ctrl(hdr(0x200)) + ctrl(hdr(INFO), resp=24) + ctrl(hdr(INFO), resp=8) + b'\x03' + pipeline)


# ---- virtio-input (fuzz_virtio_input.c) ----

def virtio_input():
    """A driver that reads the config, posts event buffers and LED changes."""
    DESC, EVQ_T, STQ_T, BUFS = 0x1000, 0x1000, 0x2000, 0x3000
    EV_LED, LED_NUML, LED_CAPSL = 0x11, 0, 1

    def seed(kind, frames, ev_bufs, status, selects, qpow=6, mode_bits=0):
        ram = bytearray(0x4000)
        # event queue: ev_bufs writable buffers of the given lengths
        for i, ln in enumerate(ev_bufs):
            struct.pack_into('<QIHH', ram, EVQ_T - DESC + 16 * i, BUFS + 16 * i, ln, 2, 0)
        # status queue: 8-byte readable buffers carrying (type, code, value)
        for i, (t, c, v) in enumerate(status):
            gpa = BUFS + 0x800 + 16 * i
            struct.pack_into('<QIHH', ram, STQ_T - DESC + 16 * i, gpa, 8, 0, 0)
            struct.pack_into('<HHi', ram, gpa - DESC, t, c, v)

        def avail(n):
            return struct.pack('<HH16H', 0, n, *range(16))
        sel = b''.join(bytes(p) for p in (selects + [(0, 0)] * 8)[:8])
        hdr = bytes([qpow, kind | mode_bits]) + sel + bytes([frames])
        return hdr + avail(len(ev_bufs)) + avail(len(status)) + bytes(ram)

    all_sel = [(1, 0), (2, 0), (3, 0), (0x10, 0), (0x11, 1), (0x11, 3), (0x12, 0), (0x11, 0x11)]
    write('virtio-input', 'keyboard-leds', seed(0, 4, [8] * 8, [(EV_LED, LED_NUML, 1), (EV_LED, LED_CAPSL, 1)],
                                                all_sel))
    write('virtio-input', 'tablet-frames', seed(1, 10, [8] * 16, [], all_sel, mode_bits=8))
    write('virtio-input', 'mouse-short-buffers', seed(2, 3, [4, 0, 8, 7, 8], [(0, 0, 0)], all_sel[2:],
                                                      mode_bits=4))
    write('virtio-input', 'ring-full', seed(1, 255, [8] * 2, [], [(0x12, 1), (0xff, 0xff)]))


TARGETS = {'virtio-input': virtio_input, 'virtio-pci': virtio_pci, 'virtio-gpu': virtio_gpu, 'net-slirp': net_slirp,
           'daemon': daemon, 'qcow2-ops': qcow2_ops,
           'vsock-handshake': vsock_handshake, 'agent-proto': agent_proto}

if __name__ == '__main__':
    for t in sys.argv[1:] or TARGETS:
        TARGETS[t]()
