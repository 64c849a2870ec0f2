"""The reference kernel set: pure NumPy, the executable specification the C kernels are tested against.

Each method is one kernel of an FF layer as the runtime calls it (every argument given, no defaults);
the C set (c_kernels.CKernels) has the same methods and the same bits. The composite kernels (a whole
layer, the multi-pass label rows) are written with `self`'s elementwise kernels, so a subclass that
speeds those up speeds the composites up too.
"""
import numpy as np

from edgeff.runtime import conv2d, conv2d_training, fully_connected, goodness, l2_normalization, pooling
from edgeff.runtime.l2_normalization import NORM_BITS_INT8
from edgeff.runtime.master_weights import round_shift, weights_from_masters

INT8_MAX = 127                # every FF layer's output is int8


class ReferenceKernels:
    name = "reference"

    def requantize_output(self, acc, bias, multiplier, shift, output_zero_point, act_min, act_max, rounding,
                          wide) -> np.ndarray:
        return fully_connected.requantize_output(acc, bias, multiplier, shift, output_zero_point, act_min, act_max,
                                                 rounding, wide)

    def l2_normalization(self, q, zero_point, output_shift_bits, out_min, out_max, rounding) -> np.ndarray:
        return l2_normalization.l2_normalization(q, zero_point, output_shift_bits, out_min, out_max, rounding)

    def goodness(self, q, zero_point) -> np.ndarray:
        return goodness.goodness(q, zero_point)

    def conv2d(self, x, input_zero_point, filters, bias, multiplier, shift, output_zero_point, act_min, act_max,
               stride, pad, out_size, rounding) -> np.ndarray:
        """int8 CONV_2D, NHWC input and output, OHWI filters; stride, pad and out_size are (height, width)."""
        return conv2d.conv2d(x, input_zero_point, filters, bias, multiplier, shift, output_zero_point, act_min,
                             act_max, stride, pad, out_size, rounding)

    def max_pool2d(self, x, size, act_min, act_max) -> np.ndarray:
        """int8 MAX_POOL_2D over non-overlapping size x size windows of an NHWC input (VALID)."""
        return pooling.max_pool2d(x, size, act_min, act_max)

    def ff_layer(self, a, zero_point, weight, bias, multiplier, shift, out_zero_point, act_min, norm_bits,
                 rounding) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One FF layer on rows of activations: (normalized input, int8 output, raw goodness)."""
        limit = 1 << norm_bits  # int8: [-128, 127]; int16: [-32768, 32767]
        n = self.l2_normalization(a, zero_point, norm_bits, -limit, limit - 1, rounding)
        out = self.requantize_output(fully_connected.accumulate(n, weight, 0), bias, multiplier, shift,
                                     out_zero_point, act_min, INT8_MAX, rounding, norm_bits > NORM_BITS_INT8)
        return n, out, self.goodness(out, out_zero_point)

    def label_rows(self, shared, label_pixel, label_columns, bias, multiplier, shift, out_zero_point, act_min,
                   norm_bits, rounding) -> tuple[np.ndarray, np.ndarray]:
        """Multi-pass first layer: the accumulator of image n with label c is shared[n] + label_pixel[n] *
        label_columns[c]; int8 outputs (N * C, units) and raw goodness (N * C)."""
        acc = shared[:, None, :] + label_pixel.astype(np.int32)[:, None, None] * label_columns[None]  # (N, C, out)
        a = self.requantize_output(acc.reshape(-1, shared.shape[1]), bias, multiplier, shift, out_zero_point,
                                   act_min, INT8_MAX, rounding, norm_bits > NORM_BITS_INT8)
        return a, self.goodness(a, out_zero_point)

    def update_weight_rows(self, master, weight, rows, grad, lr_shift, stochastic, seed, stream) -> None:
        """In place: master rows `rows` += round(grad / 2^lr_shift), and their int8 weights re-derived. The
        noise of element (r, k) is drawn at its index in the full matrix, as the board draws it."""
        d_in = master.shape[1]
        element = (rows[:, None] * d_in + np.arange(d_in)).ravel()
        master[rows] = np.clip(master[rows].astype(np.int64)
                               + round_shift(grad, lr_shift, stochastic, seed, stream, element), -32768, 32767)
        weight[rows] = weights_from_masters(master[rows])

    def conv2d_cwc_step(self, layer, kept, dgoodness, weight_master, bias_master, scales, lr_shift, stochastic, seed,
                        stream) -> None:
        """In place: one conv block's CwC update (edgeff.runtime.conv2d_training.step) from its kept forward
        (conv2d_training.Kept) and dL/dG (rows, n_classes, Q15): masters, int8 filters, bias masters, int32 bias.
        A batch's gradients are summed before the one rounding."""
        conv2d_training.step(layer, kept, dgoodness, weight_master, bias_master, scales, lr_shift, stochastic, seed,
                             stream)
