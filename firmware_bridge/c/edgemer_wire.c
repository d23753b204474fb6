/*
 * edgemer_wire.c - edgemer wire protocol, version 1 (see edgemer_wire.h and ../PROTOCOL.md).
 * C99, no malloc, only <stdint.h> and <string.h>.
 */
#include "edgemer_wire.h"

/* -- little-endian helpers (independent of the MCU's byte order) ------------------------- */
static void put_u16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)(v & 0xFFu);
    p[1] = (uint8_t)(v >> 8);
}

static void put_u32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v & 0xFFu);
    p[1] = (uint8_t)((v >> 8) & 0xFFu);
    p[2] = (uint8_t)((v >> 16) & 0xFFu);
    p[3] = (uint8_t)(v >> 24);
}

static void put_f32(uint8_t *p, float v) {
    uint32_t u;
    memcpy(&u, &v, sizeof u); /* IEEE 754 binary32 assumed, as on every supported MCU */
    put_u32(p, u);
}

static uint16_t get_u16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

static uint32_t get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static float get_f32(const uint8_t *p) {
    uint32_t u = get_u32(p);
    float v;
    memcpy(&v, &u, sizeof v);
    return v;
}

static size_t format_width(uint8_t format) {
    switch (format) {
    case EMW_I8:
    case EMW_U8: return 1u;
    case EMW_I16:
    case EMW_U16: return 2u;
    case EMW_I32:
    case EMW_F32: return 4u;
    default: return 0u;
    }
}

static int known_type(uint8_t type) {
    return (type >= EMW_SAMPLES && type <= EMW_ACK) || (type >= EMW_HELLO && type <= EMW_PING);
}

/* -- CRC and COBS -------------------------------------------------------------------------- */
uint16_t emw_crc16(const uint8_t *data, size_t len) {
    uint16_t crc = 0xFFFFu;
    size_t i;
    int bit;
    for (i = 0; i < len; i++) {
        crc ^= (uint16_t)((uint16_t)data[i] << 8);
        for (bit = 0; bit < 8; bit++) {
            crc = (crc & 0x8000u) ? (uint16_t)((crc << 1) ^ 0x1021u) : (uint16_t)(crc << 1);
        }
    }
    return crc;
}

size_t emw_cobs_encode(const uint8_t *src, size_t len, uint8_t *dst, size_t cap) {
    size_t out = 1, code_pos = 0, i;
    uint8_t code = 1;
    if (cap < (len == 0 ? 1u : len + (len + 253u) / 254u)) return 0; /* the longest possible encoding */
    for (i = 0; i < len; i++) {
        if (src[i] == 0) {
            dst[code_pos] = code;
            code_pos = out++;
            code = 1;
        } else {
            dst[out++] = src[i];
            code++;
            if (code == 0xFFu) {
                dst[code_pos] = code;
                if (i + 1 == len) return out; /* a full block ends the input: no final code */
                code_pos = out++;
                code = 1;
            }
        }
    }
    dst[code_pos] = code;
    return out;
}

int emw_cobs_decode(const uint8_t *src, size_t len, uint8_t *dst, size_t cap, size_t *out_len) {
    size_t in = 0, out = 0, end, j;
    uint8_t code;
    if (len == 0) {
        *out_len = 0;
        return 0;
    }
    for (;;) {
        code = src[in];
        if (code == 0) return -1;
        in++;
        end = in + code - 1u;
        if (end > len) return -1; /* the block runs past the end */
        if (out + (end - in) > cap) return -1;
        for (j = in; j < end; j++) {
            if (src[j] == 0) return -1;
        }
        memmove(dst + out, src + in, end - in);
        out += end - in;
        in = end;
        if (in >= len) break;
        if (code < 0xFFu) {
            if (out >= cap) return -1;
            dst[out++] = 0;
        }
    }
    *out_len = out;
    return 0;
}

/* -- frames --------------------------------------------------------------------------------- */
static int payload_ok(uint8_t type, uint8_t format, uint8_t channels, uint8_t count, const uint8_t *p, size_t n) {
    size_t name_len, unit_len;
    switch (type) {
    case EMW_SAMPLES:
        return format_width(format) != 0 && channels > 0 && count > 0 &&
               n == format_width(format) * channels * count;
    case EMW_DESCRIPTOR:
        if (format_width(format) == 0 || channels == 0 || count != 0 || n < 14u) return 0;
        name_len = p[12];
        if (name_len == 0 || name_len > EMW_MAX_NAME || n < 14u + name_len) return 0;
        unit_len = p[13 + name_len];
        return unit_len <= EMW_MAX_NAME && n == 14u + name_len + unit_len;
    case EMW_INFO:
        if (n < 4u || p[0] > EMW_INFO_BOOT) return 0;
        name_len = p[2];
        if (name_len > EMW_MAX_NAME || n < 4u + name_len) return 0;
        unit_len = p[3 + name_len]; /* firmware string length */
        return unit_len <= EMW_MAX_NAME && n == 4u + name_len + unit_len;
    case EMW_PONG:
    case EMW_ACK:
    case EMW_SET_RATE:
    case EMW_PING: return n == 4u;
    default: return n == 0u; /* HELLO, START, STOP */
    }
}

int emw_decode(const uint8_t *enc, size_t len, uint8_t *scratch, emw_header_t *h, const uint8_t **payload,
               size_t *payload_len) {
    size_t n, plen;
    if (len > EMW_MAX_ENCODED) return EMW_ERR_OVERSIZE;
    if (emw_cobs_decode(enc, len, scratch, EMW_MAX_FRAME, &n) != 0) return EMW_ERR_COBS;
    if (n < EMW_MIN_FRAME) return EMW_ERR_SHORT;
    if (emw_crc16(scratch, n) != 0) return EMW_ERR_CRC; /* CRC sent MSB first: an intact frame gives 0 */
    if (scratch[0] != EMW_VERSION) return EMW_ERR_VERSION;
    if (!known_type(scratch[1])) return EMW_ERR_TYPE;
    plen = n - EMW_HEADER_SIZE - EMW_CRC_SIZE;
    if (!payload_ok(scratch[1], scratch[3], scratch[10], scratch[11], scratch + EMW_HEADER_SIZE, plen))
        return EMW_ERR_LENGTH;
    h->version = scratch[0];
    h->type = scratch[1];
    h->stream = scratch[2];
    h->format = scratch[3];
    h->seq = get_u16(scratch + 4);
    h->t_us = get_u32(scratch + 6);
    h->channels = scratch[10];
    h->count = scratch[11];
    *payload = scratch + EMW_HEADER_SIZE;
    *payload_len = plen;
    return EMW_OK;
}

size_t emw_encode_frame(uint8_t *out, size_t cap, const emw_header_t *h, const uint8_t *payload,
                        size_t payload_len) {
    uint8_t f[EMW_MAX_FRAME];
    size_t n = EMW_HEADER_SIZE + payload_len, m;
    uint16_t crc;
    if (payload_len > EMW_MAX_PAYLOAD || cap < EMW_MAX_WIRE - EMW_MAX_FRAME + n + EMW_CRC_SIZE) return 0;
    f[0] = EMW_VERSION;
    f[1] = h->type;
    f[2] = h->stream;
    f[3] = h->format;
    put_u16(f + 4, h->seq);
    put_u32(f + 6, h->t_us);
    f[10] = h->channels;
    f[11] = h->count;
    if (payload_len) memcpy(f + EMW_HEADER_SIZE, payload, payload_len);
    crc = emw_crc16(f, n);
    f[n++] = (uint8_t)(crc >> 8);
    f[n++] = (uint8_t)(crc & 0xFFu);
    out[0] = 0;
    m = emw_cobs_encode(f, n, out + 1, cap - 2u);
    if (m == 0) return 0;
    out[1 + m] = 0;
    return m + 2u;
}

static void header_init(emw_header_t *h, uint8_t type, uint8_t stream, uint16_t seq, uint32_t t_us) {
    h->version = EMW_VERSION;
    h->type = type;
    h->stream = stream;
    h->format = 0;
    h->seq = seq;
    h->t_us = t_us;
    h->channels = 0;
    h->count = 0;
}

size_t emw_encode_samples(uint8_t *out, size_t cap, uint8_t stream, uint8_t format, uint16_t seq, uint32_t t_us,
                          uint8_t channels, uint8_t count, const void *values) {
    uint8_t payload[EMW_MAX_PAYLOAD];
    const uint8_t *v = (const uint8_t *)values;
    size_t width = format_width(format), n, i;
    emw_header_t h;
    if (width == 0 || channels == 0 || count == 0 || stream == EMW_NO_STREAM) return 0;
    n = (size_t)channels * count;
    if (n * width > EMW_MAX_PAYLOAD) return 0;
    for (i = 0; i < n; i++) {
        if (width == 1) {
            payload[i] = v[i];
        } else if (width == 2) {
            uint16_t x;
            memcpy(&x, v + 2 * i, 2);
            put_u16(payload + 2 * i, x);
        } else if (format == EMW_F32) {
            float x;
            memcpy(&x, v + 4 * i, 4);
            put_f32(payload + 4 * i, x);
        } else {
            uint32_t x;
            memcpy(&x, v + 4 * i, 4);
            put_u32(payload + 4 * i, x);
        }
    }
    header_init(&h, EMW_SAMPLES, stream, seq, t_us);
    h.format = format;
    h.channels = channels;
    h.count = count;
    return emw_encode_frame(out, cap, &h, payload, n * width);
}

size_t emw_encode_descriptor(uint8_t *out, size_t cap, uint16_t seq, uint32_t t_us, const emw_descriptor_t *d) {
    uint8_t payload[14u + 2u * EMW_MAX_NAME];
    size_t name_len = strlen(d->name), unit_len = strlen(d->unit), n = 12;
    emw_header_t h;
    if (name_len == 0 || name_len > EMW_MAX_NAME || unit_len > EMW_MAX_NAME || format_width(d->format) == 0 ||
        d->channels == 0 || d->stream_id == EMW_NO_STREAM)
        return 0;
    put_f32(payload, d->rate_hz);
    put_f32(payload + 4, d->scale);
    put_f32(payload + 8, d->offset);
    payload[n++] = (uint8_t)name_len;
    memcpy(payload + n, d->name, name_len);
    n += name_len;
    payload[n++] = (uint8_t)unit_len;
    memcpy(payload + n, d->unit, unit_len);
    n += unit_len;
    header_init(&h, EMW_DESCRIPTOR, d->stream_id, seq, t_us);
    h.format = d->format;
    h.channels = d->channels;
    return emw_encode_frame(out, cap, &h, payload, n);
}

size_t emw_encode_info(uint8_t *out, size_t cap, uint16_t seq, uint32_t t_us, uint8_t reason, uint8_t n_streams,
                       const char *name, const char *firmware) {
    uint8_t payload[4u + 2u * EMW_MAX_NAME];
    size_t name_len = strlen(name), fw_len = strlen(firmware), n = 0;
    emw_header_t h;
    if (reason > EMW_INFO_BOOT || name_len > EMW_MAX_NAME || fw_len > EMW_MAX_NAME) return 0;
    payload[n++] = reason;
    payload[n++] = n_streams;
    payload[n++] = (uint8_t)name_len;
    memcpy(payload + n, name, name_len);
    n += name_len;
    payload[n++] = (uint8_t)fw_len;
    memcpy(payload + n, firmware, fw_len);
    n += fw_len;
    header_init(&h, EMW_INFO, EMW_NO_STREAM, seq, t_us);
    return emw_encode_frame(out, cap, &h, payload, n);
}

size_t emw_encode_pong(uint8_t *out, size_t cap, uint16_t seq, uint32_t t_us, uint32_t token) {
    uint8_t payload[4];
    emw_header_t h;
    put_u32(payload, token);
    header_init(&h, EMW_PONG, EMW_NO_STREAM, seq, t_us);
    return emw_encode_frame(out, cap, &h, payload, 4);
}

size_t emw_encode_ack(uint8_t *out, size_t cap, uint16_t seq, uint32_t t_us, uint8_t stream, uint8_t command,
                      uint8_t status, uint16_t command_seq) {
    uint8_t payload[4];
    emw_header_t h;
    payload[0] = command;
    payload[1] = status;
    put_u16(payload + 2, command_seq);
    header_init(&h, EMW_ACK, stream, seq, t_us);
    return emw_encode_frame(out, cap, &h, payload, 4);
}

size_t emw_encode_command(uint8_t *out, size_t cap, const emw_command_t *cmd) {
    uint8_t payload[4];
    size_t n = 0;
    emw_header_t h;
    if (cmd->type < EMW_HELLO || cmd->type > EMW_PING) return 0;
    if (cmd->type == EMW_SET_RATE) {
        if (!(cmd->rate_hz > 0.0f)) return 0;
        put_f32(payload, cmd->rate_hz);
        n = 4;
    } else if (cmd->type == EMW_PING) {
        put_u32(payload, cmd->token);
        n = 4;
    }
    header_init(&h, cmd->type, cmd->stream, cmd->seq, cmd->t_us);
    return emw_encode_frame(out, cap, &h, payload, n);
}

/* -- command parser ------------------------------------------------------------------------- */
void emw_parser_init(emw_parser_t *p) { memset(p, 0, sizeof *p); }

int emw_parser_feed(emw_parser_t *p, uint8_t byte, emw_command_t *cmd) {
    emw_header_t h;
    const uint8_t *payload;
    size_t plen, n;
    int r;
    if (byte != 0) {
        if (p->overflow) {
            p->bytes_discarded++;
        } else if (p->len < EMW_MAX_ENCODED) {
            p->buf[p->len++] = byte;
        } else { /* longer than any frame: drop it all up to the next delimiter */
            p->overflow = 1;
            p->rejected++;
            p->errors[EMW_ERR_OVERSIZE]++;
            p->bytes_discarded += (uint32_t)p->len + 1u;
            p->len = 0;
        }
        return 0;
    }
    if (p->overflow) {
        p->overflow = 0;
        return 0;
    }
    n = p->len;
    p->len = 0;
    if (n == 0) return 0; /* idle delimiter */
    r = emw_decode(p->buf, n, p->buf, &h, &payload, &plen);
    if (r != EMW_OK) {
        p->rejected++;
        p->errors[r]++;
        p->bytes_discarded += (uint32_t)n;
        return 0;
    }
    if (h.type < EMW_HELLO) {
        p->ignored++;
        return 0;
    }
    cmd->type = h.type;
    cmd->stream = h.stream;
    cmd->seq = h.seq;
    cmd->t_us = h.t_us;
    cmd->rate_hz = h.type == EMW_SET_RATE ? get_f32(payload) : 0.0f;
    cmd->token = h.type == EMW_PING ? get_u32(payload) : 0u;
    p->frames_ok++;
    return 1;
}
