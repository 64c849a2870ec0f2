/* Conv check firmware: the int8 CONV_2D and MAX_POOL_2D kernels as the board runs them (on the Cortex-M4 / M7,
 * conv2d.c's im2col and SMLAD path, which the host's build cannot run) on the cases compiled in (conv_cases.h,
 * written by firmware_bridge/conv_check.py); prints the SysTick calibration, then per call its ticks and the
 * scratch it took, then the CRC-32 of every output, case after case, for the host to compare with the NumPy
 * reference:
 *   EDGEFF-CALIBRATION instructions=I ticks=T
 *   EDGEFF-CONV-CASE index=I ticks=T scratch=S      (the convolutions, then the poolings with scratch=0)
 *   EDGEFF-CONV-CHECK cases=N crc=CRC32
 * A convolution that needs more scratch than CHECK_SCRATCH_BYTES prints EDGEFF-CONV-SCRATCH case=I needs=S. */
#include "conv_cases.h"
#include "edgeff_kernels.h"
#include "framing.h"
#include "uart.h"

static void print_case(uint32_t index, uint32_t ticks, uint32_t scratch)
{
    uart_puts("EDGEFF-CONV-CASE index=");
    uart_put_u32(index);
    uart_puts(" ticks=");
    uart_put_u32(ticks);
    uart_puts(" scratch=");
    uart_put_u32(scratch);
    uart_puts("\n");
}

int main(void)
{
    static int8_t out[CHECK_MAX_OUTPUTS];
    static uint64_t scratch[CHECK_SCRATCH_BYTES / 8];   /* 8-byte aligned, as ef_conv2d_s8 asks */
    uart_init();
    systick_calibrate();
    uint32_t crc = 0;
    for (int32_t i = 0; i < CONV_CASES; ++i) {
        const conv_case *c = &conv_cases[i];
        int32_t needs = ef_conv2d_s8_scratch_bytes(&c->shape);
        if (needs > CHECK_SCRATCH_BYTES) {
            uart_puts("EDGEFF-CONV-SCRATCH case=");
            uart_put_u32((uint32_t)i);
            uart_puts(" needs=");
            uart_put_u32((uint32_t)needs);
            uart_puts("\n");
            board_exit();
        }
        uint32_t start = systick_ticks();
        ef_conv2d_s8(c->x, c->batch, &c->shape, c->in_zero_point, c->filter, c->bias, c->multiplier, c->shift,
                     c->out_zero_point, c->act_min, c->act_max, c->rounding, scratch, out);
        print_case((uint32_t)i, systick_ticks() - start, (uint32_t)needs);
        crc = ef_crc32(crc, (const uint8_t *)out,
                       (uint32_t)(c->batch * c->shape.out_h * c->shape.out_w * c->shape.out_c));
    }
    for (int32_t i = 0; i < POOL_CASES; ++i) {
        const pool_case *p = &pool_cases[i];
        uint32_t start = systick_ticks();
        ef_max_pool2d_s8(p->x, p->batch, p->h, p->w, p->c, p->size, p->act_min, p->act_max, out);
        print_case((uint32_t)(CONV_CASES + i), systick_ticks() - start, 0);
        crc = ef_crc32(crc, (const uint8_t *)out, (uint32_t)(p->batch * (p->h / p->size) * (p->w / p->size) * p->c));
    }
    uart_puts("EDGEFF-CONV-CHECK cases=");
    uart_put_u32(CONV_CASES + POOL_CASES);
    uart_puts(" crc=");
    uart_put_hex32(crc);
    uart_puts("\n");
    board_exit();
    return 0;
}
