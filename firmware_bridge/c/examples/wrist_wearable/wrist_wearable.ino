/*
 * wrist_wearable.ino - an Arduino-style wrist wearable that streams to edgemer.
 *
 * Streams (WESAD wrist layout, what edgemer's physiology bundles expect):
 *   id 0  eda   4 Hz  uint16, 0.001 uS per count
 *   id 1  bvp  64 Hz  int16,  0.01 a.u. per count
 *   id 2  temp  4 Hz  int16,  0.01 degC per count
 *   id 3  acc  32 Hz  int8 x 3, 1/64 g per count
 * One SAMPLES frame per stream every 0.25 s (1, 16, 1 and 8 samples), stamped with
 * micros() of the first sample. Answers HELLO, START, STOP, SET_RATE (native rate / k)
 * and PING (time sync) from the host.
 *
 * Build: copy ../../edgemer_wire.h and ../../edgemer_wire.c next to this sketch (or into
 * a library folder), replace the read_*() functions with your sensor drivers, upload,
 * then on the host:  edgemer run --source serial:/dev/ttyACM0 --bundle physio-demo
 *
 * Everything is static: no malloc, about 1 KB of RAM.
 */
#include <Arduino.h>

#include "edgemer_wire.h"

#define BAUD 1000000UL
#define FRAME_US 250000UL /* samples per frame = rate * 0.25 s */
#define N_STREAMS 4

static const char DEVICE_NAME[] = "wrist-ref";
static const char FIRMWARE[] = "ref-1.0";

static const emw_descriptor_t NATIVE[N_STREAMS] = {
    {0, "eda", "uS", 4.0f, 0.001f, 0.0f, EMW_U16, 1},
    {1, "bvp", "a.u.", 64.0f, 0.01f, 0.0f, EMW_I16, 1},
    {2, "temp", "degC", 4.0f, 0.01f, 0.0f, EMW_I16, 1},
    {3, "acc", "g/64", 32.0f, 1.0f, 0.0f, EMW_I8, 3},
};

struct StreamState {
    emw_descriptor_t desc;   /* as announced (rate may be lowered by SET_RATE) */
    uint32_t period_us;      /* between samples */
    uint32_t next_us;        /* micros() of the next sample */
    uint32_t first_us;       /* micros() of the frame's first sample */
    uint8_t per_frame;       /* samples per frame */
    uint8_t filled;          /* samples in the frame so far */
    uint16_t seq;            /* SAMPLES frames sent */
    bool streaming;
    uint8_t values[EMW_MAX_PAYLOAD];
};

static StreamState streams[N_STREAMS];
static emw_parser_t parser;
static uint16_t ctl_seq;
static uint8_t out[EMW_MAX_WIRE];

/* -- sensors: replace with real drivers ------------------------------------------------------ */
static uint16_t read_eda_raw() { return (uint16_t)(analogRead(A0) * 4); }            /* 0.001 uS */
static int16_t read_bvp_raw() { return (int16_t)(analogRead(A1) - 512) * 10; }        /* 0.01 a.u. */
static int16_t read_temp_raw() { return (int16_t)(3000 + analogRead(A2) / 2); }       /* 0.01 degC */
static void read_acc_raw(int8_t xyz[3]) { xyz[0] = 0; xyz[1] = 0; xyz[2] = 64; }       /* 1/64 g */

static void send(size_t n) {
    if (n) Serial.write(out, n);
}

static void configure(StreamState *s, const emw_descriptor_t *d, float rate_hz) {
    s->desc = *d;
    s->desc.rate_hz = rate_hz;
    s->period_us = (uint32_t)(1000000.0f / rate_hz + 0.5f);
    s->per_frame = (uint8_t)(rate_hz * FRAME_US / 1000000.0f + 0.5f);
    if (s->per_frame == 0) s->per_frame = 1;
    s->filled = 0;
}

static void announce(uint8_t reason, uint32_t now) {
    send(emw_encode_info(out, sizeof out, ctl_seq++, now, reason, N_STREAMS, DEVICE_NAME, FIRMWARE));
    for (uint8_t i = 0; i < N_STREAMS; i++) {
        send(emw_encode_descriptor(out, sizeof out, ctl_seq++, now, &streams[i].desc));
    }
}

static void ack(const emw_command_t *cmd, uint8_t status, uint32_t now) {
    send(emw_encode_ack(out, sizeof out, ctl_seq++, now, cmd->stream, cmd->type, status, cmd->seq));
}

static void set_streaming(uint8_t id, bool on, uint32_t now) {
    for (uint8_t i = 0; i < N_STREAMS; i++) {
        if (id != EMW_NO_STREAM && id != i) continue;
        if (on && !streams[i].streaming) {
            streams[i].next_us = now;
            streams[i].filled = 0;
        }
        streams[i].streaming = on;
    }
}

static void handle(const emw_command_t *cmd, uint32_t now) {
    switch (cmd->type) {
    case EMW_PING: /* `now` is when the command's last byte arrived */
        send(emw_encode_pong(out, sizeof out, ctl_seq++, now, cmd->token));
        break;
    case EMW_HELLO:
        announce(EMW_INFO_HELLO, now);
        break;
    case EMW_START:
    case EMW_STOP:
        if (cmd->stream != EMW_NO_STREAM && cmd->stream >= N_STREAMS) {
            ack(cmd, EMW_ACK_UNKNOWN_STREAM, now);
            break;
        }
        set_streaming(cmd->stream, cmd->type == EMW_START, now);
        ack(cmd, EMW_ACK_OK, now);
        break;
    case EMW_SET_RATE: {
        if (cmd->stream >= N_STREAMS) {
            ack(cmd, EMW_ACK_UNKNOWN_STREAM, now);
            break;
        }
        const emw_descriptor_t *d = &NATIVE[cmd->stream];
        float k = d->rate_hz / cmd->rate_hz;
        uint16_t ki = (uint16_t)(k + 0.5f);
        if (cmd->rate_hz <= 0.0f || ki < 1 || k - ki > 1e-4f || ki - k > 1e-4f) {
            ack(cmd, EMW_ACK_BAD_ARGUMENT, now);
            break;
        }
        configure(&streams[cmd->stream], d, d->rate_hz / ki);
        ack(cmd, EMW_ACK_OK, now);
        send(emw_encode_descriptor(out, sizeof out, ctl_seq++, now, &streams[cmd->stream].desc));
        break;
    }
    default:
        ack(cmd, EMW_ACK_UNKNOWN_COMMAND, now);
    }
}

static void take_sample(uint8_t i, StreamState *s) {
    uint8_t *v = s->values;
    uint8_t k = s->filled;
    switch (i) {
    case 0: { uint16_t x = read_eda_raw(); memcpy(v + 2 * k, &x, 2); break; }
    case 1: { int16_t x = read_bvp_raw(); memcpy(v + 2 * k, &x, 2); break; }
    case 2: { int16_t x = read_temp_raw(); memcpy(v + 2 * k, &x, 2); break; }
    default: { int8_t xyz[3]; read_acc_raw(xyz); memcpy(v + 3 * k, xyz, 3); break; }
    }
}

void setup() {
    Serial.begin(BAUD);
    emw_parser_init(&parser);
    for (uint8_t i = 0; i < N_STREAMS; i++) {
        configure(&streams[i], &NATIVE[i], NATIVE[i].rate_hz);
        streams[i].seq = 0;
        streams[i].streaming = false; /* until the host sends START */
    }
    announce(EMW_INFO_BOOT, micros());
}

void loop() {
    emw_command_t cmd;
    while (Serial.available() > 0) {
        if (emw_parser_feed(&parser, (uint8_t)Serial.read(), &cmd)) handle(&cmd, micros());
    }
    uint32_t now = micros();
    for (uint8_t i = 0; i < N_STREAMS; i++) {
        StreamState *s = &streams[i];
        if (!s->streaming || (int32_t)(now - s->next_us) < 0) continue;
        if (s->filled == 0) s->first_us = s->next_us; /* the nominal sample time, jitter-free */
        take_sample(i, s);
        s->next_us += s->period_us;
        if (++s->filled == s->per_frame) {
            send(emw_encode_samples(out, sizeof out, s->desc.stream_id, s->desc.format, s->seq++, s->first_us,
                                    s->desc.channels, s->per_frame, s->values));
            s->filled = 0;
        }
    }
}
