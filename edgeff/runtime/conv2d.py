"""int8 CONV_2D, as TFLite Micro's reference_integer_ops::ConvPerChannel computes it (dilation 1).

Layout NHWC for activations and OHWI for filters, as TFLite, TFLM and CMSIS-NN store them: the innermost
axis of an input pixel and of a filter tap is the channel, so the dot product of a tap is one contiguous
run in both, which is what the C twin and the Cortex-M's SMLAD path walk. (The torch model is NCHW; the
quantizer transposes once.)

    acc[n, y, x, o] = sum_{ky, kx, c} f[o, ky, kx, c] * (in[n, y*sh - ph + ky, x*sw - pw + kx, c] - zp_in)
                      + bias[o]                     (int32, wrapping; taps outside the input are skipped)
    out = clamp(MultiplyByQuantizedMultiplier(acc, M[o], shift[o]) + zp_out, act_min, act_max)

Skipping a tap outside the input is the same as padding the input with zp_in (its term is 0), which is how
the reference below computes it: the padded input's patches (im2col) times the filter rows, then the
FullyConnected epilogue (fully_connected.requantize_output: bias, double rounding, zero point, clamp).
Fused ReLU is the clamp act_min = max(-128, zp_out). Only the top and left padding enter the sum; the
output size decides how far the windows reach (TFLite's SAME pads one more at the bottom and right when
the total is odd), so the kernels take (pad, output size) as TFLM does and `geometry` derives both.
"""
import numpy as np

from edgeff.runtime import fully_connected


def output_size(size: int, kernel: int, stride: int, pad: int) -> int:
    """The output side of an explicit symmetric padding `pad` (torch's Conv2d(padding=pad))."""
    return (size + 2 * pad - kernel) // stride + 1


def geometry(size: int, kernel: int, stride: int, padding: str) -> tuple[int, int]:
    """(pad before, output side) of TFLite's padding "same" or "valid" (ComputePaddingHeightWidth)."""
    if padding == "valid":
        return 0, (size - kernel) // stride + 1
    if padding == "same":
        out = (size + stride - 1) // stride
        return max((out - 1) * stride + kernel - size, 0) // 2, out
    raise ValueError(f"padding must be 'same' or 'valid', got {padding!r}")


def patches(x: np.ndarray, input_zero_point: int, kernel: tuple, stride: tuple, pad: tuple,
            out_size: tuple) -> np.ndarray:
    """im2col: (N * out_h * out_w, kh * kw * C) int8 windows of the input padded with its zero point, each
    in the filter's (ky, kx, c) order."""
    (n, h, w, c), (kh, kw), (sh, sw), (ph, pw), (oh, ow) = x.shape, kernel, stride, pad, out_size
    below, right = max((oh - 1) * sh + kh - h - ph, 0), max((ow - 1) * sw + kw - w - pw, 0)
    padded = np.pad(x, ((0, 0), (ph, below), (pw, right), (0, 0)), constant_values=input_zero_point)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (kh, kw), axis=(1, 2))  # (N, H', W', C, kh, kw)
    windows = windows[:, : (oh - 1) * sh + 1 : sh, : (ow - 1) * sw + 1 : sw]
    return windows.transpose(0, 1, 2, 4, 5, 3).reshape(n * oh * ow, kh * kw * c)


def conv2d(x, input_zero_point, filters, bias, multiplier, shift, output_zero_point, act_min, act_max, stride,
           pad, out_size, rounding) -> np.ndarray:
    """int8 NHWC input (N, H, W, C), int8 OHWI filters (O, kh, kw, C), int32 bias (O) or None, per-channel
    multiplier and shift (O): the int8 output (N, out_h, out_w, O)."""
    filters = np.asarray(filters)
    o, kh, kw, _ = filters.shape
    cols = patches(np.asarray(x), input_zero_point, (kh, kw), stride, pad, out_size)
    acc = fully_connected.accumulate(cols, filters.reshape(o, -1), input_zero_point)
    out = fully_connected.requantize_output(acc, bias, multiplier, shift, output_zero_point, act_min, act_max,
                                            rounding)
    return out.reshape(len(x), *out_size, o)
