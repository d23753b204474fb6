/*
 * edgemer_wire.h - edgemer wire protocol, version 1: C99 reference encoder and command parser.
 *
 * For MCU firmware: no malloc, no I/O, only <stdint.h> and <string.h>. The caller owns
 * every buffer. See ../PROTOCOL.md for the byte layout; in short:
 *
 *   wire   = 0x00 COBS(frame) 0x00                 (at most EMW_MAX_WIRE = 257 bytes)
 *   frame  = header(12) payload(0..240) crc(2)     (at most EMW_MAX_FRAME = 254 bytes)
 *   header = version u8 | type u8 | stream u8 | format u8 | seq u16 | t_us u32 |
 *            channels u8 | count u8                (little-endian)
 *   crc    = CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, xorout 0)
 *            over header + payload, sent most significant byte first
 *
 * Floats are IEEE 754 binary32, little-endian on the wire.
 *
 * Typical firmware use (see examples/wrist_wearable/wrist_wearable.ino):
 *
 *   uint8_t out[EMW_MAX_WIRE];
 *   size_t n = emw_encode_samples(out, sizeof out, EDA_ID, EMW_U16, seq++, micros(),
 *                                 1, 1, &eda_raw);
 *   uart_write(out, n);
 *
 *   emw_parser_t parser; emw_parser_init(&parser);
 *   emw_command_t cmd;
 *   if (emw_parser_feed(&parser, uart_read_byte(), &cmd)) handle(&cmd);
 */
#ifndef EDGEMER_WIRE_H
#define EDGEMER_WIRE_H

#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

#define EMW_VERSION 1u
#define EMW_HEADER_SIZE 12u
#define EMW_CRC_SIZE 2u
#define EMW_MAX_FRAME 254u   /* header + payload + CRC, before COBS */
#define EMW_MAX_PAYLOAD 240u
#define EMW_MIN_FRAME 14u
#define EMW_MAX_ENCODED 255u /* COBS bytes between the delimiters */
#define EMW_MAX_WIRE 257u    /* with both delimiters */
#define EMW_NO_STREAM 0xFFu  /* no stream; in START/STOP: all streams */
#define EMW_MAX_NAME 16u

/* Message types: device -> host below 0x80, host -> device from 0x80. */
enum emw_type {
    EMW_SAMPLES = 0x01,
    EMW_DESCRIPTOR = 0x02,
    EMW_INFO = 0x03,
    EMW_PONG = 0x04,
    EMW_ACK = 0x05,
    EMW_HELLO = 0x81,
    EMW_START = 0x82,
    EMW_STOP = 0x83,
    EMW_SET_RATE = 0x84,
    EMW_PING = 0x85
};

/* Sample formats (values little-endian on the wire). */
enum emw_format { EMW_I8 = 1, EMW_U8 = 2, EMW_I16 = 3, EMW_U16 = 4, EMW_I32 = 5, EMW_F32 = 6 };

enum emw_ack_status {
    EMW_ACK_OK = 0,
    EMW_ACK_UNKNOWN_COMMAND = 1,
    EMW_ACK_UNKNOWN_STREAM = 2,
    EMW_ACK_BAD_ARGUMENT = 3
};

enum emw_info_reason { EMW_INFO_HELLO = 0, EMW_INFO_BOOT = 1 };

/* Result of emw_decode, in the order the checks run (the Python decoder uses the same order). */
enum emw_result {
    EMW_OK = 0,
    EMW_ERR_OVERSIZE = 1, /* more than EMW_MAX_ENCODED bytes between delimiters */
    EMW_ERR_COBS = 2,     /* not valid COBS */
    EMW_ERR_SHORT = 3,    /* fewer than EMW_MIN_FRAME bytes */
    EMW_ERR_CRC = 4,
    EMW_ERR_VERSION = 5,
    EMW_ERR_TYPE = 6,     /* unknown message type */
    EMW_ERR_LENGTH = 7    /* payload length does not match the header */
};
#define EMW_RESULT_COUNT 8

typedef struct {
    uint8_t version;
    uint8_t type;
    uint8_t stream;
    uint8_t format;
    uint16_t seq;
    uint32_t t_us;
    uint8_t channels;
    uint8_t count;
} emw_header_t;

/* A stream as the device announces it: physical value = raw * scale + offset, in `unit`. */
typedef struct {
    uint8_t stream_id;
    const char *name; /* 1..16 ASCII bytes, NUL-terminated */
    const char *unit; /* 0..16 ASCII bytes, NUL-terminated */
    float rate_hz;
    float scale;
    float offset;
    uint8_t format;   /* enum emw_format */
    uint8_t channels;
} emw_descriptor_t;

/* A host command as parsed on the device. */
typedef struct {
    uint8_t type;     /* EMW_HELLO .. EMW_PING */
    uint8_t stream;   /* EMW_NO_STREAM: all / none */
    uint16_t seq;     /* echo it in the ACK */
    uint32_t t_us;    /* host time, informational */
    float rate_hz;    /* EMW_SET_RATE */
    uint32_t token;   /* EMW_PING: echo it in the PONG */
} emw_command_t;

/* Byte-at-a-time command parser (call from the UART receive loop). About 300 bytes of RAM. */
typedef struct {
    uint8_t buf[EMW_MAX_ENCODED]; /* COBS bytes since the last delimiter; decoded in place */
    uint16_t len;
    uint8_t overflow;
    uint32_t frames_ok;       /* commands returned */
    uint32_t ignored;         /* valid frames that are not host commands */
    uint32_t rejected;        /* pieces rejected, any reason */
    uint32_t bytes_discarded; /* bytes of rejected pieces */
    uint32_t errors[EMW_RESULT_COUNT]; /* rejected pieces by enum emw_result */
} emw_parser_t;

/* CRC-16/CCITT-FALSE of `len` bytes (check value: "123456789" -> 0x29B1). */
uint16_t emw_crc16(const uint8_t *data, size_t len);

/* COBS-encode `len` bytes into `dst` (no delimiters added). Returns the encoded length,
 * or 0 if `cap` is too small. Output equals the Python `cobs` package's. */
size_t emw_cobs_encode(const uint8_t *src, size_t len, uint8_t *dst, size_t cap);

/* COBS-decode; `dst` may equal `src` (in place). Returns 0 and sets *out_len, or -1 on
 * invalid input (a zero byte, or a block running past the end) or too small `cap`. */
int emw_cobs_decode(const uint8_t *src, size_t len, uint8_t *dst, size_t cap, size_t *out_len);

/* Decode the COBS bytes found between two delimiters. `scratch` (EMW_MAX_FRAME bytes, may
 * equal `enc`) receives the frame; *payload points into it. Returns enum emw_result. */
int emw_decode(const uint8_t *enc, size_t len, uint8_t *scratch, emw_header_t *h,
               const uint8_t **payload, size_t *payload_len);

/* Encoders: write 0x00 COBS(frame) 0x00 into `out` and return its length (<= EMW_MAX_WIRE),
 * or 0 on a bad argument or a too small `cap` (EMW_MAX_WIRE always suffices). */
size_t emw_encode_frame(uint8_t *out, size_t cap, const emw_header_t *h, const uint8_t *payload,
                        size_t payload_len);

/* `values` points to count * channels values in the C type of `format` (int8_t, uint8_t,
 * int16_t, uint16_t, int32_t or float), sample after sample, channel after channel.
 * `t_us` is the device time of the first sample. */
size_t emw_encode_samples(uint8_t *out, size_t cap, uint8_t stream, uint8_t format, uint16_t seq,
                          uint32_t t_us, uint8_t channels, uint8_t count, const void *values);
size_t emw_encode_descriptor(uint8_t *out, size_t cap, uint16_t seq, uint32_t t_us,
                             const emw_descriptor_t *d);
size_t emw_encode_info(uint8_t *out, size_t cap, uint16_t seq, uint32_t t_us, uint8_t reason,
                       uint8_t n_streams, const char *name, const char *firmware);
/* `t_us`: the device time at which the PING arrived. */
size_t emw_encode_pong(uint8_t *out, size_t cap, uint16_t seq, uint32_t t_us, uint32_t token);
size_t emw_encode_ack(uint8_t *out, size_t cap, uint16_t seq, uint32_t t_us, uint8_t stream,
                      uint8_t command, uint8_t status, uint16_t command_seq);
/* Host side (tests, MCU-to-MCU bridges). */
size_t emw_encode_command(uint8_t *out, size_t cap, const emw_command_t *cmd);

void emw_parser_init(emw_parser_t *p);
/* Feed one received byte. Returns 1 and fills *cmd when it completes a valid host
 * command; 0 otherwise (bad frames are counted in *p, the parser resynchronises on the
 * next 0x00). */
int emw_parser_feed(emw_parser_t *p, uint8_t byte, emw_command_t *cmd);

#ifdef __cplusplus
}
#endif

#endif /* EDGEMER_WIRE_H */
