/* libFuzzer harness for the frame decoder and the board's replies (built on the host with clang
 * -fsanitize=fuzzer,address,undefined by tests/test_framing_c.py): feeds the input byte by byte to a
 * decoder with a small buffer; every frame it accepts must re-encode to bytes that decode to the same
 * frame, and every chunk (frame or not) must get one reply that decodes as a valid frame. */
#include <stddef.h>
#include <string.h>

#include "board_protocol.h"
#include "framing.h"

#define MAX_PAYLOAD 64u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t buffer[128], again[128], wire[160];
    ef_frame_decoder d, check;
    ef_frame frame, decoded;
    ef_frame_decoder_init(&d, buffer, ef_max_encoded_size(MAX_PAYLOAD));
    static ef_board board = {"fuzz", "fuzz", MAX_PAYLOAD, 1024, 1024, 0, 0, 0};
    for (size_t i = 0; i < size; ++i) {
        int status = ef_frame_feed(&d, data[i], &frame);
        if (status == EF_FRAME_NONE)
            continue;
        uint32_t reply = ef_board_reply(&board, status, &frame, wire);
        ef_frame_decoder_init(&check, again, sizeof again);
        int answer = EF_FRAME_NONE;
        for (uint32_t k = 0; k < reply && answer == EF_FRAME_NONE; ++k)
            answer = ef_frame_feed(&check, wire[k], &decoded);
        if (reply > sizeof wire || answer != EF_FRAME_OK)
            __builtin_trap();
        if (status != EF_FRAME_OK)
            continue;
        uint8_t payload[MAX_PAYLOAD];
        memcpy(payload, frame.payload, frame.payload_length);
        uint32_t n = ef_frame_encode(frame.type, frame.seq, payload, frame.payload_length, wire);
        ef_frame_decoder_init(&check, again, sizeof again);
        int result = EF_FRAME_NONE;
        for (uint32_t k = 0; k < n && result == EF_FRAME_NONE; ++k)
            result = ef_frame_feed(&check, wire[k], &decoded);
        if (result != EF_FRAME_OK || decoded.type != frame.type || decoded.seq != frame.seq ||
            decoded.payload_length != frame.payload_length ||
            memcmp(decoded.payload, payload, frame.payload_length) != 0)
            __builtin_trap();
    }
    return 0;
}
