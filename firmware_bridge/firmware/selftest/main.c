/* Self-test firmware: trains on samples compiled in (selftest_data.h, written by
 * firmware_bridge/selftest.py), then prints lines the host checks against the NumPy runtime:
 *   EDGEFF-CALIBRATION instructions=I ticks=T      a loop of I instructions, to convert ticks
 *   EDGEFF-LAYER index=L macs=M reps=R ticks=T fc_ticks=F
 *       R inferences of layer L on one row: the whole layer (normalize, FC, goodness), then the FC alone
 *   EDGEFF-SELFTEST samples=N correct=C crc=CRC32 ticks=T
 * crc covers every layer's weights, master weights, biases and bias masters, in that order; ticks are
 * SysTick counts (with QEMU's -icount shift=0 the count of instructions run, over 40). */
#include "edgeff_kernels.h"
#include "framing.h"
#include "selftest_data.h"
#include "uart.h"

#define LAYER_REPS 20u

static void print_field(const char *name, uint32_t value)
{
    uart_puts(name);
    uart_put_u32(value);
}

/* inference cost per layer: the labelled first image through every layer, LAYER_REPS times each */
static void time_layers(ef_ff_trainer *t)
{
    static int8_t input[SELFTEST_MAX_WIDTH], normalized[SELFTEST_MAX_WIDTH], output[SELFTEST_MAX_WIDTH];
    for (int32_t k = 0; k < t->n_inputs; ++k)
        input[k] = (int8_t)(selftest_images[0][k] - 128);
    int32_t zero_point = -128;
    for (int32_t l = 0; l < t->n_layers; ++l) {
        const ef_ff_layer *L = &t->layers[l];
        int32_t goodness;
        uint32_t start = systick_ticks();
        for (uint32_t r = 0; r < LAYER_REPS; ++r)
            ef_ff_layer_s8(input, 1, L->d_in, zero_point, L->weight, L->d_out, L->bias, L->multiplier, L->shift,
                           L->out_zero_point, L->act_min, t->rounding, normalized, output, &goodness);
        uint32_t ticks = systick_ticks() - start;
        start = systick_ticks();
        for (uint32_t r = 0; r < LAYER_REPS; ++r)
            ef_fully_connected_s8(normalized, 1, L->d_in, L->weight, L->d_out, L->bias, L->multiplier, L->shift,
                                  L->out_zero_point, L->act_min, 127, t->rounding, output);
        uint32_t fc_ticks = systick_ticks() - start;
        print_field("EDGEFF-LAYER index=", (uint32_t)l);
        print_field(" macs=", (uint32_t)(L->d_in * L->d_out));
        print_field(" reps=", LAYER_REPS);
        print_field(" ticks=", ticks);
        print_field(" fc_ticks=", fc_ticks);
        uart_puts("\n");
        for (int32_t k = 0; k < L->d_out; ++k)
            input[k] = output[k];
        zero_point = L->out_zero_point;
    }
}

int main(void)
{
    static ef_ff_trainer trainer;
    uart_init();
    selftest_init(&trainer);
    systick_calibrate();
    time_layers(&trainer);
    uint32_t correct = 0, start = systick_ticks();
    for (uint32_t i = 0; i < SELFTEST_SAMPLES; ++i)
        correct += (uint32_t)ef_ff_train_step(&trainer, selftest_images[i], selftest_labels[i],
                                              selftest_negatives[i]);
    uint32_t ticks = systick_ticks() - start, crc = 0;
    for (int32_t l = 0; l < trainer.n_layers; ++l) {
        const ef_ff_layer *L = &trainer.layers[l];
        uint32_t n = (uint32_t)(L->d_in * L->d_out);
        crc = ef_crc32(crc, (const uint8_t *)L->weight, n);
        crc = ef_crc32(crc, (const uint8_t *)L->weight_master, 2u * n);
        crc = ef_crc32(crc, (const uint8_t *)L->bias, 4u * (uint32_t)L->d_out);
        crc = ef_crc32(crc, (const uint8_t *)L->bias_master, 4u * (uint32_t)L->d_out);
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
