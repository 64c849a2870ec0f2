/* The board firmware's protocol built for the host, for tests (through ctypes) and the fuzzer: the board of
 * board_app/main.c with buffers of the caller's sizes (up to the limits below), storage in RAM, a clock
 * that advances by one tick per reading, and bytes fed as the UART delivers them. */
#include "board_protocol.h"

#define HOST_IMAGE_LIMIT (256u * 1024u)
#define HOST_SCRATCH_LIMIT (64u * 1024u)
#define HOST_SLOT_BYTES (EF_CHECKPOINT_HEADER + HOST_IMAGE_LIMIT)

static uint8_t image[HOST_IMAGE_LIMIT] __attribute__((aligned(8)));
static uint8_t scratch[HOST_SCRATCH_LIMIT] __attribute__((aligned(8)));
static uint8_t storage[2 * HOST_SLOT_BYTES] __attribute__((aligned(8)));
static uint8_t received[EF_MAX_ENCODED(EF_MAX_PAYLOAD)];
static ef_board board, settings;
static ef_frame_decoder decoder;
static uint32_t clock;

static int storage_write(uint32_t offset, const uint8_t *data, uint32_t n)
{
    for (uint32_t i = 0; i < n; ++i)
        storage[offset + i] = data[i];
    return 0;
}

static uint32_t ticks(void) { return ++clock; }

/* A reboot: RAM state and counters lost, storage kept, the newest checkpoint restored. */
void ef_host_board_reboot(void)
{
    board = settings;
    ef_frame_decoder_init(&decoder, received, board.max_payload);
    ef_board_boot(&board);
}

/* A new board with empty storage (with_storage 0: none); returns 0, or -1 for sizes over the limits. */
int ef_host_board_init(uint32_t max_payload, uint32_t image_capacity, uint32_t scratch_capacity, int with_storage)
{
    if (max_payload < 16 || max_payload > EF_MAX_PAYLOAD || image_capacity > HOST_IMAGE_LIMIT
        || scratch_capacity > HOST_SCRATCH_LIMIT)
        return -1;
    for (uint32_t i = 0; i < EF_CHECKPOINT_HEADER; ++i)
        storage[i] = storage[HOST_SLOT_BYTES + i] = 0xFF;   /* erased slot headers: no checkpoint */
    settings = (ef_board){.name = "host", .firmware = "host", .max_payload = (uint16_t)max_payload,
                          .flash_budget = sizeof storage, .image = image, .image_capacity = image_capacity,
                          .scratch = scratch, .scratch_capacity = scratch_capacity,
                          .storage = with_storage ? storage : 0, .storage_slot_bytes = HOST_SLOT_BYTES,
                          .storage_write = storage_write, .ticks = ticks, .ticks_per_us = 1};
    ef_host_board_reboot();
    return 0;
}

/* Feeds n received bytes; the replies go to out (at most capacity bytes: the rest is dropped, as a full
 * transmit line would); returns their length. A RESET reboots after its reply, as the firmware does. */
uint32_t ef_host_board_feed(const uint8_t *data, uint32_t n, uint8_t *out, uint32_t capacity)
{
    static uint8_t reply[EF_MAX_ENCODED(EF_MAX_PAYLOAD)];
    uint32_t written = 0;
    ef_frame frame;
    for (uint32_t i = 0; i < n; ++i) {
        int status = ef_frame_feed(&decoder, data[i], &frame);
        if (status == EF_FRAME_NONE)
            continue;
        uint32_t length = ef_board_reply(&board, status, &frame, reply);
        for (uint32_t k = 0; k < length && written < capacity; ++k)
            out[written++] = reply[k];
        if (board.reboot)
            ef_host_board_reboot();
    }
    return written;
}
