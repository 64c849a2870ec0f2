/* A layered CwC model's board image on the host, for tests through ctypes (tests/test_cwc_image_c.py): the image
 * checked and bound as a board would (cwc_image.c) in buffers of the caller's capacities, then classified,
 * inferred and trained on with the board's kernels (cwc_model.c), and read back with its step. */
#include "cwc_image.h"

#define HOST_IMAGE_LIMIT (512u * 1024u)
#define HOST_SCRATCH_LIMIT (512u * 1024u)

static uint8_t image[HOST_IMAGE_LIMIT] __attribute__((aligned(8)));
static uint8_t scratch[HOST_SCRATCH_LIMIT] __attribute__((aligned(8)));
static ef_cwc_image_layout layout;
static ef_cwc_model model;
static ef_ff_head head;

/* Checks and binds `length` bytes as a board with these capacities would; returns the check's code, *why its
 * message, *detail its bytes needed, buffers[8] the working buffers' bytes (ef_cwc_buffers' order). */
int ef_host_cwc_load(const uint8_t *bytes, uint32_t length, uint32_t image_capacity, uint32_t scratch_capacity,
                     const char **why, uint32_t *detail, uint32_t *buffers)
{
    if (length > HOST_IMAGE_LIMIT || image_capacity > HOST_IMAGE_LIMIT || scratch_capacity > HOST_SCRATCH_LIMIT)
        return -1;
    for (uint32_t i = 0; i < length; ++i)
        image[i] = bytes[i];
    *why = "";
    int code = ef_cwc_image_check(image, length, image_capacity, scratch_capacity, &layout, why, detail);
    if (code != EF_CWC_IMAGE_OK)
        return code;
    const uint32_t *part = &layout.buffers.slot[0];
    for (uint32_t i = 0; i < sizeof(layout.buffers) / sizeof(uint32_t); ++i)
        buffers[i] = part[i];
    ef_cwc_image_bind(image, &layout, scratch, &model, &head);
    return code;
}

/* The training settings, the caller's as on a board. */
void ef_host_cwc_configure(int32_t lr_shift, int32_t stochastic, uint32_t seed)
{
    model.lr_shift = lr_shift;
    model.stochastic = stochastic;
    model.seed = seed;
}

int32_t ef_host_cwc_infer(uint8_t *pixels, int64_t *scores, int8_t *logits, int32_t *one_pass)
{
    return ef_cwc_infer(&model, &head, pixels, scores, logits, one_pass);
}

int32_t ef_host_cwc_classify(uint8_t *pixels, int64_t *scores) { return ef_cwc_classify(&model, pixels, scores); }

int32_t ef_host_cwc_train(uint8_t *pixels, int32_t label) { return ef_cwc_train_step(&model, pixels, label); }

/* The image with its step written back (READ); returns its length. */
uint32_t ef_host_cwc_read(uint8_t *out)
{
    ef_cwc_image_store_state(image, &model);
    for (uint32_t i = 0; i < layout.bytes; ++i)
        out[i] = image[i];
    return layout.bytes;
}
