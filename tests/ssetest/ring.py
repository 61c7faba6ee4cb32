"""What a server's event ring retains, computed from the ids the publishes
returned and the configured SSEBufferSize, not asked of the server under test.

The accounting is sse_ring.c's (see sse_ring.h, "Layout of the block"): a
record is a 24-byte header, 16 bytes per channel, the id, and the event's
frame (exactly the bytes a stream gets), rounded up to a multiple of 8; the
ring starts empty at offset 0; a record that does not fit before the end of
the data area starts at the beginning again; the oldest records are dropped
until the newest fits. Valid for a server whose ring holds only the records
a test published itself (a private httpd, no DELETE)."""
from .wire import wire_event

REC_HEADER = 24
REC_LINK = 16


def record_size(id, frame, nchan=1):
    """Bytes of the record of an event with this id and frame (bytes)."""
    return (REC_HEADER + REC_LINK * nchan + len(id.encode()) + len(frame) + 7) & ~7


def retained(frames, data_size):
    """Indices of the records still in a ring of data_size bytes after
    records of these sizes (or (id, frame) pairs) were written, oldest
    first."""
    sizes = [f if isinstance(f, int) else record_size(*f) for f in frames]
    head, starts = 0, []
    for size in sizes:
        room = data_size - head % data_size
        start = head if room >= size else head + room
        starts.append(start)
        head = start + size
    return [i for i, start in enumerate(starts) if head - start <= data_size]


def retained_events(sent, data_size):
    """sent: [(id, data bytes)] of single-channel events without event type
    or retry, in publishing order: those the ring still holds."""
    keep = retained([(i, wire_event(i, d)) for i, d in sent], data_size)
    return [sent[k] for k in keep]
