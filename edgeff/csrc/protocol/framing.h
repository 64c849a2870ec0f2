/* Frames on the serial link, as firmware_bridge/PROTOCOL.md ("Framing") and framing.py define them:
 * type u8 | seq u16 LE | payload | CRC-32 u32 LE, COBS-encoded between 0x00 delimiters.
 *
 * The decoder takes one byte at a time into a buffer of EF_MAX_ENCODED(max_payload) bytes the caller
 * owns, never reads or writes outside it, and reports every delimited chunk as a frame or as the reason
 * it was rejected (the NAK reasons of the protocol); a payload over max_payload is too long. */
#ifndef EDGEFF_FRAMING_H
#define EDGEFF_FRAMING_H

#include <stdint.h>

#include "wire_generated.h"

/* ef_max_encoded_size as a constant expression, for buffers */
#define EF_MAX_ENCODED(max_payload) \
    ((max_payload) + EF_FRAME_OVERHEAD + ((max_payload) + EF_FRAME_OVERHEAD) / 254u + 3u)

enum ef_frame_status {
    EF_FRAME_NONE = 0,                /* no frame completed by this byte */
    EF_FRAME_OK = 1,                  /* a frame: see ef_frame */
    EF_FRAME_BAD_COBS = EF_NAK_COBS + 1,   /* the NAK reasons, + 1 */
    EF_FRAME_BAD_CRC = EF_NAK_CRC + 1,
    EF_FRAME_SHORT = EF_NAK_SHORT + 1,
    EF_FRAME_TOO_LONG = EF_NAK_TOO_LONG + 1,
};

typedef struct {
    uint8_t *buffer;                  /* capacity bytes, the caller's */
    uint32_t max_payload, capacity, length, overflowed;   /* capacity: encoded bytes, no delimiters */
} ef_frame_decoder;

typedef struct {
    uint8_t type;
    uint16_t seq;
    const uint8_t *payload;           /* inside the decoder's buffer, valid until the next byte is fed */
    uint32_t payload_length;
    uint32_t encoded_length;          /* bytes received for this chunk (for too-long: bytes dropped) */
} ef_frame;

uint32_t ef_crc32(uint32_t crc, const uint8_t *data, uint32_t n);   /* zlib's; start with 0 */
uint32_t ef_max_encoded_size(uint32_t max_payload);                 /* both delimiters included */
/* buffer: EF_MAX_ENCODED(max_payload) bytes */
void ef_frame_decoder_init(ef_frame_decoder *d, uint8_t *buffer, uint32_t max_payload);
int ef_frame_feed(ef_frame_decoder *d, uint8_t byte, ef_frame *frame);
/* The frame 0x00, COBS(type, seq, payload, CRC), 0x00 into out (ef_max_encoded_size(n) bytes);
 * returns its length. */
uint32_t ef_frame_encode(uint8_t type, uint16_t seq, const uint8_t *payload, uint32_t n, uint8_t *out);

#endif
