#include "board_protocol.h"

enum { HELLO = 0x01, METRICS = 0x09, LAST_REQUEST = 0x0D };
enum { REPLY_INFO = 0x81, REPLY_METRICS = 0x84, REPLY_ERROR = 0xE0, REPLY_NAK = 0xE1 };
enum { UNKNOWN_TYPE = 1, BAD_LENGTH = 2, BAD_STATE = 3, VERSION = 4 };
#define NAK_SEQ 0xFFFFu
#define INFO_BYTES 71u
#define TEXT_FIELD 16u
#define METRICS_BYTES 36u

/* payload lengths of the fixed-size requests, by type (-1: chunked, at least 5 bytes) */
static const int16_t request_bytes[LAST_REQUEST + 1] = {0, 2, 8, -1, 0, 28, -1, 8, 4, 0, 6, 0, 0, 0};

static void put_u16(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put_u32(uint8_t *p, uint32_t v)
{
    put_u16(p, v);
    put_u16(p + 2, v >> 16);
}

static void put_text(uint8_t *p, const char *s)
{
    uint32_t i = 0;
    for (; i < TEXT_FIELD && s[i]; ++i)
        p[i] = (uint8_t)s[i];
    for (; i < TEXT_FIELD; ++i)
        p[i] = 0;
}

static uint32_t error(ef_board *board, uint16_t seq, uint8_t code, uint32_t detail, const char *message,
                      uint8_t *out)
{
    ++board->errors_sent;
    uint8_t payload[5 + 64];
    uint32_t n = 5;
    payload[0] = code;
    put_u32(payload + 1, detail);
    while (*message && n < sizeof payload)
        payload[n++] = (uint8_t)*message++;
    return ef_frame_encode(REPLY_ERROR, seq, payload, n, out);
}

static uint32_t info(ef_board *board, const ef_frame *f, uint8_t *out)
{
    uint8_t host_min = f->payload[0], host_max = f->payload[1];
    uint8_t version = host_max < EF_PROTOCOL_MAX_VERSION ? host_max : EF_PROTOCOL_MAX_VERSION;
    uint8_t lowest = host_min > EF_PROTOCOL_MIN_VERSION ? host_min : EF_PROTOCOL_MIN_VERSION;
    if (version < lowest)
        return error(board, f->seq, VERSION, EF_PROTOCOL_MIN_VERSION << 8 | EF_PROTOCOL_MAX_VERSION,
                     "the board speaks protocol versions 1..1", out);
    uint8_t p[INFO_BYTES] = {0};
    p[0] = version;
    p[1] = EF_PROTOCOL_MIN_VERSION;
    p[2] = EF_PROTOCOL_MAX_VERSION;
    put_u16(p + 3, board->max_payload);
    put_u32(p + 5, board->sram_budget);
    put_u32(p + 9, board->flash_budget);
    put_u32(p + 13, board->sram_budget);          /* SRAM free: no model loaded */
    p[17] = 1;                                    /* model format */
    /* flags, run id, samples applied, at checkpoint, image bytes and CRC: all 0 without a model */
    put_text(p + 39, board->name);
    put_text(p + 55, board->firmware);
    return ef_frame_encode(REPLY_INFO, f->seq, p, INFO_BYTES, out);
}

/* applied, goodness correct, recent correct, recent n, compute us (u64): all 0 without training; then
 * the link counters */
static uint32_t metrics(const ef_board *board, const ef_frame *f, uint8_t *out)
{
    uint8_t p[METRICS_BYTES] = {0};
    put_u32(p + 24, board->frames_ok);
    put_u32(p + 28, board->frames_bad);
    put_u32(p + 32, board->errors_sent);
    return ef_frame_encode(REPLY_METRICS, f->seq, p, METRICS_BYTES, out);
}

uint32_t ef_board_reply(ef_board *board, int status, const ef_frame *f, uint8_t *out)
{
    if (status != EF_FRAME_OK) {
        uint8_t reason = (uint8_t)(status - 1);   /* EF_FRAME_BAD_COBS.. are the NAK reasons + 1 */
        ++board->frames_bad;
        return ef_frame_encode(REPLY_NAK, NAK_SEQ, &reason, 1, out);
    }
    ++board->frames_ok;
    if (f->type < HELLO || f->type > LAST_REQUEST)
        return error(board, f->seq, UNKNOWN_TYPE, f->type, "unknown request type", out);
    int16_t expected = request_bytes[f->type];
    if (expected >= 0 ? f->payload_length != (uint32_t)expected : f->payload_length < 5u)
        return error(board, f->seq, BAD_LENGTH, f->payload_length, "wrong payload length for this request", out);
    if (f->type == HELLO)
        return info(board, f, out);
    if (f->type == METRICS)
        return metrics(board, f, out);
    return error(board, f->seq, BAD_STATE, 0, "this firmware build answers HELLO and METRICS only", out);
}
