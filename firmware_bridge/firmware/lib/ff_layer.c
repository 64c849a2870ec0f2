/* One FF layer's inference on rows of int8 activations, fused so that a row stays in cache:
 * L2 normalization (int8), FullyConnected with its epilogue, and the raw goodness of the output
 * (mirror of IntLayer.forward_with_goodness in edgeff/runtime/int_model.py). */
#include "edgeff_kernels.h"

void ef_ff_layer_s8(const int8_t *in, int32_t rows, int32_t d_in, int32_t in_zero_point, const int8_t *weight,
                    int32_t d_out, const int32_t *bias, const int32_t *multiplier, const int32_t *shift,
                    int32_t out_zero_point, int32_t act_min, int rounding, int8_t *normalized, int8_t *out,
                    int32_t *goodness)
{
    for (int32_t r = 0; r < rows; ++r) {
        int8_t *n = normalized + (int64_t)r * d_in, *o = out + (int64_t)r * d_out;
        ef_l2_normalize_s8(in + (int64_t)r * d_in, 1, d_in, in_zero_point, rounding, n);
        ef_fully_connected_s8(n, 1, d_in, weight, d_out, bias, multiplier, shift, out_zero_point, act_min, 127,
                              rounding, o);
        ef_goodness(o, 1, d_out, out_zero_point, goodness + r);
    }
}
