"""The migration stream: what crosses the link, as records framed the way Xen frames its own.

Xen's migration stream (v2, tools/libs/guest/xg_sr_stream_format.h) is a sequence of records,
each a header -- type (32 bits), body length (32 bits) -- then the body, padded to 8 bytes:

    +--------+--------+---------------------------+
    |  type  | length |  body ... (padded to 8)   |
    +--------+--------+---------------------------+

Memory travels in PAGE_DATA records (type 1) of at most 1,024 pages each (Xen's MAX_BATCH_SIZE):
a count (32 bits) and 32 reserved bits, each page's frame number (64 bits), then the pages
themselves. vlab's own records (types from 0x100, not Xen's) carry the rest of a VM: its shape,
each vCPU's saved core and state, each device's registers (vlab.hyp.snapshot).
"""

from __future__ import annotations

import enum
import struct

PAGE = 0x1000
HEADER = struct.Struct("<II")  # type, body length
MAX_BATCH = 1024  # pages per PAGE_DATA record, as Xen's MAX_BATCH_SIZE


class Record(enum.IntEnum):
    END = 0x0000  # Xen's REC_TYPE_END: the stream is complete
    PAGE_DATA = 0x0001  # Xen's REC_TYPE_PAGE_DATA
    VM_CONFIG = 0x0100  # vlab: RAM size, vCPUs, trap controls, weight and cap
    VCPU_CONTEXT = 0x0101  # vlab: one vCPU's saved core (Unicorn's, whole)
    VCPU_STATE = 0x0102  # vlab: one vCPU's scheduling state, counter and timers
    DEVICE = 0x0103  # vlab: one device's registers


def record(kind: Record, body: bytes) -> bytes:
    """One record: its header, then `body` padded to a multiple of 8 bytes."""
    return HEADER.pack(kind, len(body)) + body + bytes(-len(body) % 8)


def records(data: bytes) -> list[tuple[Record, bytes]]:
    """The records of a stream, in order; ValueError for a stream that is cut short or malformed."""
    out, at = [], 0
    while at < len(data):
        if at + HEADER.size > len(data):
            raise ValueError(f"the stream ends inside a record header at byte {at}")
        kind, length = HEADER.unpack_from(data, at)
        body = data[at + HEADER.size:at + HEADER.size + length]
        if len(body) != length:
            raise ValueError(f"a record of {length} bytes at byte {at} is cut short at {len(body)}")
        try:
            out.append((Record(kind), body))
        except ValueError:
            raise ValueError(f"unknown record type {kind:#x} at byte {at}") from None
        at += HEADER.size + length + (-length % 8)
    return out


def page_data(pages: list[tuple[int, bytes]]) -> bytes:
    """PAGE_DATA records for (IPA page, its 4 KB) pairs, in batches of at most MAX_BATCH."""
    out = []
    for first in range(0, len(pages), MAX_BATCH):
        batch = pages[first:first + MAX_BATCH]
        header = struct.pack(f"<II{len(batch)}Q", len(batch), 0, *(ipa // PAGE for ipa, _ in batch))
        out.append(record(Record.PAGE_DATA, header + b"".join(content for _, content in batch)))
    return b"".join(out)


def pages_of(body: bytes) -> list[tuple[int, bytes]]:
    """The (IPA page, 4 KB) pairs of one PAGE_DATA record's body."""
    count, _ = struct.unpack_from("<II", body)
    frames = struct.unpack_from(f"<{count}Q", body, 8)
    start = 8 + 8 * count
    if len(body) != start + count * PAGE:
        raise ValueError(f"a PAGE_DATA record of {count} pages is {len(body)} bytes, not {start + count * PAGE}")
    return [(pfn * PAGE, body[start + i * PAGE:start + (i + 1) * PAGE]) for i, pfn in enumerate(frames)]


def page_data_size(count: int) -> int:
    """Bytes on the wire for `count` pages (their records' headers and frame numbers included)."""
    batches = -(-count // MAX_BATCH)
    return batches * (HEADER.size + 8) + count * (8 + PAGE)
