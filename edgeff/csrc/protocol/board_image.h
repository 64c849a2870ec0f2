/* The board image (firmware_bridge/board_image.py; its layout constants are wire_generated.h's) used in
 * place: the firmware checks an image as unpack_image and IntFFModel.from_tensors do, adds master weights when it has none (as the
 * host's trainer would start them), and points a trainer and a head into it. Training then updates the
 * image itself, so it is always the board's current model, ready for READ and checkpoints. */
#ifndef EDGEFF_BOARD_IMAGE_H
#define EDGEFF_BOARD_IMAGE_H

#include <stdint.h>

#include "edgeff_kernels.h"
#include "wire_generated.h"

enum { EF_IMAGE_OK = 0, EF_IMAGE_BAD_MODEL = EF_ERROR_BAD_MODEL, EF_IMAGE_NO_MEMORY = EF_ERROR_NO_MEMORY };

typedef struct {
    uint32_t weight, bias, multiplier, shift, weight_master, bias_master;   /* byte offsets in the image */
} ef_image_layer;

typedef struct {
    int32_t n_layers, n_classes, d_head;
    int32_t sizes[EF_MAX_LAYERS + 1];
    uint8_t flags, eval_mask, head_mask;
    uint32_t layer_header;                    /* offset of the per-layer header fields */
    ef_image_layer layers[EF_MAX_LAYERS];
    uint32_t head_weight, head_bias, head_multiplier, head_shift;
    uint32_t bytes;                           /* the image's size (with master weights) */
    uint32_t scratch_bytes;                   /* the model's working buffers (ef_image_bind), then a sample
                                                 record (label, negative label, image) at the end */
} ef_image_layout;

/* Checks the `length` bytes at image. Returns EF_IMAGE_OK with the layout of the image as it will be with
 * master weights, or an error code with *why (a message) and *detail (for NO_MEMORY: the bytes needed).
 * Refused: anything unpack_image or IntFFModel refuses; int16-normalized layers (this firmware trains
 * int8-normalized ones); int8 weights that are not the rounding of their masters; an image (with masters)
 * over image_capacity or working buffers over scratch_capacity. */
int ef_image_check(const uint8_t *image, uint32_t length, uint32_t image_capacity, uint32_t scratch_capacity,
                   ef_image_layout *layout, const char **why, uint32_t *detail);
/* Makes a checked image, in place, exactly what board_image.pack_image writes for its model: master
 * weights inserted when it has none (weight * 2^8, and the bias's saturated to int32, as the host's trainer
 * starts them) and every padding byte zero. The buffer must hold layout->bytes. */
void ef_image_normalize(uint8_t *image, const ef_image_layout *layout);
/* Points a trainer (model part: weights, masters, requantization, gamma, label values, rounding) and a head
 * into the image, their working buffers into scratch. The training settings are the caller's. */
void ef_image_bind(uint8_t *image, const ef_image_layout *layout, uint8_t *scratch, ef_ff_trainer *t,
                   ef_ff_head *head);
/* Writes a trainer's step and collaboration strengths back into the image header. */
void ef_image_store_state(uint8_t *image, const ef_image_layout *layout, const ef_ff_trainer *t);
/* The image's step, read from its header. */
uint32_t ef_image_step(const uint8_t *image);

#endif
