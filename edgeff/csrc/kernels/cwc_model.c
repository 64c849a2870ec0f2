/* A layered channel-wise competitive (CwC) model on a board: inference and the integer training step of its last
 * blocks at batch 1, the mirror of edgeff.runtime.int_layered (IntLayeredModel's class goodness and decision) and
 * edgeff.runtime.int_layered_training (IntLayeredTrainer.step).
 *
 * The buffers are the caller's, laid out as edgeff.runtime.memory_plan.layered_training_plan (method "ff") plans
 * them: a_j, the input of layer j + 1 (a_n the last output), lives in slot[j % 2] in the form layer j + 1 reads it
 * (padded with its pad values where that block pads explicitly), except a_0 when the first layer reads the image
 * unpadded: then the image is quantized in place and is a_0. A pooled block's convolution writes the pre-pool
 * buffer and pools from there into its output's slot. The layers run in order and a trained block finishes (its
 * class goodness, dL/dG, update) before the next one runs; the next one reads the output made before the update,
 * so the bits are the trainer's, which takes every block's gradient from one forward pass. */
#include "edgeff_kernels.h"

/* Layer l's raw class goodness G_j = sum over group j's channels and every position of (q - zp)^2 (int32: the
 * host refuses groups that could overflow, edgeff.runtime.class_goodness), mapped to the common fixed point. */
static void class_goodness(const ef_cwc_model *m, const ef_cwc_layer *L, const int8_t *out, int32_t *goodness)
{
    int32_t positions = L->out_h * L->out_w, group = L->out_c / m->n_classes;
    for (int32_t j = 0; j < m->n_classes; ++j) {
        int32_t g = 0;
        for (int32_t p = 0; p < positions; ++p) {
            const int8_t *q = out + (int64_t)p * L->out_c + j * group;
            for (int32_t c = 0; c < group; ++c) {
                int32_t d = q[c] - L->out_zero_point;
                g += d * d;
            }
        }
        goodness[j] = ef_multiply_by_quantized_multiplier(g, L->class_multiplier, L->class_shift, m->rounding);
    }
}

/* The border of a padded input (h x w values of c channels inside `pad` rows and columns): the pad values. */
static void fill_border(int8_t *a, int32_t h, int32_t w, int32_t c, int32_t pad, const int8_t *pad_value)
{
    int32_t wide = w + 2 * pad;
    if (pad == 0)
        return;
    for (int32_t y = 0; y < h + 2 * pad; ++y)
        for (int32_t x = 0; x < wide; ++x) {
            if (y >= pad && y < h + pad && x >= pad && x < w + pad)
                x = w + pad;   /* the interior: on to the right border */
            int8_t *p = a + ((int64_t)y * wide + x) * c;
            for (int32_t k = 0; k < c; ++k)
                p[k] = pad_value[k];
        }
}

/* Where the next block pads explicitly: its input, written unpadded at the start of its slot, spread in place to
 * the padded layout (rows moved from the last to the first, each to a place at or after where it was, so no row is
 * overwritten before it moves), then its border filled. */
static void pad_in_place(int8_t *a, int32_t h, int32_t w, int32_t c, int32_t pad, const int8_t *pad_value)
{
    int32_t wide = w + 2 * pad, run = w * c;
    for (int32_t y = h - 1; y >= 0; --y) {
        const int8_t *from = a + (int64_t)y * run;
        int8_t *to = a + ((int64_t)(y + pad) * wide + pad) * c;
        for (int32_t k = run - 1; k >= 0; --k)
            to[k] = from[k];
    }
    fill_border(a, h, w, c, pad, pad_value);
}

/* a_0 from the image (n_inputs uint8 pixels, channel-major as a model file holds them): q = pixel - 128 in
 * NHWC, in place where the first layer reads it unpadded (one channel: the same order), else into slot 0 with the
 * first block's padding (a multi-channel image read unpadded is refused on the host: the plan has it in place). */
static int in_place(const ef_cwc_model *m) { return m->layers[0].explicit_pad == 0 && m->layers[0].in_c == 1; }

static int8_t *first_input(ef_cwc_model *m, uint8_t *image)
{
    const ef_cwc_layer *L = &m->layers[0];
    int32_t h = L->in_h, w = L->in_w, c = L->in_c, pad = L->explicit_pad, wide = w + 2 * pad;
    if (in_place(m)) {
        for (int32_t k = 0; k < h * w; ++k)
            image[k] ^= 0x80u;   /* p - 128 in int8 is p with its top bit flipped */
        return (int8_t *)image;
    }
    int8_t *a = m->slot[0];
    for (int32_t ch = 0; ch < c; ++ch)
        for (int32_t y = 0; y < h; ++y)
            for (int32_t x = 0; x < w; ++x)
                a[((int64_t)(y + pad) * wide + x + pad) * c + ch] = (int8_t)(image[((int64_t)ch * h + y) * w + x] ^ 0x80u);
    fill_border(a, h, w, c, pad, L->pad_value);
    return a;
}

/* Layer l on its input `in`: its output, unpadded, at the start of slot[(l + 1) % 2]; returns where its
 * convolution's output before pooling is (the output itself when the block does not pool). */
static const int8_t *run_layer(ef_cwc_model *m, int32_t l, const int8_t *in, int8_t *out)
{
    const ef_cwc_layer *L = &m->layers[l];
    if (L->kind == EF_CWC_MAXPOOL2D) {
        ef_max_pool2d_s8(in, 1, L->in_h, L->in_w, L->in_c, L->pool, -128, 127, out);
        return out;
    }
    const ef_conv2d_block *b = &L->block;
    int8_t *conv = b->pool > 1 ? m->prepool : out;
    ef_conv2d_s8(in, 1, &b->shape, b->in_zero_point, b->weight, b->bias, b->multiplier, b->shift, b->out_zero_point,
                 b->act_min, b->act_max, b->rounding, m->scratch, conv);
    if (b->pool > 1)   /* TFLM's MAX_POOL_2D after the fused ReLU: the full int8 range */
        ef_max_pool2d_s8(conv, 1, b->shape.out_h, b->shape.out_w, b->shape.out_c, b->pool, -128, 127, out);
    return conv;
}

/* Layer l's output (out_h x out_w x out_c, NHWC) into the head's input in torch's flatten order (channel, row,
 * column: edgeff.runtime.layout.flatten_channel_major), L2-normalized in place (the kernel reads each value
 * before it writes it); returns the next free place. */
static int8_t *head_part(const ef_cwc_model *m, const ef_cwc_layer *L, const int8_t *out, int8_t *to)
{
    int32_t positions = L->out_h * L->out_w;
    for (int32_t c = 0; c < L->out_c; ++c)
        for (int32_t p = 0; p < positions; ++p)
            to[(int64_t)c * positions + p] = out[(int64_t)p * L->out_c + c];
    int32_t d = positions * L->out_c;
    ef_l2_normalize_s8(to, 1, d, L->out_zero_point, m->rounding, to);
    return to + d;
}

static int32_t first_highest(const int64_t *scores, int32_t n)
{
    int32_t best = 0;
    for (int32_t j = 1; j < n; ++j)
        if (scores[j] > scores[best])
            best = j;
    return best;
}

/* The whole pass (module comment); trains when label >= 0; fills the head's input when a head is given. */
static int32_t run(ef_cwc_model *m, uint8_t *image, int32_t label, int64_t *scores, const ef_ff_head *head)
{
    for (int32_t j = 0; j < m->n_classes; ++j)
        scores[j] = 0;
    int8_t *head_in = head ? head->input : 0;
    const int8_t *in = first_input(m, image);
    for (int32_t l = 0; l < m->n_layers; ++l) {
        ef_cwc_layer *L = &m->layers[l];
        int8_t *out = m->slot[(l + 1) % 2];
        const int8_t *conv = run_layer(m, l, in, out);
        int train = label >= 0 && L->trained, scored = (int)(m->eval_mask >> l & 1u);
        if (train || scored)
            class_goodness(m, L, out, m->goodness);
        if (scored)
            for (int32_t j = 0; j < m->n_classes; ++j)
                scores[j] += m->goodness[j];
        if (train) {
            ef_cwc_loss_derivative_q15(m->goodness, m->n_classes, label, m->frac_bits, m->dgoodness);
            ef_conv2d_cwc_step(&L->block, in, conv, out, m->dgoodness, m->n_classes, m->lr_shift, m->stochastic,
                               m->seed, m->step * EF_CWC_NOISE_STREAMS + 2u * (uint32_t)l, m->row_sums);
        }
        if (head && head->layer_mask >> l & 1u)
            head_in = head_part(m, L, out, head_in);
        if (l + 1 < m->n_layers && m->layers[l + 1].explicit_pad) {
            const ef_cwc_layer *next = &m->layers[l + 1];
            pad_in_place(out, next->in_h, next->in_w, next->in_c, next->explicit_pad, next->pad_value);
        }
        in = out;
    }
    return first_highest(scores, m->n_classes);
}

int32_t ef_cwc_classify(ef_cwc_model *m, uint8_t *image, int64_t *scores)
{
    return run(m, image, -1, scores, 0);
}

int32_t ef_cwc_infer(ef_cwc_model *m, const ef_ff_head *head, uint8_t *image, int64_t *scores, int8_t *logits,
                     int32_t *one_pass)
{
    int32_t decision = run(m, image, -1, scores, head);
    ef_fully_connected_s8(head->input, 1, head->d_in, head->weight, m->n_classes, head->bias, head->multiplier,
                          head->shift, 0, -128, 127, m->rounding, logits);
    int32_t best = 0;
    for (int32_t c = 1; c < m->n_classes; ++c)
        if (logits[c] > logits[best])
            best = c;
    *one_pass = best;
    return decision;
}

int32_t ef_cwc_train_step(ef_cwc_model *m, uint8_t *image, int32_t label)
{
    int64_t scores[EF_CWC_MAX_CLASSES];
    int32_t correct = run(m, image, label, scores, 0) == label;
    m->step += 1u;
    return correct;
}

void ef_cwc_restore_image(const ef_cwc_model *m, uint8_t *image)
{
    const ef_cwc_layer *L = &m->layers[0];
    for (int32_t k = 0; in_place(m) && k < L->in_h * L->in_w; ++k)
        image[k] ^= 0x80u;   /* q + 128 = the pixel: the top bit flipped back */
}
