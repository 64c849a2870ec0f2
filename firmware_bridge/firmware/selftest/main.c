/* Self-test firmware: trains on samples compiled in (selftest_data.h, written by
 * firmware_bridge/selftest.py), then prints one line the host checks against the NumPy runtime:
 *   EDGEFF-SELFTEST samples=N correct=C crc=CRC32 ticks=T
 * crc covers every layer's weights, master weights, biases and bias masters, in that order; ticks are
 * SysTick counts of the training loop (with QEMU's -icount shift=0, 40 instructions each). */
#include "edgeff_kernels.h"
#include "selftest_data.h"
#include "uart.h"

static uint32_t crc32_update(uint32_t crc, const void *data, uint32_t n)
{
    const uint8_t *p = data;
    crc = ~crc;
    while (n--) {
        crc ^= *p++;
        for (int k = 0; k < 8; ++k)
            crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

int main(void)
{
    static ef_ff_trainer trainer;
    uart_init();
    selftest_init(&trainer);
    uint32_t correct = 0, start = systick_ticks();
    for (uint32_t i = 0; i < SELFTEST_SAMPLES; ++i)
        correct += (uint32_t)ef_ff_train_step(&trainer, selftest_images[i], selftest_labels[i],
                                              selftest_negatives[i]);
    uint32_t ticks = systick_ticks() - start, crc = 0;
    for (int32_t l = 0; l < trainer.n_layers; ++l) {
        const ef_ff_layer *L = &trainer.layers[l];
        uint32_t n = (uint32_t)(L->d_in * L->d_out);
        crc = crc32_update(crc, L->weight, n);
        crc = crc32_update(crc, L->weight_master, 2u * n);
        crc = crc32_update(crc, L->bias, 4u * (uint32_t)L->d_out);
        crc = crc32_update(crc, L->bias_master, 4u * (uint32_t)L->d_out);
    }
    uart_puts("EDGEFF-SELFTEST samples=");
    uart_put_u32(SELFTEST_SAMPLES);
    uart_puts(" correct=");
    uart_put_u32(correct);
    uart_puts(" crc=");
    uart_put_hex32(crc);
    uart_puts(" ticks=");
    uart_put_u32(ticks);
    uart_puts("\n");
    board_exit();
    return 0;
}
