/*
 * bpftrace-style maps for C callers (the probe hit's fetch programs): the state of every
 * map of kprobe_shell/tracing/maps.py lives in kprobe_shell/tracing/_maps.c, and this is
 * how C code updates it without Python.
 *
 *     const struct cmaps_api *api = PyCapsule_Import(CMAPS_CAPSULE, 0);   (once, with the GIL)
 *     struct cmap *map = (struct cmap *)PyLong_AsVoidPtr(bpf_map.handle);
 *     uint8_t key[64], *p = key;
 *     p = cmap_key_str(p, comm, strlen(comm));
 *     p = cmap_key_int(p, pid);
 *     api->update(map, key, (uint32_t)(p - key), value);               (no GIL needed)
 *
 * A map's `struct cmap *` stays valid as long as its Python BpfMap is alive: whoever
 * keeps the pointer keeps a reference to the BpfMap.  Updates and Python's reads are not
 * locked against each other; they run on the same thread (the emulator's hooks).
 */
#ifndef KPROBE_SHELL_CMAPS_H
#define KPROBE_SHELL_CMAPS_H

#include <stdint.h>
#include <string.h>

#define CMAPS_CAPSULE "kprobe_shell.tracing._maps.API"

/* maps.MAP_KINDS, in its order: a map's kind is fixed when it is created. */
enum cmap_kind { CMAP_COUNT, CMAP_SUM, CMAP_MIN, CMAP_MAX, CMAP_AVG, CMAP_STATS, CMAP_HIST, CMAP_LHIST };

/* bpftrace's default max_map_keys: a map takes at most this many keys, then drops. */
#define CMAP_MAX_KEYS 4096

/*
 * The key: the canonical encoding of the key tuple, its parts one after the other.
 *   'i' + 8 bytes little-endian int64      an integer in [-2^63, 2^63)
 *   'u' + 8 bytes little-endian uint64     an integer in [2^63, 2^64) only (a u64 field
 *                                          with its top bit set); smaller ones are 'i'
 *   's' + u16 little-endian length + bytes  a string, as UTF-8
 * keylen 0: the map has no key (@name = count()).
 */
#define CMAP_KEY_INT 'i'
#define CMAP_KEY_UINT 'u'
#define CMAP_KEY_STR 's'
#define CMAP_KEY_STR_MAX 0xffff

static inline uint8_t *cmap_key_u64(uint8_t *p, uint8_t tag, uint64_t v)
{
    *p++ = tag;
    for (int i = 0; i < 8; i++)
        *p++ = (uint8_t)(v >> (8 * i));
    return p;
}

/* A signed integer part (s8..s64 fields, pid, cpu, retval). */
static inline uint8_t *cmap_key_int(uint8_t *p, int64_t v)
{
    return cmap_key_u64(p, CMAP_KEY_INT, (uint64_t)v);
}

/* An unsigned integer part (u8..u64 fields): 'u' only when it does not fit an int64. */
static inline uint8_t *cmap_key_uint(uint8_t *p, uint64_t v)
{
    return cmap_key_u64(p, v >> 63 ? CMAP_KEY_UINT : CMAP_KEY_INT, v);
}

/* A string part; len at most CMAP_KEY_STR_MAX. */
static inline uint8_t *cmap_key_str(uint8_t *p, const void *s, uint16_t len)
{
    *p++ = CMAP_KEY_STR;
    *p++ = (uint8_t)len;
    *p++ = (uint8_t)(len >> 8);
    memcpy(p, s, len);
    return p + len;
}

struct cmap;

struct cmaps_api {
    /* One update: value as a signed 64-bit number (ignored by count()).  Returns 0, or -1
     * when the key is new and the map is full (counted as dropped, as a BPF hash map's
     * update fails at max_entries). */
    int (*update)(struct cmap *map, const uint8_t *key, uint32_t keylen, int64_t value);
    /* The same with an unsigned 64-bit value (a u64 field above 2^63 - 1). */
    int (*update_unsigned)(struct cmap *map, const uint8_t *key, uint32_t keylen, uint64_t value);
    /* The map's enum cmap_kind. */
    int (*kind)(const struct cmap *map);
};

#endif
