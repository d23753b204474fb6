/*
 * test_wire.c - host unit test of edgemer_wire.c against the shared vectors (test_vectors.txt).
 *
 *   cc -std=c99 -Wall -Wextra -Werror -pedantic -o test_wire test_wire.c edgemer_wire.c
 *   ./test_wire test_vectors.txt
 *
 * Prints one line per failure and a last line "N passed, M failed"; exits 1 on any failure.
 * (Test code may use the hosted C library; edgemer_wire.c itself does not.)
 */
#include "edgemer_wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LINE 8192
#define MAX_FIELDS 32
#define MAX_BYTES 1024

static int passed, failed;

typedef struct {
    char kind[32];
    char name[64];
    int n;
    char *key[MAX_FIELDS];
    char *val[MAX_FIELDS];
} vector_t;

static void check(int ok, const vector_t *v, const char *what) {
    if (ok) {
        passed++;
    } else {
        failed++;
        printf("FAIL %s %s: %s\n", v->kind, v->name, what);
    }
}

static const char *get(const vector_t *v, const char *key) {
    int i;
    for (i = 0; i < v->n; i++)
        if (strcmp(v->key[i], key) == 0) return v->val[i];
    return NULL;
}

static long num(const vector_t *v, const char *key) {
    const char *s = get(v, key);
    return s ? strtol(s, NULL, 10) : 0;
}

static unsigned long unum(const vector_t *v, const char *key) {
    const char *s = get(v, key);
    return s ? strtoul(s, NULL, 10) : 0;
}

static float fnum(const vector_t *v, const char *key) {
    const char *s = get(v, key);
    return s ? (float)strtod(s, NULL) : 0.0f; /* double then float: the rounding Python's struct uses */
}

static size_t unhex(const char *s, uint8_t *out, size_t cap) {
    size_t n = 0;
    unsigned int b;
    if (!s) return 0;
    while (s[0] && s[1] && n < cap) {
        if (sscanf(s, "%2x", &b) != 1) break;
        out[n++] = (uint8_t)b;
        s += 2;
    }
    return n;
}

static int parse_line(char *line, vector_t *v) {
    char *tok = strtok(line, " \t\r\n");
    if (!tok || tok[0] == '#') return 0;
    strncpy(v->kind, tok, sizeof v->kind - 1);
    v->kind[sizeof v->kind - 1] = 0;
    tok = strtok(NULL, " \t\r\n");
    if (!tok) return 0;
    strncpy(v->name, tok, sizeof v->name - 1);
    v->name[sizeof v->name - 1] = 0;
    v->n = 0;
    while ((tok = strtok(NULL, " \t\r\n")) != NULL && v->n < MAX_FIELDS) {
        char *eq = strchr(tok, '=');
        if (!eq) continue;
        *eq = 0;
        v->key[v->n] = tok;
        v->val[v->n] = eq + 1;
        v->n++;
    }
    return 1;
}

static uint8_t format_code(const char *s) {
    static const char *names[] = {"i8", "u8", "i16", "u16", "i32", "f32"};
    int i;
    for (i = 0; i < 6; i++)
        if (s && strcmp(s, names[i]) == 0) return (uint8_t)(i + 1);
    return 0;
}

static uint8_t type_code(const char *s) {
    static const struct {
        const char *name;
        uint8_t code;
    } types[] = {{"samples", EMW_SAMPLES}, {"descriptor", EMW_DESCRIPTOR}, {"info", EMW_INFO}, {"pong", EMW_PONG},
                 {"ack", EMW_ACK},         {"hello", EMW_HELLO},           {"start", EMW_START}, {"stop", EMW_STOP},
                 {"set_rate", EMW_SET_RATE}, {"ping", EMW_PING}};
    size_t i;
    for (i = 0; i < sizeof types / sizeof types[0]; i++)
        if (s && strcmp(s, types[i].name) == 0) return types[i].code;
    return 0;
}

/* Values of a samples vector in the C type of its format, packed in `buf`. */
static void pack_values(const vector_t *v, uint8_t format, uint8_t *buf) {
    char copy[MAX_LINE];
    char *tok;
    size_t i = 0;
    strncpy(copy, get(v, "values"), sizeof copy - 1);
    copy[sizeof copy - 1] = 0;
    for (tok = strtok(copy, ","); tok; tok = strtok(NULL, ","), i++) {
        switch (format) {
        case EMW_I8: { int8_t x = (int8_t)strtol(tok, NULL, 10); memcpy(buf + i, &x, 1); break; }
        case EMW_U8: { uint8_t x = (uint8_t)strtoul(tok, NULL, 10); memcpy(buf + i, &x, 1); break; }
        case EMW_I16: { int16_t x = (int16_t)strtol(tok, NULL, 10); memcpy(buf + 2 * i, &x, 2); break; }
        case EMW_U16: { uint16_t x = (uint16_t)strtoul(tok, NULL, 10); memcpy(buf + 2 * i, &x, 2); break; }
        case EMW_I32: { int32_t x = (int32_t)strtol(tok, NULL, 10); memcpy(buf + 4 * i, &x, 4); break; }
        case EMW_F32: { float x = (float)strtod(tok, NULL); memcpy(buf + 4 * i, &x, 4); break; }
        default: break;
        }
    }
}

static size_t encode_vector(const vector_t *v, uint8_t *out) {
    uint8_t type = type_code(get(v, "type"));
    uint16_t seq = (uint16_t)unum(v, "seq");
    uint32_t t_us = (uint32_t)unum(v, "t_us");
    switch (type) {
    case EMW_SAMPLES: {
        uint8_t values[EMW_MAX_PAYLOAD];
        uint8_t format = format_code(get(v, "format"));
        pack_values(v, format, values);
        return emw_encode_samples(out, EMW_MAX_WIRE, (uint8_t)num(v, "stream"), format, seq, t_us,
                                  (uint8_t)num(v, "channels"), (uint8_t)num(v, "count"), values);
    }
    case EMW_DESCRIPTOR: {
        emw_descriptor_t d;
        d.stream_id = (uint8_t)num(v, "stream");
        d.name = get(v, "name");
        d.unit = get(v, "unit");
        d.rate_hz = fnum(v, "rate_hz");
        d.scale = fnum(v, "scale");
        d.offset = fnum(v, "offset");
        d.format = format_code(get(v, "format"));
        d.channels = (uint8_t)num(v, "channels");
        return emw_encode_descriptor(out, EMW_MAX_WIRE, seq, t_us, &d);
    }
    case EMW_INFO:
        return emw_encode_info(out, EMW_MAX_WIRE, seq, t_us, (uint8_t)num(v, "reason"), (uint8_t)num(v, "n_streams"),
                               get(v, "name"), get(v, "firmware"));
    case EMW_PONG: return emw_encode_pong(out, EMW_MAX_WIRE, seq, t_us, (uint32_t)unum(v, "token"));
    case EMW_ACK:
        return emw_encode_ack(out, EMW_MAX_WIRE, seq, t_us, (uint8_t)num(v, "stream"), (uint8_t)num(v, "command"),
                              (uint8_t)num(v, "status"), (uint16_t)num(v, "command_seq"));
    default: {
        emw_command_t c;
        c.type = type;
        c.stream = (uint8_t)num(v, "stream");
        c.seq = seq;
        c.t_us = t_us;
        c.rate_hz = fnum(v, "rate_hz");
        c.token = (uint32_t)unum(v, "token");
        return emw_encode_command(out, EMW_MAX_WIRE, &c);
    }
    }
}

static void test_crc(const vector_t *v) {
    uint8_t data[MAX_BYTES];
    size_t n = unhex(get(v, "data"), data, sizeof data);
    unsigned long want = strtoul(get(v, "crc"), NULL, 16);
    check(emw_crc16(data, n) == want, v, "CRC value");
}

static void test_cobs(const vector_t *v) {
    uint8_t data[MAX_BYTES], enc[MAX_BYTES], out[MAX_BYTES];
    size_t n = unhex(get(v, "data"), data, sizeof data);
    size_t m = unhex(get(v, "encoded"), enc, sizeof enc), k, got;
    k = emw_cobs_encode(data, n, out, sizeof out);
    check(k == m && memcmp(out, enc, m) == 0, v, "COBS encoding");
    check(emw_cobs_decode(enc, m, out, sizeof out, &got) == 0 && got == n && memcmp(out, data, n) == 0, v,
          "COBS decoding");
    memcpy(out, enc, m); /* in place, as the parser decodes */
    check(emw_cobs_decode(out, m, out, sizeof out, &got) == 0 && got == n && memcmp(out, data, n) == 0, v,
          "COBS decoding in place");
}

static void test_frame(const vector_t *v) {
    uint8_t out[EMW_MAX_WIRE + 8], wire[MAX_BYTES], raw[MAX_BYTES], scratch[EMW_MAX_FRAME];
    size_t n = encode_vector(v, out);
    size_t wn = unhex(get(v, "wire"), wire, sizeof wire), rn = unhex(get(v, "raw"), raw, sizeof raw), plen, i;
    emw_header_t h;
    const uint8_t *payload;
    int r;
    check(n == wn && memcmp(out, wire, wn) == 0, v, "C encoder reproduces the wire bytes");
    r = emw_decode(wire + 1, wn - 2, scratch, &h, &payload, &plen);
    check(r == EMW_OK, v, "decodes");
    if (r != EMW_OK) return;
    check(plen + EMW_HEADER_SIZE + EMW_CRC_SIZE == rn && memcmp(scratch, raw, rn) == 0, v, "raw frame bytes");
    check(h.type == type_code(get(v, "type")) && h.seq == (uint16_t)unum(v, "seq") &&
              h.t_us == (uint32_t)unum(v, "t_us"),
          v, "header type, seq, t_us");
    if (get(v, "stream")) check(h.stream == (uint8_t)num(v, "stream"), v, "header stream");
    if (h.type >= EMW_HELLO) { /* a host command: the byte parser must return it */
        emw_parser_t p;
        emw_command_t c;
        int got = 0;
        emw_parser_init(&p);
        for (i = 0; i < wn; i++) got += emw_parser_feed(&p, wire[i], &c);
        check(got == 1 && c.type == h.type && c.stream == h.stream && c.seq == h.seq, v, "parser returns the command");
        if (h.type == EMW_SET_RATE) check(c.rate_hz == fnum(v, "rate_hz"), v, "parser rate_hz");
        if (h.type == EMW_PING) check(c.token == (uint32_t)unum(v, "token"), v, "parser token");
    }
}

static int error_code(const char *s) {
    static const char *names[] = {"ok", "oversize", "cobs", "short", "crc", "version", "type", "length"};
    int i;
    for (i = 0; i < EMW_RESULT_COUNT; i++)
        if (s && strcmp(s, names[i]) == 0) return i;
    return -1;
}

static void test_reject(const vector_t *v) {
    uint8_t wire[MAX_BYTES], scratch[MAX_BYTES];
    size_t wn = unhex(get(v, "wire"), wire, sizeof wire), plen, i;
    emw_header_t h;
    const uint8_t *payload;
    emw_parser_t p;
    emw_command_t c;
    int want = error_code(get(v, "error")), got = 0;
    check(emw_decode(wire + 1, wn - 2, scratch, &h, &payload, &plen) == want, v, "rejected for the stated reason");
    emw_parser_init(&p);
    for (i = 0; i < wn; i++) got += emw_parser_feed(&p, wire[i], &c);
    check(got == 0 && p.rejected == 1 && p.errors[want] == 1 && p.bytes_discarded == wn - 2, v,
          "parser counts it and discards its bytes");
}

/* Random bytes with valid commands mixed in: the parser never crashes, finds every intact command. */
static void test_garbage(void) {
    vector_t v;
    uint8_t out[EMW_MAX_WIRE];
    emw_parser_t p;
    emw_command_t c;
    emw_command_t ping;
    uint32_t x = 12345u;
    int round, sent = 0, got = 0, ok = 1;
    size_t i, n;
    memset(&v, 0, sizeof v);
    strcpy(v.kind, "fuzz");
    strcpy(v.name, "garbage-and-commands");
    emw_parser_init(&p);
    ping.type = EMW_PING;
    ping.stream = EMW_NO_STREAM;
    ping.t_us = 0;
    ping.rate_hz = 0.0f;
    for (round = 0; round < 20000; round++) {
        size_t burst;
        x = x * 1664525u + 1013904223u;
        burst = (x >> 16) % 300u;
        for (i = 0; i < burst; i++) {
            x = x * 1664525u + 1013904223u;
            got += emw_parser_feed(&p, (uint8_t)(x >> 24), &c);
        }
        ping.seq = (uint16_t)round;
        ping.token = x;
        n = emw_encode_command(out, sizeof out, &ping);
        for (i = 0; i < n; i++) {
            if (emw_parser_feed(&p, out[i], &c)) {
                got++;
                if (c.type != EMW_PING || c.token != ping.token || c.seq != ping.seq) ok = 0;
            }
        }
        sent++;
    }
    check(ok, &v, "commands after garbage are intact");
    check(got >= sent && got <= sent + 2, &v, "every command after a garbage burst is recovered");
}

int main(int argc, char **argv) {
    char line[MAX_LINE];
    FILE *f;
    vector_t v;
    if (argc != 2) {
        fprintf(stderr, "usage: %s test_vectors.txt\n", argv[0]);
        return 2;
    }
    f = fopen(argv[1], "r");
    if (!f) {
        perror(argv[1]);
        return 2;
    }
    while (fgets(line, sizeof line, f)) {
        if (!parse_line(line, &v)) continue;
        if (strcmp(v.kind, "crc") == 0) test_crc(&v);
        else if (strcmp(v.kind, "cobs") == 0) test_cobs(&v);
        else if (strcmp(v.kind, "frame") == 0) test_frame(&v);
        else if (strcmp(v.kind, "reject") == 0) test_reject(&v);
        else check(0, &v, "unknown vector kind");
    }
    fclose(f);
    test_garbage();
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
