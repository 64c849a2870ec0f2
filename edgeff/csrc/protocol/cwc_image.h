/* The board image of a layered CwC model (format 2, firmware_bridge/board_image.py; its layout constants are
 * wire_generated.h's) used in place: checked exactly as unpack_image and IntLayeredModel.from_tensors check it
 * (and against the caller's RAM), then bound into an ef_cwc_model whose weights, masters and step factors point
 * into the image and whose working buffers are carved from the caller's scratch, as
 * edgeff.runtime.memory_plan.layered_training_plan (method "ff") plans them. Training updates the image itself. */
#ifndef EDGEFF_CWC_IMAGE_H
#define EDGEFF_CWC_IMAGE_H

#include <stdint.h>

#include "edgeff_kernels.h"
#include "wire_generated.h"

enum { EF_CWC_IMAGE_OK = 0, EF_CWC_IMAGE_BAD_MODEL = EF_ERROR_BAD_MODEL, EF_CWC_IMAGE_NO_MEMORY = EF_ERROR_NO_MEMORY };

typedef struct {
    uint32_t record;               /* the layer's record (its kind's part follows EF_CWC_IMAGE_LAYER_BYTES later) */
    uint32_t weight, bias, multiplier, shift, pad_value;          /* conv2d: byte offsets of its arrays */
    uint32_t weight_master, bias_master, step_multiplier;         /* a trained conv2d block's */
} ef_cwc_image_layer;

/* The working buffers of one step (the plan's, 8-byte aligned in the scratch in this order), in bytes. */
typedef struct {
    uint32_t slot[2];              /* activations ping (a_0, a_2, ...) and pong (a_1, a_3, ...) */
    uint32_t prepool;              /* the largest pooled block's convolution output */
    uint32_t goodness, dgoodness;  /* int32 (n_classes) each */
    uint32_t row_sums;             /* int32: the largest trained filter row */
    uint32_t conv_scratch;         /* ef_conv2d_s8_scratch_bytes of the largest block on this build */
    uint32_t head_input;           /* int8: the head layers' outputs, normalized (ef_cwc_infer) */
} ef_cwc_buffers;

typedef struct {
    int32_t n_layers, n_classes, d_head;
    uint8_t flags, eval_mask, head_mask, trained_mask;
    ef_cwc_image_layer layers[EF_MAX_LAYERS];
    uint32_t head_weight, head_bias, head_multiplier, head_shift;
    uint32_t bytes;                /* the image's size */
    ef_cwc_buffers buffers;
    uint32_t scratch_bytes;        /* the buffers, each on an 8-byte boundary */
    int32_t max_step_shift;        /* the trained blocks' largest step shift: a caller's lr_shift may be at most
                                    * 62 minus it (IntLayeredTrainer's bound: the update's shift stays <= 62) */
} ef_cwc_image_layout;

/* Checks the `length` bytes at image (8-byte aligned). Returns EF_CWC_IMAGE_OK with its layout, or an error code
 * with *why (a message) and *detail (for NO_MEMORY: the image's bytes plus the working buffers' bytes). Refused:
 * anything unpack_image refuses (format 2: its header, records, shapes, arrays, the loader's, the masters' and the
 * step factors' checks, what the CwC firmware cannot run), an image over image_capacity or working buffers over
 * scratch_capacity. */
int ef_cwc_image_check(const uint8_t *image, uint32_t length, uint32_t image_capacity, uint32_t scratch_capacity,
                       ef_cwc_image_layout *layout, const char **why, uint32_t *detail);
/* Points a model (its layers, decision fields and step) and the one-pass head into a checked image, their working
 * buffers into scratch (8-byte aligned, layout->scratch_bytes). The training settings (lr_shift, stochastic, seed)
 * are the caller's, lr_shift at most 62 - layout->max_step_shift. */
void ef_cwc_image_bind(uint8_t *image, const ef_cwc_image_layout *layout, uint8_t *scratch, ef_cwc_model *m,
                       ef_ff_head *head);
/* Writes the model's step back into the image header (the trained arrays are the image's already). */
void ef_cwc_image_store_state(uint8_t *image, const ef_cwc_model *m);

#endif
