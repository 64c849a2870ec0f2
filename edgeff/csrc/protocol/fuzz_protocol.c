/* libFuzzer harness for the frame decoder and the board's whole protocol (built on the host with clang
 * -fsanitize=fuzzer,address,undefined by tests/test_framing_c.py), on host_board.c's board.
 *
 * The input is a list of records, so that the fuzzer reaches past the CRC into every request handler
 * (loading and checking board images, configuring, staging, training, inference, checkpoints, resets):
 *   kind (u8), length (u8), then `length` bytes; an even kind feeds the bytes to the board as they are,
 *   an odd kind sends them as one valid frame (type = first byte, payload = the rest).
 * Checks: every chunk the decoder delimits gets exactly one reply, every reply decodes as a frame, and
 * every accepted frame re-encodes to bytes that decode to the same frame. */
#include <stddef.h>
#include <string.h>

#include "board_protocol.h"
#include "framing.h"

#define MAX_PAYLOAD 256u
int ef_host_board_init(uint32_t max_payload, uint32_t image_capacity, uint32_t scratch_capacity, int with_storage);
uint32_t ef_host_board_feed(const uint8_t *data, uint32_t n, uint8_t *out, uint32_t capacity);

static uint8_t wire[EF_MAX_ENCODED(MAX_PAYLOAD)], replies[1u << 16], buffer[EF_MAX_ENCODED(MAX_PAYLOAD)];
static uint8_t again[EF_MAX_ENCODED(EF_MAX_PAYLOAD)];

/* the number of chunks a decoder delimits in data; traps when an accepted frame does not round-trip */
static uint32_t chunks(ef_frame_decoder *d, const uint8_t *data, uint32_t n)
{
    uint32_t count = 0;
    ef_frame frame, decoded;
    ef_frame_decoder check;
    for (uint32_t i = 0; i < n; ++i) {
        int status = ef_frame_feed(d, data[i], &frame);
        if (status == EF_FRAME_NONE)
            continue;
        ++count;
        if (status != EF_FRAME_OK)
            continue;
        uint8_t payload[MAX_PAYLOAD], encoded[EF_MAX_ENCODED(MAX_PAYLOAD)];
        memcpy(payload, frame.payload, frame.payload_length);
        uint32_t length = ef_frame_encode(frame.type, frame.seq, payload, frame.payload_length, encoded);
        ef_frame_decoder_init(&check, again, EF_MAX_PAYLOAD);
        int result = EF_FRAME_NONE;
        for (uint32_t k = 0; k < length && result == EF_FRAME_NONE; ++k)
            result = ef_frame_feed(&check, encoded[k], &decoded);
        if (result != EF_FRAME_OK || decoded.type != frame.type || decoded.seq != frame.seq
            || decoded.payload_length != frame.payload_length
            || memcmp(decoded.payload, payload, frame.payload_length) != 0)
            __builtin_trap();
    }
    return count;
}

/* every reply must be one whole valid frame; returns how many there were */
static uint32_t valid_replies(const uint8_t *data, uint32_t n)
{
    ef_frame_decoder d;
    ef_frame frame;
    uint32_t count = 0;
    ef_frame_decoder_init(&d, again, EF_MAX_PAYLOAD);
    for (uint32_t i = 0; i < n; ++i) {
        int status = ef_frame_feed(&d, data[i], &frame);
        if (status != EF_FRAME_NONE && status != EF_FRAME_OK)
            __builtin_trap();
        count += status == EF_FRAME_OK;
    }
    return count;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ef_frame_decoder d;
    ef_frame_decoder_init(&d, buffer, MAX_PAYLOAD);
    if (ef_host_board_init(MAX_PAYLOAD, 8192, 2048, 1) != 0)
        __builtin_trap();
    uint16_t seq = 0;
    for (size_t i = 0; i + 2 <= size;) {
        uint8_t kind = data[i], length = data[i + 1];
        const uint8_t *bytes = data + i + 2;
        i += 2;
        if (length > size - i)
            length = (uint8_t)(size - i);
        i += length;
        uint32_t n = length;
        if (kind & 1u) {
            if (length == 0)
                continue;
            n = ef_frame_encode(bytes[0], ++seq, bytes + 1, length - 1u, wire);
            bytes = wire;
        }
        uint32_t expected = chunks(&d, bytes, n);
        uint32_t written = ef_host_board_feed(bytes, n, replies, sizeof replies);
        if (written == sizeof replies || valid_replies(replies, written) != expected)
            __builtin_trap();
    }
    return 0;
}
