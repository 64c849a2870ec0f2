/* The board firmware: bytes from the UART (received by interrupt; the core sleeps in WFI between them)
 * through the frame decoder, one reply frame for each frame (protocol/board_protocol.c). */
#include "board_protocol.h"
#include "uart.h"

#define MAX_PAYLOAD 1024u

int main(void)
{
    static uint8_t received[EF_MAX_ENCODED(MAX_PAYLOAD)], reply[EF_MAX_ENCODED(MAX_PAYLOAD)];
    static ef_board board = {"qemu-mps2-an386", "edgeff-fw 0.1", MAX_PAYLOAD, 256u * 1024u, 1024u * 1024u, 0, 0, 0};
    ef_frame_decoder decoder;
    ef_frame frame;
    uart_init();
    ef_frame_decoder_init(&decoder, received, sizeof received);
    for (;;) {
        int status = ef_frame_feed(&decoder, uart_read_byte(), &frame);
        if (status != EF_FRAME_NONE)
            uart_write(reply, ef_board_reply(&board, status, &frame, reply));
    }
}
