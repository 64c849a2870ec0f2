/* The channel-wise competitive (CwC) rule of a conv block at batch 1, the board's rule: the loss derivative of one
 * sample's class goodness (mirror of edgeff/runtime/cwc_loss.py) and one block's update (mirror of
 * edgeff/runtime/conv2d_training.py; edgeff/ops/conv2d/runtime.py derives the rule and its bounds).
 *
 * The update goes output channel by output channel. dL/da at a kept position is e_j(o) * (a - zp_out), one value
 * e_j per channel, so the filter gradient row of channel o is e_j times the int32 sums
 * S[t] = sum over live pooled positions of (a - zp_out) * (x[tap t of the position's source] - zp_in):
 * |a - zp_out|, |x - zp_in| <= 255, so S is exact in int32 for up to 33,025 pooled positions (2^31 - 1 over
 * 255^2; a class group holds at most that many values, so every loadable block has fewer positions), and
 * e_j * S and the step product in int64 are the reference's int64 values. */
#include "edgeff_kernels.h"

const uint16_t ef_pow2_q15[256] = EF_POW2_Q15_TABLE;

void ef_cwc_loss_derivative_q15(const int32_t *goodness, int32_t n_classes, int32_t label, int32_t frac_bits,
                                int32_t *dgoodness)
{
    int32_t top = goodness[0];
    for (int32_t j = 1; j < n_classes; ++j)
        top = goodness[j] > top ? goodness[j] : top;
    int32_t shift = 16 + frac_bits - 8;   /* Q(frac_bits) times log2(e) in Q16 to an exponent in Q8 */
    uint32_t total = 0;   /* at most n_classes * 2^15: uint32 below 2^17 classes */
    for (int32_t j = 0; j < n_classes; ++j) {
        int64_t u = ((int64_t)(top - (int64_t)goodness[j]) * EF_LOG2E_Q16 + ((int64_t)1 << (shift - 1))) >> shift;
        int64_t whole = u >> 8;
        /* 2^(-u/256) in Q15: the table's fraction, then the whole part as a rounding shift (2^-31 and below round
         * to 0 in Q15 anyway) */
        dgoodness[j] = ef_rounding_divide_by_pot(ef_pow2_q15[u & 255], whole < 31 ? (int)whole : 31);
        total += (uint32_t)dgoodness[j];
    }
    /* total >= 2^15 (the largest class's e is the table's 2^15) and e * 2^15 + total / 2 < 2^30 + 2^31: a 32-bit
     * division, which a Cortex-M has in hardware (a 64-bit one is a libgcc call) */
    for (int32_t j = 0; j < n_classes; ++j)
        dgoodness[j] = (int32_t)(((uint32_t)dgoodness[j] * (uint32_t)EF_Q15 + total / 2) / total);
    dgoodness[label] -= EF_Q15;
}

/* the pre-pool position (row-major index into the conv output) that pooled output (py, px) of channel o came
 * from: the first largest of its window in row-major order, as torch's max_pool2d indices */
static int32_t pooled_source(const ef_conv2d_block *b, const int8_t *conv, int32_t py, int32_t px, int32_t o)
{
    const ef_conv2d_shape *s = &b->shape;
    int32_t best = (py * b->pool) * s->out_w + px * b->pool, top = conv[best * s->out_c + o];
    for (int32_t dy = 0; dy < b->pool; ++dy)
        for (int32_t dx = 0; dx < b->pool; ++dx) {
            int32_t at = (py * b->pool + dy) * s->out_w + px * b->pool + dx, v = conv[at * s->out_c + o];
            if (v > top)
                best = at, top = v;
        }
    return best;
}

/* row[t] += d * (x[t] - zp_in) over the taps of the input window of conv output position `at`; taps outside the
 * input (the kernel's own padding, and past the bottom and right) are the zero point: they add 0 */
static void accumulate_window(const ef_conv2d_block *b, const int8_t *in, int32_t at, int32_t d, int32_t *row)
{
    const ef_conv2d_shape *s = &b->shape;
    int32_t y0 = (at / s->out_w) * s->stride_h - s->pad_h, x0 = (at % s->out_w) * s->stride_w - s->pad_w;
    int32_t run = s->kernel_w * s->in_c;
    for (int32_t ky = 0; ky < s->kernel_h; ++ky) {
        int32_t y = y0 + ky;
        if (y < 0 || y >= s->in_h)
            continue;
        for (int32_t kx = 0; kx < s->kernel_w; ++kx) {
            int32_t x = x0 + kx;
            if (x < 0 || x >= s->in_w)
                continue;
            const int8_t *v = in + ((int64_t)y * s->in_w + x) * s->in_c;
            int32_t *r = row + ky * run + kx * s->in_c;
            for (int32_t c = 0; c < s->in_c; ++c)
                r[c] += d * (v[c] - b->in_zero_point);
        }
    }
}

void ef_conv2d_cwc_step(ef_conv2d_block *block, const int8_t *in, const int8_t *conv, const int8_t *pooled,
                        const int32_t *dgoodness, int32_t n_classes, int32_t lr_shift, int stochastic, uint32_t seed,
                        uint32_t stream, int32_t *row_scratch)
{
    const ef_conv2d_shape *s = &block->shape;
    int32_t taps = s->kernel_h * s->kernel_w * s->in_c, per_group = s->out_c / n_classes;
    int32_t pooled_h = s->out_h / block->pool, pooled_w = s->out_w / block->pool;
    int32_t weight_shift = lr_shift + block->step_weight_shift, bias_shift = lr_shift + block->step_bias_shift;
    uint32_t weight_key = ef_hash_key(seed, stream), bias_key = ef_hash_key(seed, stream + 1);
    for (int32_t o = 0; o < s->out_c; ++o) {
        int64_t e = dgoodness[o / per_group];
        /* a zero derivative, or a dead channel's zero factors, is a zero step whatever the noise: the masters stay
         * and so do the filters and bias (the rounding of their masters) */
        if (e == 0 || (block->step_weight_multiplier[o] == 0 && block->step_bias_multiplier[o] == 0))
            continue;
        for (int32_t t = 0; t < taps; ++t)
            row_scratch[t] = 0;
        int32_t bias_sum = 0;
        for (int32_t py = 0; py < pooled_h; ++py)
            for (int32_t px = 0; px < pooled_w; ++px) {
                int32_t a = pooled[(py * pooled_w + px) * s->out_c + o];
                if (a <= block->act_min || a >= block->act_max)   /* the ReLU's clamp passes no gradient */
                    continue;
                int32_t d = a - block->out_zero_point;
                bias_sum += d;
                accumulate_window(block, in, pooled_source(block, conv, py, px, o), d, row_scratch);
            }
        int64_t weight_factor = -block->step_weight_multiplier[o] * e;
        int16_t *master = block->weight_master + (int64_t)o * taps;
        int8_t *weight = block->weight + (int64_t)o * taps;
        for (int32_t t = 0; t < taps; ++t) {
            uint32_t index = (uint32_t)(o * taps + t);
            ef_update_weight(master + t, weight + t, weight_factor * row_scratch[t], weight_shift, stochastic,
                             stochastic ? ef_hash_mix(weight_key + index) : 0);
        }
        int64_t bias_step = ef_round_shift(-block->step_bias_multiplier[o] * e * bias_sum, bias_shift, stochastic,
                                           stochastic ? ef_hash_mix(bias_key + (uint32_t)o) : 0);
        int64_t m = block->bias_master[o] + bias_step;
        m = m > EF_BIAS_MASTER_LIMIT ? EF_BIAS_MASTER_LIMIT : m < -EF_BIAS_MASTER_LIMIT ? -EF_BIAS_MASTER_LIMIT : m;
        block->bias_master[o] = m;
        block->bias[o] = (int32_t)ef_round_shift(m, EF_MASTER_FRAC_BITS, 0, 0);
    }
}
