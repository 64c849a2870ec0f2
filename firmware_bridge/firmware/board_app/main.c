/* The board firmware: bytes from the UART (received by interrupt; the core sleeps in WFI between them)
 * through the frame decoder, one reply frame for each frame (protocol/board_protocol.c). A model comes over
 * the link, or is compiled in (EDGEFF_BOARD_MODEL: the exporter's board_model.h). The model lives
 * in RAM; checkpoints go to a storage area at the end of flash (on QEMU's MPS2 boards that memory is
 * writable RAM, so checkpoints survive a RESET's reboot but not the emulator's exit; a real board programs its
 * flash in storage_write). A board whose descriptor keeps no storage (netduinoplus2: QEMU's flash is a ROM)
 * refuses CHECKPOINT. */
#include "board_config.h"                  /* generated from the board's descriptor at build time */
#include "board_protocol.h"
#include "uart.h"
#ifdef EDGEFF_BOARD_MODEL
#include "board_model.h"                   /* `edgeff export MODEL --format board-header --out board_model.h` */
#endif

#define MAX_PAYLOAD 1024u
#define IMAGE_CAPACITY EF_BOARD_IMAGE_BYTES
#define SCRATCH_CAPACITY EF_BOARD_SCRATCH_BYTES
#define SLOT_BYTES (EF_CHECKPOINT_HEADER + IMAGE_CAPACITY)

static uint8_t image[IMAGE_CAPACITY] __attribute__((aligned(8)));
static uint8_t scratch[SCRATCH_CAPACITY] __attribute__((aligned(8)));
extern uint8_t __storage_start[], __storage_end[];   /* the linker script's checkpoint partition */

static int storage_write(uint32_t offset, const uint8_t *data, uint32_t n)
{
    for (uint32_t i = 0; i < n; ++i)
        __storage_start[offset + i] = data[i];
    return 0;
}

int main(void)
{
    static uint8_t received[EF_MAX_ENCODED(MAX_PAYLOAD)], reply[EF_MAX_ENCODED(MAX_PAYLOAD)];
    static ef_board board = {.name = EF_BOARD_NAME, .firmware = "edgeff-fw 0.2", .max_payload = MAX_PAYLOAD,
                             .flash_budget = EF_BOARD_FLASH_BYTES, .image = image, .image_capacity = IMAGE_CAPACITY,
                             .scratch = scratch, .scratch_capacity = SCRATCH_CAPACITY, .storage = __storage_start,
                             .storage_slot_bytes = SLOT_BYTES, .storage_write = storage_write,
                             .ticks = systick_ticks, .ticks_per_us = EF_BOARD_TICKS_PER_US};
    ef_frame_decoder decoder;
    ef_frame frame;
    uart_init();
    if ((uint32_t)(__storage_end - __storage_start) < 2u * SLOT_BYTES)
        board.storage = 0;                 /* no partition, or too small for two slots: no checkpoints */
    ef_board_boot(&board);
#ifdef EDGEFF_BOARD_MODEL
    if (!board.loaded)                     /* no checkpoint yet: start from the model compiled in */
        ef_board_install(&board, board_model, board_model_len);
#endif
    ef_frame_decoder_init(&decoder, received, MAX_PAYLOAD);
    for (;;) {
        int status = ef_frame_feed(&decoder, uart_read_byte(), &frame);
        if (status == EF_FRAME_NONE)
            continue;
        uart_write(reply, ef_board_reply(&board, status, &frame, reply));
        if (board.reboot)
            board_reboot();
    }
}
