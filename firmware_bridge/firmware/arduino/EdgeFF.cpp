#include "EdgeFF.h"

#if EDGEFF_COMPILED_MODEL
#include "board_model.h"   /* the model this library was exported for: `board_model`, `board_model_len` */
#endif

/* The board's RAM for EdgeFF: the model image trained in place (with its master weights), the training
 * step's working buffers with the staged sample, and one received and one reply frame. */
static uint8_t image[EDGEFF_IMAGE_CAPACITY] __attribute__((aligned(8)));
static uint8_t scratch[EDGEFF_SCRATCH_CAPACITY] __attribute__((aligned(8)));
static uint8_t received[EF_MAX_ENCODED(EDGEFF_MAX_PAYLOAD)];
static uint8_t reply[EF_MAX_ENCODED(EDGEFF_MAX_PAYLOAD)];

static uint32_t ticks() { return (uint32_t)micros(); }   /* wraps every 71 minutes: the protocol subtracts */

uint32_t EdgeFFBoard::checkpointSlotBytes() { return EF_CHECKPOINT_HEADER + EDGEFF_IMAGE_CAPACITY; }

void EdgeFFBoard::setStorage(const uint8_t *slots, int (*write)(uint32_t, const uint8_t *, uint32_t))
{
    board_.storage = slots;
    board_.storage_slot_bytes = checkpointSlotBytes();
    board_.storage_write = write;
}

void EdgeFFBoard::begin(Stream &port)
{
    port_ = &port;
    board_.name = EDGEFF_BOARD_NAME;
    board_.firmware = EDGEFF_FIRMWARE_NAME;
    board_.max_payload = EDGEFF_MAX_PAYLOAD;
    board_.flash_budget = EDGEFF_FLASH_BYTES;
    board_.image = image;
    board_.image_capacity = EDGEFF_IMAGE_CAPACITY;
    board_.scratch = scratch;
    board_.scratch_capacity = EDGEFF_SCRATCH_CAPACITY;
    board_.ticks = ticks;
    board_.ticks_per_us = 1;
    ef_board_boot(&board_);
    start();
    ef_frame_decoder_init(&decoder_, received, EDGEFF_MAX_PAYLOAD);
}

/* What a power-on leaves after the checkpoint (if any) is restored: the compiled-in model when there is none. */
void EdgeFFBoard::start()
{
#if EDGEFF_COMPILED_MODEL
    if (!board_.loaded)
        ef_board_install(&board_, board_model, board_model_len);
#endif
}

/* USB CDC and UART cores may take fewer bytes than asked when their transmit buffer is full: write the rest. */
void EdgeFFBoard::send(const uint8_t *data, uint32_t n)
{
    while (n > 0) {
        size_t written = port_->write(data, n);
        data += written;
        n -= (uint32_t)written;
    }
}

void EdgeFFBoard::poll()
{
    ef_frame frame;
    while (port_->available() > 0) {
        int status = ef_frame_feed(&decoder_, (uint8_t)port_->read(), &frame);
        if (status == EF_FRAME_NONE)
            continue;
        send(reply, ef_board_reply(&board_, status, &frame, reply));
        if (board_.reboot) {
            /* RESET: the protocol has already dropped the RAM state and restored the checkpoint, as a power-on
             * would; a real reset would also drop the USB CDC port under the host, so this reboot is in software. */
            board_.reboot = 0;
            start();
        }
    }
}
