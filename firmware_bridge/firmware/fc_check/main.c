/* FC check firmware: the int8 FullyConnected as the board runs it (the Cortex-M4's SMLAD loop and
 * assembly epilogue, edgeff/csrc/kernels/fully_connected.c) on the cases compiled in (fc_cases.h, written
 * by tests/test_firmware_qemu.py), which the host's build cannot run; prints the CRC-32 of every output
 * row, case after case, for the host to compare with the reference FullyConnected:
 *   EDGEFF-FC cases=N crc=CRC32 */
#include "edgeff_kernels.h"
#include "fc_cases.h"
#include "framing.h"
#include "uart.h"

int main(void)
{
    static int8_t out[FC_MAX_OUTPUTS];
    uart_init();
    uint32_t crc = 0;
    for (int32_t i = 0; i < FC_CASES; ++i) {
        const fc_case *c = &fc_cases[i];
        ef_fully_connected_s8(c->x, c->rows, c->depth, c->weight, c->units, c->bias, c->multiplier, c->shift,
                              c->zero_point, c->act_min, c->act_max, c->rounding, out);
        crc = ef_crc32(crc, (const uint8_t *)out, (uint32_t)(c->rows * c->units));
    }
    uart_puts("EDGEFF-FC cases=");
    uart_put_u32(FC_CASES);
    uart_puts(" crc=");
    uart_put_hex32(crc);
    uart_puts("\n");
    board_exit();
    return 0;
}
