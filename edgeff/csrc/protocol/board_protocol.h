/* The board side of the serial protocol (firmware_bridge/PROTOCOL.md): one reply frame for every frame
 * received, exactly as the virtual board (firmware_bridge/board.py, the executable specification) answers.
 *
 * The model lives in the application's image buffer as a board image (format 1, an FF MLP: board_image.h; format
 * 2, a layered CwC model: cwc_image.h) and is trained in place; its working buffers and the staging slots
 * (EF_STAGING_SLOTS sample records, each with a bitmap of the bytes received) are carved from the scratch
 * buffer. Checkpoints go to two slots of non-volatile storage in turn, each with a CRC, so a write cut short leaves the other
 * slot to boot from. No malloc, no float. */
#ifndef EDGEFF_BOARD_PROTOCOL_H
#define EDGEFF_BOARD_PROTOCOL_H

#include <stdint.h>

#include "board_image.h"
#include "cwc_image.h"
#include "framing.h"
#include "wire_generated.h"

#define EF_RECENT 100u                     /* window of the running goodness accuracy (METRICS) */
#define EF_CHECKPOINT_HEADER 64u           /* bytes before the image in a storage slot */
#define EF_MAX_PAYLOAD 4096u               /* the largest max_payload a board may state */

typedef struct {
    /* ---- set by the application */
    const char *name, *firmware;           /* at most 16 bytes each are sent */
    uint16_t max_payload;                  /* at most EF_MAX_PAYLOAD */
    uint32_t flash_budget;                 /* reported in INFO */
    uint8_t *image;                        /* the model, 8-byte aligned */
    uint32_t image_capacity;
    uint8_t *scratch;
    uint32_t scratch_capacity;
    const uint8_t *storage;                /* two slots of storage_slot_bytes; NULL: no checkpoints */
    uint32_t storage_slot_bytes;
    int (*storage_write)(uint32_t offset, const uint8_t *data, uint32_t n);   /* 0 when written */
    uint32_t (*ticks)(void);               /* a free-running counter, ticks_per_us per microsecond */
    uint32_t ticks_per_us;
    /* ---- link counters (METRICS) */
    uint32_t frames_ok, frames_bad, errors_sent;
    /* ---- the model and its training: board_protocol.c's own */
    int loaded, configured, trained_since_install, loading, reboot;
    uint32_t load_bytes, load_crc, received;
    uint32_t image_bytes, image_crc;       /* of the image as installed (LOAD_END or checkpoint) */
    uint8_t format;                        /* the installed image's: EF_MODEL_FORMAT or EF_LAYERED_MODEL_FORMAT */
    uint32_t n_classes, record_bytes;      /* its classes; a sample record's bytes (label, negative label, image) */
    uint32_t memory_bytes;                 /* RAM it takes: the image, its working buffers and the staging slots */
    union {                                /* one model at a time: each format's state in the same bytes */
        struct {
            ef_image_layout layout;
            ef_ff_trainer trainer;
        } ff;                              /* format 1: an FF MLP (board_image.c) */
        struct {
            ef_cwc_image_layout layout;
            ef_cwc_model model;
        } cwc;                             /* format 2: a layered CwC model (cwc_image.c) */
    } model;
    ef_ff_head head;                       /* the one-pass head of either */
    uint8_t configuration[EF_CONFIGURE_BYTES];
    uint32_t run_id, hard_negatives;
    uint32_t applied, correct, checkpoint_applied, generation;
    uint8_t recent[EF_RECENT];
    uint32_t recent_n, recent_next;
    uint64_t compute_us;                   /* time spent in training steps, and the ticks short of a us */
    uint32_t compute_ticks_left;
    uint8_t *slots;                        /* EF_STAGING_SLOTS of: a record (label, negative label, image),
                                              then one bit per byte of it received */
    uint32_t slot_tag[EF_STAGING_SLOTS];   /* the sample index each slot holds, EF_EMPTY_SLOT for none */
    uint32_t slot_held[EF_STAGING_SLOTS];  /* bytes of it received */
} ef_board;

/* Power-on (and RESTORE): training state in RAM is dropped and the newest valid checkpoint restored. */
void ef_board_boot(ef_board *board);
/* Installs a board image held elsewhere (a model compiled into the firmware), as LOAD_END would: 1 when
 * it was accepted, 0 (and no model) when it was refused. */
int ef_board_install(ef_board *board, const uint8_t *image, uint32_t length);
/* The encoded reply to what the decoder returned (status, frame) into out (EF_MAX_ENCODED of the board's
 * max payload); returns its length and counts the frame. After RESET's reply board->reboot is set: the
 * application sends the reply, then reboots. */
uint32_t ef_board_reply(ef_board *board, int status, const ef_frame *frame, uint8_t *out);

#endif
