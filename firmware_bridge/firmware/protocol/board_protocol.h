/* The board side of the serial protocol (firmware_bridge/PROTOCOL.md): one reply frame for every frame
 * received. This first version answers HELLO with INFO (no model loaded), METRICS with its counters, bad
 * frames with NAK, unknown types with UNKNOWN_TYPE, wrong payload lengths with BAD_LENGTH, and every other
 * request with BAD_STATE: loading, training and inference over the link are not in the firmware yet. */
#ifndef EDGEFF_BOARD_PROTOCOL_H
#define EDGEFF_BOARD_PROTOCOL_H

#include <stdint.h>

#include "framing.h"

#define EF_PROTOCOL_MIN_VERSION 1
#define EF_PROTOCOL_MAX_VERSION 1

typedef struct {
    const char *name, *firmware;      /* at most 16 bytes each are sent */
    uint16_t max_payload;
    uint32_t sram_budget, flash_budget;
    uint32_t frames_ok, frames_bad, errors_sent;   /* link counters, reported by METRICS */
} ef_board;

/* The encoded reply to what the decoder returned (status, frame) into out (ef_max_encoded_size of the
 * board's max payload); returns its length and counts the frame. */
uint32_t ef_board_reply(ef_board *board, int status, const ef_frame *frame, uint8_t *out);

#endif
