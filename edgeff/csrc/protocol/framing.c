#include "framing.h"

uint32_t ef_crc32(uint32_t crc, const uint8_t *data, uint32_t n)
{
    crc = ~crc;
    while (n--) {
        crc ^= *data++;
        for (int k = 0; k < 8; ++k)
            crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

uint32_t ef_max_encoded_size(uint32_t max_payload)
{
    uint32_t raw = max_payload + EF_FRAME_OVERHEAD;
    return raw + raw / 254u + 1u + 2u;
}

void ef_frame_decoder_init(ef_frame_decoder *d, uint8_t *buffer, uint32_t max_payload)
{
    d->buffer = buffer;
    d->max_payload = max_payload;
    d->capacity = ef_max_encoded_size(max_payload) - 2u;   /* the delimiters are not kept */
    d->length = 0;
    d->overflowed = 0;
}

/* COBS-decodes the buffer in place (the output is never longer than the input); returns the decoded
 * length, or -1 when it is not a valid encoding (a code byte pointing past the end). The buffer holds
 * no 0x00: the delimiter ended it. */
static int32_t cobs_decode_in_place(uint8_t *data, uint32_t n)
{
    uint32_t i = 0, out = 0;
    while (i < n) {
        uint32_t code = data[i];
        if (i + code > n)
            return -1;
        for (uint32_t k = 1; k < code; ++k)
            data[out++] = data[i + k];
        i += code;
        if (code < 255u && i < n)
            data[out++] = 0;
    }
    return (int32_t)out;
}

static int complete(ef_frame_decoder *d, ef_frame *frame)
{
    uint32_t received = d->length, dropped = d->overflowed;
    d->length = 0;
    d->overflowed = 0;
    frame->encoded_length = dropped ? dropped : received;
    if (dropped)
        return EF_FRAME_TOO_LONG;
    if (received == 0)
        return EF_FRAME_NONE;         /* an empty chunk: the leading delimiter of a frame */
    int32_t n = cobs_decode_in_place(d->buffer, received);
    if (n < 0)
        return EF_FRAME_BAD_COBS;
    if ((uint32_t)n < EF_FRAME_OVERHEAD)
        return EF_FRAME_SHORT;
    /* the encoded length alone cannot tell: COBS adds 1 to 1 + n/254 bytes, so a few more bytes fit */
    if ((uint32_t)n - EF_FRAME_OVERHEAD > d->max_payload)
        return EF_FRAME_TOO_LONG;
    const uint8_t *b = d->buffer;
    uint32_t body = (uint32_t)n - 4u;
    uint32_t crc = (uint32_t)b[body] | (uint32_t)b[body + 1] << 8 | (uint32_t)b[body + 2] << 16 |
                   (uint32_t)b[body + 3] << 24;
    if (ef_crc32(0, b, body) != crc)
        return EF_FRAME_BAD_CRC;
    frame->type = b[0];
    frame->seq = (uint16_t)(b[1] | b[2] << 8);
    frame->payload = b + 3;
    frame->payload_length = body - 3u;
    return EF_FRAME_OK;
}

int ef_frame_feed(ef_frame_decoder *d, uint8_t byte, ef_frame *frame)
{
    if (byte == 0)
        return complete(d, frame);
    if (d->overflowed) {
        ++d->overflowed;
    } else if (d->length < d->capacity) {
        d->buffer[d->length++] = byte;
    } else {                          /* over-long: dropped as it arrives, reported at its delimiter */
        d->overflowed = d->length + 1u;
        d->length = 0;
    }
    return EF_FRAME_NONE;
}

uint32_t ef_frame_encode(uint8_t type, uint16_t seq, const uint8_t *payload, uint32_t n, uint8_t *out)
{
    uint8_t head[3] = {type, (uint8_t)seq, (uint8_t)(seq >> 8)};
    uint32_t crc = ef_crc32(ef_crc32(0, head, 3), payload, n);
    uint8_t tail[4] = {(uint8_t)crc, (uint8_t)(crc >> 8), (uint8_t)(crc >> 16), (uint8_t)(crc >> 24)};
    uint32_t o = 0, code_at = 1, total = n + EF_FRAME_OVERHEAD;
    out[o++] = 0;
    out[o++] = 0;                     /* the first code byte, filled below */
    uint8_t code = 1;
    for (uint32_t i = 0; i < total; ++i) {
        uint8_t byte = i < 3 ? head[i] : i < 3 + n ? payload[i - 3] : tail[i - 3 - n];
        if (byte == 0) {
            out[code_at] = code;
            code_at = o++;
            code = 1;
        } else {
            out[o++] = byte;
            if (++code == 255) {
                out[code_at] = code;
                code_at = o++;
                code = 1;
            }
        }
    }
    out[code_at] = code;
    out[o++] = 0;
    return o;
}
