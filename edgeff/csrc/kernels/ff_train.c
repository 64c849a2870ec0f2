/* One integer FF / CFF training step on one sample: the board's learning rule (mirror of
 * IntTrainer.step in edgeff/runtime/int_training.py at batch size 1; its docstring has the math). */
#include "edgeff_kernels.h"

int32_t ef_random_negative_label(uint32_t seed, uint32_t step, int32_t label, int32_t n_classes)
{
    uint32_t h = ef_hash32(seed ^ EF_NEGATIVE_LABEL_SALT, step, 0);
    return (int32_t)(((uint32_t)label + 1u + h % (uint32_t)(n_classes - 1)) % (uint32_t)n_classes);
}

void ef_ff_input(ef_ff_trainer *t, const uint8_t *image, int32_t label, int32_t row)
{
    int8_t *q = t->input + (int64_t)row * t->n_inputs;
    int32_t k = 0;
#if EF_INPUT_ZERO_POINT == -128
    for (; k + 4 <= t->n_inputs; k += 4) {   /* a pixel p - 128 as int8 is p ^ 0x80: four pixels a word */
        uint32_t word;
        __builtin_memcpy(&word, image + k, 4);
        word ^= 0x80808080u;
        __builtin_memcpy(q + k, &word, 4);
    }
#endif
    for (; k < t->n_inputs; ++k)
        q[k] = (int8_t)(image[k] + EF_INPUT_ZERO_POINT);
    for (int32_t c = 0; c < t->n_classes; ++c)
        q[c] = (int8_t)(label == EF_NEUTRAL_LABEL ? t->neutral_label_q : c == label ? t->label_q : EF_INPUT_ZERO_POINT);
}

/* A layer kind's kernels. forward: input row `in` (zero point in_zero_point) through layer L into its scratch
 * row `row`; returns the output row and sets *raw to its integer goodness. update: layer l's update from the
 * signed loss derivatives coef[2] (+ pass, - pass; Q15). */
typedef struct {
    const int8_t *(*forward)(const ef_ff_trainer *t, ef_ff_layer *L, const int8_t *in, int32_t in_zero_point,
                             int32_t row, int32_t *raw);
    void (*update)(ef_ff_trainer *t, int32_t l, const int32_t coef[2]);
} ef_layer_kernels;

static const ef_layer_kernels *layer_kernels(const ef_ff_layer *L);

void ef_ff_forward(ef_ff_trainer *t, int32_t row, int64_t *g)
{
    const int8_t *a = t->input + (int64_t)row * t->n_inputs;
    int32_t zp = EF_INPUT_ZERO_POINT;
    for (int32_t l = 0; l < t->n_layers; ++l) {
        ef_ff_layer *L = &t->layers[l];
        int32_t raw;
        a = layer_kernels(L)->forward(t, L, a, zp, row, &raw);
        g[l] = ef_multiply_by_quantized_multiplier(raw, L->goodness_multiplier, L->goodness_shift, t->rounding);
        zp = L->out_zero_point;
    }
}

/* dense: normalize, FullyConnected, ReLU and goodness, fused (ff_layer.c) */
static const int8_t *dense_forward(const ef_ff_trainer *t, ef_ff_layer *L, const int8_t *in, int32_t in_zero_point,
                                   int32_t row, int32_t *raw)
{
    int8_t *n = L->normalized + (int64_t)row * L->d_in, *out = L->output + (int64_t)row * L->d_out;
    ef_ff_layer_s8(in, 1, L->d_in, in_zero_point, L->weight, L->d_out, L->bias, L->multiplier, L->shift,
                   L->out_zero_point, L->act_min, t->rounding, n, out, raw);
    return out;
}

static int32_t sigmoid(const ef_ff_trainer *t, int64_t z)
{
    int32_t z32 = (int32_t)(z > INT32_MAX ? INT32_MAX : z < INT32_MIN ? INT32_MIN : z);
    int32_t i = ef_multiply_by_quantized_multiplier(z32, t->arg_multiplier, t->arg_shift, EF_ROUNDING_DOUBLE);
    return t->sigmoid_lut[(i < -128 ? -128 : i > 127 ? 127 : i) + 128];
}

static uint32_t noise(const ef_ff_trainer *t, uint32_t stream, uint32_t index)
{
    return t->stochastic ? ef_hash32(t->seed, t->step * 64u + stream, index) : 0;
}

#define INPUT_BLOCK 256   /* inputs a layer's update lists on the stack at a time */

/* dense: each master row steps by (coefficient x activity) x the stored normalized input, both passes. Only
 * the inputs non-zero in some pass and the units active in some pass are visited: every other weight has a
 * zero gradient, which rounds to a zero step (most of a Fashion-MNIST image is background, most units are
 * silent on a given sample). */
static void dense_update(ef_ff_trainer *t, int32_t l, const int32_t coef[2])
{
    ef_ff_layer *L = &t->layers[l];
    const int8_t *n0 = L->normalized, *n1 = L->normalized + L->d_in;
    const int8_t *out0 = L->output, *out1 = L->output + L->d_out;
    for (int32_t j = 0; j < L->d_out; ++j) {
        /* |row| < 2^15 * 255: the gradient of unit j's output, per pass */
        int64_t db = (int64_t)coef[0] * (out0[j] - L->out_zero_point) + coef[1] * (out1[j] - L->out_zero_point);
        /* the bias master steps as a weight master does (int8 inputs; see IntTrainer's docstring) */
        int64_t b = (int64_t)L->bias_master[j] + ef_round_shift(db, t->lr_shift, t->stochastic,
                                                                 noise(t, 2u * l + 1u, (uint32_t)j));
        L->bias_master[j] = (int32_t)(b > INT32_MAX ? INT32_MAX : b < INT32_MIN ? INT32_MIN : b);
        L->bias[j] = (int32_t)ef_round_shift(L->bias_master[j], 8, 0, 0);
    }
    uint32_t key = ef_hash_key(t->seed, t->step * 64u + 2u * (uint32_t)l);   /* noise stream 2l of this step */
    uint8_t inputs[INPUT_BLOCK];
    for (int32_t k0 = 0; k0 < L->d_in; k0 += INPUT_BLOCK) {
        int32_t kn = L->d_in - k0 < INPUT_BLOCK ? L->d_in - k0 : INPUT_BLOCK, count = 0;
        for (int32_t k = 0; k < kn; ++k)
            if (n0[k0 + k] | n1[k0 + k])
                inputs[count++] = (uint8_t)k;
        if (count == 0)
            continue;
        for (int32_t j = 0; j < L->d_out; ++j) {
            int32_t row0 = coef[0] * (out0[j] - L->out_zero_point), row1 = coef[1] * (out1[j] - L->out_zero_point);
            if (row0 == 0 && row1 == 0)
                continue;
            int64_t base = (int64_t)j * L->d_in + k0;
            ef_update_weight_row_pair(L->weight_master + base, L->weight + base, row0, row1, n0 + k0, n1 + k0,
                                      inputs, count, t->lr_shift, t->stochastic, key, (uint32_t)base);
        }
    }
}

/* The one place a layer's kind selects its C kernels, for inference and training alike. Every layer of a
 * board image of this format is dense: the image has no kind field (ef_image_bind sets it). */
static const ef_layer_kernels *layer_kernels(const ef_ff_layer *L)
{
    static const ef_layer_kernels dense = {dense_forward, dense_update};
    switch ((enum ef_layer_kind)L->kind) {
    case EF_LAYER_DENSE:
        return &dense;
    }
    return 0;   /* not reached: every kind has its case */
}

int32_t ef_ff_train_step(ef_ff_trainer *t, const uint8_t *image, int32_t label, int32_t negative_label)
{
    int64_t g[2][EF_MAX_LAYERS], total[2] = {0, 0};
    ef_ff_input(t, image, label, 0);
    ef_ff_input(t, image, negative_label, 1);
    for (int r = 0; r < 2; ++r) {
        ef_ff_forward(t, r, g[r]);
        for (int32_t l = 0; l < t->n_layers; ++l)
            total[r] += g[r][l];
    }

    int32_t coef[EF_MAX_LAYERS][2];
    int64_t others[EF_MAX_LAYERS][2];
    for (int32_t l = 0; l < t->n_layers; ++l) {
        int64_t gc[2];
        for (int r = 0; r < 2; ++r) {
            others[l][r] = (total[r] - g[r][l]) * t->coupling_q;     /* Q.12 * Q8 */
            gc[r] = g[r][l] + ef_round_shift(t->gamma_q[l] * others[l][r], 2 * EF_GAMMA_FRAC_BITS, 0, 0);
        }
        if (t->softplus) {
            coef[l][0] = sigmoid(t, t->theta_q - gc[0]);
            coef[l][1] = -sigmoid(t, gc[1] - t->theta_q);
        } else {
            coef[l][0] = sigmoid(t, gc[1] - gc[0]);
            coef[l][1] = -coef[l][0];
        }
    }
    for (int32_t l = 0; l < t->n_layers; ++l)
        layer_kernels(&t->layers[l])->update(t, l, coef[l]);
    if (t->adaptive)
        for (int32_t l = 0; l < t->n_layers; ++l) {
            int64_t dg = coef[l][0] * others[l][0] + coef[l][1] * others[l][1];
            int64_t step = ef_round_shift(dg, t->gamma_shift, t->stochastic, noise(t, 63u, (uint32_t)l));
            t->gamma_q[l] = (int32_t)((uint32_t)t->gamma_q[l] + (uint32_t)step);   /* wraps as int32, no UB */
        }
    t->step += 1;
    return total[0] > total[1];
}
