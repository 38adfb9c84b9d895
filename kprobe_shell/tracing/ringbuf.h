/*
 * The trace ring buffer's interface for recorders written in C (see _ring.c).
 *
 * The buffer is ftrace's (kernel/trace/ring_buffer.c): per CPU, data pages of 4096 bytes,
 * each a buffer_data_page (u64 time stamp, local_t commit) then events, each a 32-bit
 * header (type_len:5, time_delta:27), a time extend first when the gap from the event
 * before needs more than 27 bits, type_len 0 with the length in array[0] for records of
 * more than 112 bytes.  A recorder asks for room for one record and writes it in place:
 *
 *     uint8_t *rec = api->reserve(ring, cpu, time_ns, len, pid, comm);
 *     if (rec) { ...write the record...; api->commit(ring, cpu); }
 *
 * The record is tracedat.EventFormat.record's layout (kernel/trace/trace_probe.c):
 *   struct trace_entry { u16 common_type; u8 common_flags; u8 common_preempt_count; s32 common_pid; }
 *   u64 __probe_ip                          (an entry event), or
 *   u64 __probe_func; u64 __probe_ret_ip    (a return event),
 *   each argument's field packed in order (1, 2, 4 or 8 bytes, little endian; a string
 *   is a u32 __data_loc: length << 16 | offset from the record's start),
 *   then the strings' bytes, each with its NUL (the length counts it).
 * reserve writes nothing in the record: it is zeroed (padding included), the recorder
 * writes all of it, trace_entry too (common_type is the event's id as the TraceBuffer
 * gave it, TraceBuffer.event_id).
 *
 * A fetch that faulted: its field holds 0 (a string: an empty string, length 1, its NUL
 * alone, as tracedat.EventFormat.record stores a faulted string), and the record's
 * fault mask, kept beside the record as its sequence number is (not in the page: a
 * trace.dat reader sees what the kernel would have stored), has bit i set for argument
 * i; the text shows "(fault)" there.  set_faults sets the mask of the record reserved
 * last on cpu, before its commit.
 *
 * reserve and commit touch no Python object: they run from unicorn's hooks without the
 * GIL.  One recorder at a time per ring (the emulator runs one CPU at a time), and no
 * reader meanwhile: the ring is read (rendered, saved) from Python while the guest does
 * not run, or from the run's own thread (the live output at a stop).
 *
 * When a page switch leaves the ring about to overwrite lines the live output has not
 * printed, the ring sets the stop words it was given (struct icount.stop_asked of each
 * CPU, machine/_clock.c): the CPU stops at its next block, the run loop has the output
 * print (Machine.on_stop_asked) and runs on.
 */
#ifndef KPROBE_SHELL_RINGBUF_H
#define KPROBE_SHELL_RINGBUF_H

#include <stdint.h>

#define RING_API_CAPSULE "kprobe_shell.tracing._ring.API"

struct trace_ring;  /* opaque: a TraceBuffer's ring (its `ring.handle` as an integer) */

struct ring_api {
    /* Room for one event record of len bytes (trace_entry, the probe's fields, the args,
     * the __data_loc strings: tracedat.EventFormat.record's layout) on cpu at time_ns, by
     * task pid named comm (16 bytes, NUL padded).  NULL: not kept (overwrite off and
     * full: counted as dropped).  While a live output follows the ring (the shell prints
     * every event it records, kept or not), a record the full buffer refuses still gets
     * room beside the ring: counted as dropped, printed, then forgotten; NULL only when
     * that room is full too. */
    uint8_t *(*reserve)(struct trace_ring *ring, int cpu, uint64_t time_ns, uint32_t len, int32_t pid,
                        const char *comm);
    void (*commit)(struct trace_ring *ring, int cpu);   /* the record reserved last on cpu is complete */
    /* Bit i: argument i of the record reserved last on cpu faulted (before its commit). */
    void (*set_faults)(struct trace_ring *ring, int cpu, uint64_t arg_mask);
};

#endif
