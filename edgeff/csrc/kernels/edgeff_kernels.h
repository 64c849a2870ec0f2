/* EdgeFF integer kernels: the fixed-point runtime of edgeff/runtime/ in portable C99.
 *
 * One library for the board (the QEMU Cortex-M4 firmware) and the host (loaded by
 * edgeff/runtime/c_kernels.py through ctypes). No malloc, no float, no global state: every buffer is
 * the caller's, laid out as edgeff/runtime/memory_plan.py says. Each kernel is bit-identical to its
 * NumPy twin (tests/test_c_kernels.py proves it on random cases and the worst-case bounds).
 *
 * Batched kernels take `rows` and loop over them (the board passes one or two rows, the host many).
 *
 * Assumes two's-complement int32 and arithmetic right shifts of negative values, as gcc and
 * arm-none-eabi-gcc give (TFLite Micro assumes the same).
 */
#ifndef EDGEFF_KERNELS_H
#define EDGEFF_KERNELS_H

#include <stdint.h>

#include "ff_constants.h"

#define EF_ROUNDING_DOUBLE 0   /* TFLM default: SaturatingRoundingDoublingHighMul + RoundingDivideByPOT */
#define EF_ROUNDING_SINGLE 1   /* TFLITE_SINGLE_ROUNDING: one 64-bit multiply, add, shift */

/* ---- requantize.c: gemmlowp / TFLite rescaling */
int32_t ef_saturating_rounding_doubling_high_mul(int32_t a, int32_t b);
int32_t ef_rounding_divide_by_pot(int32_t x, int exponent);                 /* 0 <= exponent <= 31 */
int32_t ef_multiply_by_quantized_multiplier(int32_t x, int32_t multiplier, int shift, int rounding);
int32_t ef_multiply_by_quantized_multiplier_int64(int64_t x, int32_t multiplier, int shift);  /* 16x8 */
/* The same result for 0 <= x < 2^31, 0 <= multiplier and no left shift (ReLU outputs, L2 norms):
 * SRDHM's product is non-negative, so its nudge is 2^30 and its division a shift, and rounding a
 * non-negative value by 2^right is (v + 2^(right-1)) >> right. Every intermediate after the product
 * fits uint32 (v < 2^31), which lets compilers vectorize loops of it; tests/test_c_kernels.py checks
 * it against the general form. */
static inline uint32_t ef_multiply_non_negative(uint32_t x, uint32_t multiplier, uint32_t right, int rounding)
{
    uint64_t product = (uint64_t)x * multiplier;
    if (rounding == EF_ROUNDING_SINGLE)
        return (uint32_t)((product + ((uint64_t)1 << (30 + right))) >> (31 + right));
    uint32_t v = (uint32_t)((product + ((uint64_t)1 << 30)) >> 31);
    return (v + ((1u << right) >> 1)) >> right;
}

/* elementwise over n values; multiplier/shift are per element (for tests and the goodness rescale) */
void ef_multiply_by_quantized_multiplier_n(const int32_t *x, const int32_t *multiplier, const int32_t *shift,
                                           int32_t n, int rounding, int32_t *out);

/* ---- fully_connected.c: TFLite FullyConnected with per-channel requantization and fused clamp.
 * `requantize` is the epilogue alone, for accumulators computed elsewhere (the host's exact BLAS). */
void ef_fully_connected_s8(const int8_t *x, int32_t rows, int32_t depth, const int8_t *weight, int32_t units,
                           const int32_t *bias, const int32_t *multiplier, const int32_t *shift,
                           int32_t out_zero_point, int32_t act_min, int32_t act_max, int rounding, int8_t *out);
void ef_fully_connected_s16(const int16_t *x, int32_t rows, int32_t depth, const int8_t *weight, int32_t units,
                            const int64_t *bias, const int32_t *multiplier, const int32_t *shift,
                            int32_t out_zero_point, int32_t act_min, int32_t act_max, int8_t *out);
void ef_requantize_s8(const int32_t *acc, int32_t rows, int32_t units, const int32_t *bias,
                      const int32_t *multiplier, const int32_t *shift, int32_t out_zero_point,
                      int32_t act_min, int32_t act_max, int rounding, int8_t *out);
/* One row's epilogue with its form decided once by the caller: relu = ef_requantize_relu_form(...) over
 * the same multipliers and shifts (the branch-free ReLU form when the clamp starts at the zero point and
 * every shift is to the right). */
int ef_requantize_relu_form(const int32_t *multiplier, const int32_t *shift, int32_t units, int32_t out_zero_point,
                            int32_t act_min, int32_t act_max);
void ef_requantize_row_s8(const int32_t *acc, int32_t units, const int32_t *bias, const int32_t *multiplier,
                          const int32_t *shift, int32_t out_zero_point, int32_t act_min, int32_t act_max,
                          int rounding, int relu, int8_t *out);
void ef_requantize_s16(const int64_t *acc, int32_t rows, int32_t units, const int64_t *bias,
                       const int32_t *multiplier, const int32_t *shift, int32_t out_zero_point,
                       int32_t act_min, int32_t act_max, int8_t *out);

/* ---- conv2d.c: TFLM CONV_2D per output channel, dilation 1: NHWC input (batch, in_h, in_w, in_c) and output
 * (batch, out_h, out_w, out_c), OHWI filters (out_c, kernel_h, kernel_w, in_c); taps outside the input (pad_h
 * rows above, pad_w columns left, and whatever the output size reaches past the bottom and right) count as
 * the input zero point; then ef_requantize_row_s8's epilogue per pixel. `scratch` is the caller's, 8-byte
 * aligned, of ef_conv2d_s8_scratch_bytes(shape) bytes: 0 for the portable path (NULL will do); on a core with
 * the Arm DSP extension, with run = kernel_w * in_c, row4 = run rounded up to a multiple of 4,
 * taps4 = kernel_h * row4 and row_bytes = (out_w - 1) * stride_w * in_c + row4,
 *   32 out_c + 8 taps4 + 16 out_c + kernel_h * row_bytes (rounded up to 8) [+ 2 out_c taps4 if row4 > run]
 * bytes: per channel its constants and four pixels' sums, the im2col block of four pixels' windows as int16,
 * the row buffer of one output row's input rows, padded, and the filter widened to int16. */
typedef struct {
    int32_t in_h, in_w, in_c, out_h, out_w, out_c;
    int32_t kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w;
} ef_conv2d_shape;
int32_t ef_conv2d_s8_scratch_bytes(const ef_conv2d_shape *shape);
void ef_conv2d_s8(const int8_t *in, int32_t batch, const ef_conv2d_shape *shape, int32_t in_zero_point,
                  const int8_t *filter, const int32_t *bias, const int32_t *multiplier, const int32_t *shift,
                  int32_t out_zero_point, int32_t act_min, int32_t act_max, int rounding, void *scratch,
                  int8_t *out);

/* ---- cwc_train.c: the channel-wise competitive (CwC) rule of a conv block, batch 1 (edgeff/ops/conv2d/runtime.py;
 * its NumPy specification is edgeff/runtime/conv2d_training.py) */
typedef struct {
    ef_conv2d_shape shape;      /* the convolution as run: pad_h/pad_w the kernel's own padding (0 when the input
                                 * was padded explicitly with pad_value, then VALID) */
    int32_t in_zero_point, out_zero_point, act_min, act_max;
    int32_t pool;               /* 1: no pooling; else MAX_POOL_2D size = stride = pool after the ReLU */
    int32_t rounding;           /* EF_ROUNDING_DOUBLE / SINGLE: the forward's (ef_conv2d_s8); the step reads none */
    int8_t *weight;             /* (out_c, kernel_h, kernel_w, in_c) OHWI */
    int32_t *bias;              /* (out_c) */
    const int32_t *multiplier, *shift;          /* (out_c) requantization */
    int16_t *weight_master;     /* (out_c, taps): 8 fractional bits over weight; NULL for a frozen block */
    int64_t *bias_master;       /* (out_c): 8 fractional bits over bias */
    const int64_t *step_weight_multiplier, *step_bias_multiplier;   /* (out_c): update_scales' multipliers */
    int32_t step_weight_shift, step_bias_shift;                      /* update_scales' shifts */
} ef_conv2d_block;

extern const uint16_t ef_pow2_q15[256];   /* round(2^15 * 2^(-i/256)): cwc_loss.POW2_TABLE */
/* dL/dG_j = p_j - [j == label] in Q15 (cwc_loss.loss_derivative) of one sample's class goodness in Q(frac_bits)
 * (frac_bits >= -7; 0 <= label < n_classes <= 65,536) */
void ef_cwc_loss_derivative_q15(const int32_t *goodness, int32_t n_classes, int32_t label, int32_t frac_bits,
                                int32_t *dgoodness);
/* One trained block's update on one sample, output channel by output channel (the exact integer gradient row of
 * channel o, then its masters, int8 filters, bias master and int32 bias, as conv2d_training.step does), so a board
 * needs one row of sums: row_scratch holds taps = kernel_h * kernel_w * in_c int32 values. in: the block's input as
 * the convolution read it (batch 1, shape->in_h x in_w x in_c); conv: the convolution's output before pooling
 * (out_h, out_w, out_c); pooled: the block's output (== conv when pool == 1); dgoodness: (n_classes) Q15.
 * Noise: stream `stream` for the filters at index o * taps + t, `stream + 1` for the biases at index o.
 * Needs what a loaded block has: at most 33,025 pooled positions (the int32 row sums), out_c a multiple of
 * n_classes, the step factors of update_scales (so every product fits int64), weight and bias the rounding of
 * their masters (a channel with a zero step is left untouched). */
void ef_conv2d_cwc_step(ef_conv2d_block *block, const int8_t *in, const int8_t *conv, const int8_t *pooled,
                        const int32_t *dgoodness, int32_t n_classes, int32_t lr_shift, int stochastic, uint32_t seed,
                        uint32_t stream, int32_t *row_scratch);

/* ---- maxpool2d.c: TFLM MAX_POOL_2D with filter = stride = size, VALID, NHWC: out (batch, in_h / size,
 * in_w / size, channels), clamped to [act_min, act_max] */
void ef_max_pool2d_s8(const int8_t *in, int32_t batch, int32_t in_h, int32_t in_w, int32_t channels, int32_t size,
                      int32_t act_min, int32_t act_max, int8_t *out);

/* ---- l2_normalization.c: TFLite L2_NORMALIZATION (int8 out, scale 2^-7) and EdgeFF's int16 variant
 * (scale 2^-15) over rows of int8 values; `rounding` is the final rescale's (as TFLITE_SINGLE_ROUNDING) */
void ef_inv_sqrt_quantized_multiplier(int32_t acc, int32_t *multiplier, int32_t *shift);  /* reverse shift -1 */
void ef_inv_sqrt_quantized_multiplier_n(const int32_t *acc, int32_t n, int32_t *multiplier, int32_t *shift);
void ef_l2_normalize_s8(const int8_t *in, int32_t rows, int32_t depth, int32_t zero_point, int rounding,
                        int8_t *out);
void ef_l2_normalize_s16(const int8_t *in, int32_t rows, int32_t depth, int32_t zero_point, int rounding,
                         int16_t *out);

/* ---- goodness.c: FF goodness sum (q - zp)^2 per row, int32 (exact below 33,000 units) */
void ef_goodness(const int8_t *a, int32_t rows, int32_t depth, int32_t zero_point, int32_t *out);

/* ---- ff_layer.c: one FF layer's inference per row: L2 normalize (int8), FullyConnected (activation range
 * [act_min, 127]), raw goodness. Keeps every row's normalized input (rows, d_in), as training needs. */
void ef_ff_layer_s8(const int8_t *in, int32_t rows, int32_t d_in, int32_t in_zero_point, const int8_t *weight,
                    int32_t d_out, const int32_t *bias, const int32_t *multiplier, const int32_t *shift,
                    int32_t out_zero_point, int32_t act_min, int rounding, int8_t *normalized, int8_t *out,
                    int32_t *goodness);
/* Multi-pass first layer: one-hot labels of one value leave an image's normalized input the same for
 * every label but the label pixel, so for image r and label c the accumulator is shared[r] (the image
 * pixels' products) + label_pixel[r] * label_columns[c] (the label pixel's weight column); then the
 * epilogue (range [act_min, 127]) into out row r * n_classes + c, and its raw goodness. */
void ef_ff_label_rows_s8(const int32_t *shared, const int8_t *label_pixel, int32_t images,
                         const int32_t *label_columns, int32_t n_classes, int32_t units, const int32_t *bias,
                         const int32_t *multiplier, const int32_t *shift, int32_t out_zero_point, int32_t act_min,
                         int rounding, int8_t *out, int32_t *goodness);

/* ---- integer_hash.c: counter-based random words (murmur3 finalizer), same bits as integer_hash.py:
 * ef_hash32(seed, step, index) = ef_hash_mix(ef_hash_key(seed, step) + index), the key made once per stream */
uint32_t ef_hash32(uint32_t seed, uint32_t step, uint32_t index);
static inline uint32_t ef_hash_key(uint32_t seed, uint32_t step)
{
    return seed * 0x9E3779B1u + step * 0x85EBCA77u;
}
static inline uint32_t ef_hash_mix(uint32_t h)
{
    h ^= h >> 16;
    h *= 0x85EBCA6Bu;
    h ^= h >> 13;
    h *= 0xC2B2AE35u;
    h ^= h >> 16;
    return h;
}

/* ---- ff_update.c: the FF master-weight update of integer training.
 * For each listed unit j (rows[r]) and input k: master[j,k] += round(grad[r,k] / 2^lr_shift) (stochastic
 * with noise ef_hash32(seed, stream, j*depth + k), or to nearest), clamped to int16; then
 * weight[j,k] = clamp(RoundingDivideByPOT(master[j,k], 8), -127, 127). */
void ef_update_weight_rows(int16_t *master, int8_t *weight, int32_t depth, const int32_t *rows, int32_t n_rows,
                           const int64_t *grad, int32_t lr_shift, int stochastic, uint32_t seed, uint32_t stream);
int64_t ef_round_shift(int64_t v, int32_t shift, int stochastic, uint32_t noise);
/* one weight: the same rounding, clamp and re-derived int8 weight, with its noise word given */
void ef_update_weight(int16_t *master, int8_t *weight, int64_t grad, int32_t lr_shift, int stochastic,
                      uint32_t noise);
/* One unit's row of a layer trained on two passes (the board's step): for each listed input k (inputs[i],
 * count of them), grad = row0 * n0[k] + row1 * n1[k] and master[k], weight[k] updated as ef_update_weight
 * does, with noise ef_hash_mix(key + index0 + k). A zero gradient leaves its weight untouched: it rounds
 * to a zero step whatever the noise, and the weight already is the rounding of its master (every board image
 * and trainer keeps that so). |row0|, |row1| <= 2^15 * 255 (a Q15 loss derivative times an int8 activity), so grad fits int32. */
void ef_update_weight_row_pair(int16_t *master, int8_t *weight, int32_t row0, int32_t row1, const int8_t *n0,
                               const int8_t *n1, const uint8_t *inputs, int32_t count, int32_t lr_shift,
                               int stochastic, uint32_t key, uint32_t index0);

/* ---- ff_train.c: one integer FF / CFF training step on one sample, the board's rule (mirror of
 * IntTrainer.step at batch size 1, int8 normalized inputs). Every buffer is the caller's. */
typedef struct {
    int32_t kind;                    /* enum ef_layer_kind: which kernels run the layer (ff_train.c's
                                      * layer_kernels); the fields below are a dense layer's */
    int32_t d_in, d_out;
    int8_t *weight;                  /* (d_out, d_in), the forward weights: rounded masters */
    int16_t *weight_master;          /* (d_out, d_in), 8 fractional bits */
    int32_t *bias, *bias_master;     /* (d_out) */
    const int32_t *multiplier, *shift;   /* (d_out) requantization */
    int32_t out_zero_point, act_min;
    int32_t goodness_multiplier, goodness_shift;   /* integer goodness -> common Q.12 */
    int8_t *normalized;              /* scratch (2, d_in): normalized input of the + and - pass */
    int8_t *output;                  /* scratch (2, d_out): output of the + and - pass */
} ef_ff_layer;

typedef struct {
    int32_t n_layers, n_classes, n_inputs;
    ef_ff_layer layers[EF_MAX_LAYERS];
    int32_t gamma_q[EF_MAX_LAYERS];  /* collaboration strength, Q8 (0 for plain FF) */
    int32_t coupling_q;              /* A = 1/(L-1), Q8 */
    int32_t adaptive;                /* A-CFF: gamma learns */
    int32_t label_q, neutral_label_q, rounding;   /* label pixel values: one-hot, and one-pass's neutral */
    const int16_t *sigmoid_lut;      /* 256 entries, Q15 (ef_sigmoid_q15) */
    int32_t softplus;                /* 0: SymBa, 1: softplus with threshold theta_q */
    int32_t arg_multiplier, arg_shift, theta_q;
    int32_t lr_shift, gamma_shift, stochastic;
    uint32_t seed, step;
    int8_t *input;                   /* scratch (2, n_inputs): the + and - input */
} ef_ff_trainer;

#define EF_NEUTRAL_LABEL (-1)        /* ef_ff_input: every label pixel neutral (one-pass inference) */

/* Row `row` (0 or 1) of t->input: the image's pixels - 128 with the label pixels one-hot for `label`. */
void ef_ff_input(ef_ff_trainer *t, const uint8_t *image, int32_t label, int32_t row);
/* Forward input row `row` through every layer (their scratch rows `row`); g[l]: layer l's goodness, Q.12. */
void ef_ff_forward(ef_ff_trainer *t, int32_t row, int64_t *g);

/* Trains on one image (n_inputs uint8 pixels) with its label and a wrong label; returns 1 when the
 * positive goodness exceeded the negative one before the update, else 0. Advances t->step. */
int32_t ef_ff_train_step(ef_ff_trainer *t, const uint8_t *image, int32_t label, int32_t negative_label);
/* The "random" negative label rule: a uniformly drawn wrong label */
int32_t ef_random_negative_label(uint32_t seed, uint32_t step, int32_t label, int32_t n_classes);
/* sigma(t / 16) for t = -128..127 in Q15: the table of edgeff.runtime.int_training.sigmoid_table() */
extern const int16_t ef_sigmoid_q15[256];

/* ---- ff_infer.c: inference on one image with the trainer's model and scratch (row 0); mirror of
 * IntFFModel.label_scores / multi_pass_scores / head_logits and the "hard" negative label rule. */
typedef struct {
    int32_t d_in;                    /* the summed widths of the layers that feed the head */
    uint32_t layer_mask;             /* bit l: layer l + 1 feeds the head, in layer order */
    const int8_t *weight;            /* (n_classes, d_in) */
    const int32_t *bias, *multiplier, *shift;   /* (n_classes) */
    int8_t *input;                   /* scratch (d_in): the normalized activities of those layers */
} ef_ff_head;

/* scores[c]: the Q.12 goodness of the layers in layer_mask (bit l: layer l + 1) summed, for label c;
 * returns the first label with the highest score. */
int32_t ef_ff_multi_pass(ef_ff_trainer *t, const uint8_t *image, uint32_t layer_mask, int64_t *scores);
/* The "hard" negative label rule: the wrong label whose goodness summed over all layers is highest. */
int32_t ef_ff_hardest_negative_label(ef_ff_trainer *t, const uint8_t *image, int32_t label, int64_t *scores);
/* One-pass: the head's int8 logits over the neutral-label pass; returns the first highest. */
int32_t ef_ff_one_pass(ef_ff_trainer *t, const ef_ff_head *head, const uint8_t *image, int8_t *logits);

/* ---- cwc_model.c: a layered channel-wise competitive model (conv blocks, max pooling) on one image: its decision,
 * and the training step of its trained blocks at batch 1 (mirror of IntLayeredModel.multi_pass_scores and
 * IntLayeredTrainer.step). Every buffer is the caller's, as edgeff.runtime.memory_plan.layered_training_plan
 * plans them (cwc_model.c says how they are used). */
typedef struct {
    int32_t kind;                  /* enum ef_cwc_layer_kind */
    int32_t in_h, in_w, in_c;      /* the layer's input, unpadded */
    int32_t out_h, out_w, out_c;   /* its output */
    int32_t out_zero_point;
    int32_t class_multiplier, class_shift;   /* raw class goodness -> the common fixed point */
    int32_t pool;                  /* maxpool2d: its window (a conv2d block pools by block.pool) */
    ef_conv2d_block block;         /* conv2d: the block; block.shape is the convolution as run */
    int32_t explicit_pad;          /* conv2d: rows and columns of pad values written around its input (0: the
                                    * kernel pads by itself with the input zero point) */
    const int8_t *pad_value;       /* conv2d: (in_c) */
    int32_t trained;               /* conv2d: the step updates it (its block's masters and step factors set) */
} ef_cwc_layer;

typedef struct {
    int32_t n_layers, n_classes, frac_bits, rounding;
    uint32_t eval_mask;            /* bit l: layer l + 1's class goodness counts in the decision */
    ef_cwc_layer layers[EF_MAX_LAYERS];
    int32_t lr_shift, stochastic;
    uint32_t seed, step;
    int8_t *slot[2];               /* the activations taking turns: a_j in slot[j % 2] */
    int8_t *prepool;               /* a pooled block's convolution output */
    int32_t *goodness, *dgoodness; /* (n_classes): one layer's class goodness and its dL/dG in Q15 */
    int32_t *row_sums;             /* the largest trained filter row's int32 sums */
    void *scratch;                 /* ef_conv2d_s8_scratch_bytes of the largest block, 8-byte aligned */
} ef_cwc_model;

/* The decision on one image (n_inputs uint8 pixels, channel-major; quantized in place when the first layer reads it
 * unpadded): scores[j] the class goodness of the evaluation layers summed; returns the first highest class. */
int32_t ef_cwc_classify(ef_cwc_model *m, uint8_t *image, int64_t *scores);
/* The same decision and scores in the same pass, and the one-pass head's int8 logits (head: ff_infer.c's
 * struct; its layer mask names the head layers, whose outputs it takes in torch's flatten order, each
 * L2-normalized: IntLayeredModel.head_logits); *one_pass is the first highest logit's class. */
int32_t ef_cwc_infer(ef_cwc_model *m, const ef_ff_head *head, uint8_t *image, int64_t *scores, int8_t *logits,
                     int32_t *one_pass);
/* One training step on an image and its label (0 <= label < n_classes: the caller checks it): returns 1 when the
 * decision before the update was right. Advances m->step. */
int32_t ef_cwc_train_step(ef_cwc_model *m, uint8_t *image, int32_t label);
/* The image's pixels back after a pass that quantized it in place (nothing to do when the first layer pads or reads
 * several channels): a caller that keeps the image (a board's staged record, which INFER may name again) calls it
 * after each pass. */
void ef_cwc_restore_image(const ef_cwc_model *m, uint8_t *image);

#endif
