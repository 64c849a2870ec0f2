/* CwC self-test firmware: a layered int8 model compiled in (cwc_selftest_data.h, written by
 * firmware_bridge/layered_firmware.py) infers on the test images, then trains on the samples, one step each
 * (edgeff/csrc/kernels/cwc_model.c), and prints lines the host checks against the NumPy runtime:
 *   EDGEFF-CALIBRATION instructions=I ticks=T      a loop of I instructions, to convert ticks
 *   EDGEFF-CWC-INFER images=N crc=CRC32 ticks=T     every decision (int32), its scores (int64 per class), the
 *                                                   one-pass class (int32) and the head's logits (int8)
 *   EDGEFF-CWC-SELFTEST samples=N correct=C crc=CRC32 ticks=T
 * The second crc covers every conv block's int8 filters and int32 bias, then a trained block's filter and bias
 * masters, layer after layer. Ticks count the infer and train calls only (not the copy of each image into the
 * image buffer, which stands for its reception); with QEMU's -icount shift=0 a tick is a fixed number of
 * instructions. A block that needs more convolution scratch than the plan gives prints
 * EDGEFF-CWC-SCRATCH layer=L needs=S and stops. */
#include "cwc_selftest_data.h"
#include "edgeff_kernels.h"
#include "framing.h"
#include "uart.h"

static void print_field(const char *name, uint32_t value)
{
    uart_puts(name);
    uart_put_u32(value);
}

static void receive(const uint8_t *from)
{
    for (int32_t k = 0; k < CWC_IMAGE_BYTES; ++k)
        cwc_image[k] = from[k];
}

static int scratch_fits(const ef_cwc_model *m)
{
    for (int32_t l = 0; l < m->n_layers; ++l) {
        const ef_cwc_layer *L = &m->layers[l];
        int32_t needs = L->kind == EF_CWC_CONV2D ? ef_conv2d_s8_scratch_bytes(&L->block.shape) : 0;
        if (needs > CWC_SCRATCH_BYTES) {
            print_field("EDGEFF-CWC-SCRATCH layer=", (uint32_t)l + 1u);
            print_field(" needs=", (uint32_t)needs);
            uart_puts("\n");
            return 0;
        }
    }
    return 1;
}

static uint32_t state_crc(const ef_cwc_model *m)
{
    uint32_t crc = 0;
    for (int32_t l = 0; l < m->n_layers; ++l) {
        const ef_cwc_layer *L = &m->layers[l];
        if (L->kind != EF_CWC_CONV2D)
            continue;
        const ef_conv2d_block *b = &L->block;
        uint32_t out = (uint32_t)b->shape.out_c, weights = out * (uint32_t)(b->shape.kernel_h * b->shape.kernel_w
                                                                           * b->shape.in_c);
        crc = ef_crc32(crc, (const uint8_t *)b->weight, weights);
        crc = ef_crc32(crc, (const uint8_t *)b->bias, 4u * out);
        if (L->trained) {
            crc = ef_crc32(crc, (const uint8_t *)b->weight_master, 2u * weights);
            crc = ef_crc32(crc, (const uint8_t *)b->bias_master, 8u * out);
        }
    }
    return crc;
}

int main(void)
{
    static ef_cwc_model model;
    static ef_ff_head head;
    uart_init();
    cwc_init(&model, &head);
    systick_calibrate();
    if (!scratch_fits(&model))
        board_exit();

    uint32_t crc = 0, ticks = 0;
    for (int32_t i = 0; i < CWC_TEST_IMAGES; ++i) {
        int64_t scores[EF_CWC_MAX_CLASSES];
        int8_t logits[EF_CWC_MAX_CLASSES];
        int32_t one_pass;
        receive(cwc_test_images[i]);
        uint32_t start = systick_ticks();
        int32_t decision = ef_cwc_infer(&model, &head, cwc_image, scores, logits, &one_pass);
        ticks += systick_ticks() - start;
        crc = ef_crc32(crc, (const uint8_t *)&decision, 4u);
        crc = ef_crc32(crc, (const uint8_t *)scores, 8u * (uint32_t)model.n_classes);
        crc = ef_crc32(crc, (const uint8_t *)&one_pass, 4u);
        crc = ef_crc32(crc, (const uint8_t *)logits, (uint32_t)model.n_classes);
    }
    print_field("EDGEFF-CWC-INFER images=", CWC_TEST_IMAGES);
    uart_puts(" crc=");
    uart_put_hex32(crc);
    print_field(" ticks=", ticks);
    uart_puts("\n");

    uint32_t correct = 0;
    ticks = 0;
    for (int32_t i = 0; i < CWC_SAMPLES; ++i) {
        receive(cwc_images[i]);
        uint32_t start = systick_ticks();
        correct += (uint32_t)ef_cwc_train_step(&model, cwc_image, cwc_labels[i]);
        ticks += systick_ticks() - start;
    }
    print_field("EDGEFF-CWC-SELFTEST samples=", CWC_SAMPLES);
    print_field(" correct=", correct);
    uart_puts(" crc=");
    uart_put_hex32(state_crc(&model));
    print_field(" ticks=", ticks);
    uart_puts("\n");
    board_exit();
    return 0;
}
