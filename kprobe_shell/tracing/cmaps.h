/*
 * bpftrace-style maps for C callers (the probe hit's fetch programs): the state of every
 * map of kprobe_shell/tracing/maps.py lives in kprobe_shell/tracing/_maps.c, and this is
 * how C code updates it without Python.
 *
 *     const struct cmaps_api *api = PyCapsule_Import(CMAPS_CAPSULE, 0);   (once, with the GIL)
 *     struct cmap *map = (struct cmap *)PyLong_AsVoidPtr(bpf_map.handle);
 *     uint8_t key[64], *p = key;
 *     p = cmap_key_latin1_str(p, comm, comm_len);
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
 *   's' + u16 little-endian length + bytes  a string: the UTF-8 of the text Python shows
 *                                          (a C caller turns guest bytes into it with
 *                                          cmap_key_guest_str or cmap_key_latin1_str)
 *   'S' + u16 length + bytes                text with lone surrogates (Python keys only)
 * keylen 0: the map has no key (@name = count()).  Two keys are the same key only when
 * their encodings are the same bytes, hence one encoding for each value.
 */
#define CMAP_KEY_INT 'i'
#define CMAP_KEY_UINT 'u'
#define CMAP_KEY_STR 's'
#define CMAP_KEY_SURROGATES 'S'
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

/* A string part that is already the text's UTF-8; len at most CMAP_KEY_STR_MAX. */
static inline uint8_t *cmap_key_str(uint8_t *p, const void *s, uint16_t len)
{
    *p++ = CMAP_KEY_STR;
    *p++ = (uint8_t)len;
    *p++ = (uint8_t)(len >> 8);
    memcpy(p, s, len);
    return p + len;
}

/* The length of the well-formed UTF-8 sequence at s (1 to 4), or 0: the rules of
 * Python's strict decoder (no overlong forms, no surrogates, nothing above U+10FFFF). */
static inline uint32_t cmap_utf8_sequence(const uint8_t *s, uint32_t n)
{
    uint8_t b = s[0];
    if (b < 0x80)
        return 1;
    uint32_t len = b >= 0xc2 && b <= 0xdf ? 2 : b >= 0xe0 && b <= 0xef ? 3 : b >= 0xf0 && b <= 0xf4 ? 4 : 0;
    if (!len || len > n)
        return 0;
    uint8_t lo = b == 0xe0 ? 0xa0 : b == 0xf0 ? 0x90 : 0x80;
    uint8_t hi = b == 0xed ? 0x9f : b == 0xf4 ? 0x8f : 0xbf;
    if (s[1] < lo || s[1] > hi)
        return 0;
    for (uint32_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    return len;
}

/* A string part from guest bytes as a :string fetch arg shows them (fetch.py's
 * decode_string: UTF-8, each byte of an ill-formed sequence as the four characters \xNN).
 * p needs room for 3 + 4 * len bytes; the text is cut at CMAP_KEY_STR_MAX bytes. */
static inline uint8_t *cmap_key_guest_str(uint8_t *p, const uint8_t *raw, uint32_t len)
{
    static const char hex[] = "0123456789abcdef";
    uint8_t *start = p;
    uint32_t n = 0;
    p += 3;
    for (uint32_t i = 0; i < len;) {
        uint32_t seq = cmap_utf8_sequence(raw + i, len - i);
        uint32_t width = seq ? seq : 4;
        if (n + width > CMAP_KEY_STR_MAX)
            break;
        if (seq) {
            memcpy(p + n, raw + i, seq);
            i += seq;
        } else {
            p[n] = '\\', p[n + 1] = 'x', p[n + 2] = (uint8_t)hex[raw[i] >> 4], p[n + 3] = (uint8_t)hex[raw[i] & 15];
            i++;
        }
        n += width;
    }
    start[0] = CMAP_KEY_STR;
    start[1] = (uint8_t)n;
    start[2] = (uint8_t)(n >> 8);
    return p + n;
}

/* A string part from bytes Python decodes as Latin-1 (a task's comm: tasks.py's _comm).
 * p needs room for 3 + 2 * len bytes. */
static inline uint8_t *cmap_key_latin1_str(uint8_t *p, const uint8_t *raw, uint32_t len)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < len && n + 2 <= CMAP_KEY_STR_MAX; i++) {
        if (raw[i] < 0x80)
            p[3 + n++] = raw[i];
        else {
            p[3 + n++] = (uint8_t)(0xc0 | raw[i] >> 6);
            p[3 + n++] = (uint8_t)(0x80 | (raw[i] & 0x3f));
        }
    }
    p[0] = CMAP_KEY_STR;
    p[1] = (uint8_t)n;
    p[2] = (uint8_t)(n >> 8);
    return p + 3 + n;
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
