/* The board image in place: check, add master weights, bind (board_image.h; the format is in
 * firmware_bridge/board_image.py). */
#include "board_image.h"
#include "image_bytes.h"

#define MAX_ARRAYS (EF_MAX_LAYERS * 6 + 4)

/* Every array's offset and length, in image order (with or without masters); returns the image size. The
 * offsets of each layer's arrays and the head's are also kept in the layout when `keep` is set. */
static uint32_t arrays(ef_image_layout *layout, int masters, uint32_t *offset, uint32_t *length, int keep)
{
    uint32_t pos = ef_image_align(layout->layer_header + EF_IMAGE_LAYER_BYTES * (uint32_t)layout->n_layers), n = 0;
    for (int32_t l = 0; l <= layout->n_layers; ++l) {
        int head = l == layout->n_layers;
        uint32_t d_out = (uint32_t)(head ? layout->n_classes : layout->sizes[l + 1]);
        uint32_t d_in = (uint32_t)(head ? layout->d_head : layout->sizes[l]);
        uint32_t sizes[6] = {d_out * d_in, 4u * d_out, 4u * d_out, 4u * d_out, 2u * d_out * d_in, 4u * d_out};
        uint32_t count = head || !masters ? 4u : 6u, at[6] = {0};
        for (uint32_t a = 0; a < count; ++a, ++n) {
            offset[n] = at[a] = pos;
            length[n] = sizes[a];
            pos = ef_image_align(pos + sizes[a]);
        }
        if (keep && head) {
            layout->head_weight = at[0];
            layout->head_bias = at[1];
            layout->head_multiplier = at[2];
            layout->head_shift = at[3];
        } else if (keep) {
            layout->layers[l] = (ef_image_layer){at[0], at[1], at[2], at[3], at[4], at[5]};
        }
    }
    return pos;
}

static int fail(const char **why, const char *message)
{
    *why = message;
    return EF_IMAGE_BAD_MODEL;
}

int ef_image_check(const uint8_t *image, uint32_t length, uint32_t image_capacity, uint32_t scratch_capacity,
                   ef_image_layout *layout, const char **why, uint32_t *detail)
{
    *detail = 0;
    if (length < EF_IMAGE_FIXED_BYTES || ef_get_u32(image + EF_IMAGE_AT_MAGIC) != EF_IMAGE_MAGIC)
        return fail(why, "not a board image (no 'EFFB' magic)");
    if (image[EF_IMAGE_AT_FORMAT] != EF_MODEL_FORMAT)
        return fail(why, "board image format is not the one this firmware reads");
    int32_t n = image[EF_IMAGE_AT_N_LAYERS], n_classes = image[EF_IMAGE_AT_N_CLASSES];
    uint8_t flags = image[EF_IMAGE_AT_FLAGS];
    if (n < 1 || n > EF_MAX_LAYERS || n_classes < 2 || (flags >> 1 & 3u) > 2u || flags >> 4)
        return fail(why, "board image header is invalid (layers, classes or flags)");
    layout->n_layers = n;
    layout->n_classes = n_classes;
    layout->flags = flags;
    layout->eval_mask = image[EF_IMAGE_AT_EVAL_MASK];
    layout->head_mask = image[EF_IMAGE_AT_HEAD_MASK];
    layout->layer_header = (EF_IMAGE_FIXED_BYTES + 2u * (uint32_t)(n + 1) + 3u) & ~3u;
    if (length < ef_image_align(layout->layer_header + EF_IMAGE_LAYER_BYTES * (uint32_t)n))
        return fail(why, "board image is truncated inside its header");
    for (int32_t i = 0; i <= n; ++i)
        layout->sizes[i] = (int32_t)ef_get_u16(image + EF_IMAGE_FIXED_BYTES + 2 * i);
    layout->d_head = 0;
    for (int32_t l = 0; l < n; ++l)
        if (layout->head_mask >> l & 1u)
            layout->d_head += layout->sizes[l + 1];
    for (int32_t i = 0; i <= n; ++i)
        if (layout->sizes[i] == 0)
            return fail(why, "board image header is invalid (a layer of 0 units)");
    if (layout->head_mask == 0 || (layout->head_mask | layout->eval_mask) >> n)
        return fail(why, "board image header is invalid (evaluation or head layers)");
    if (n_classes > layout->sizes[0])
        return fail(why, "board image header is invalid (more classes than inputs)");
    for (int32_t l = 0; l < n; ++l) {
        uint8_t bits = image[layout->layer_header + EF_IMAGE_LAYER_BYTES * (uint32_t)l + EF_IMAGE_LAYER_AT_NORM_BITS];
        if (bits != 7 && bits != 15)
            return fail(why, "board image header is invalid (norm bits must be 7 or 15)");
        if (bits != 7)
            return fail(why, "this firmware trains int8-normalized layers only (norm bits 7)");
    }
    uint32_t offset[MAX_ARRAYS], size[MAX_ARRAYS];
    int masters = flags & EF_IMAGE_FLAG_MASTERS;
    uint32_t bytes = arrays(layout, masters, offset, size, 0);
    if (bytes > length)
        return fail(why, "board image is truncated inside its tensors");
    if (bytes < length)
        return fail(why, "board image has bytes after its last tensor");
    layout->bytes = arrays(layout, 1, offset, size, masters);
    if (!masters)
        arrays(layout, 0, offset, size, 1);    /* check the image as it is; add_masters moves it */
    for (int32_t l = 0; l < n; ++l) {
        const uint8_t *h = image + layout->layer_header + EF_IMAGE_LAYER_BYTES * (uint32_t)l;
        const ef_image_layer *L = &layout->layers[l];
        if (!ef_requantization_valid(image + L->multiplier, image + L->shift, layout->sizes[l + 1])
            || !ef_requantization_valid(h + EF_IMAGE_LAYER_AT_GOODNESS_MULTIPLIER,
                                     h + EF_IMAGE_LAYER_AT_GOODNESS_SHIFT, 1))
            return fail(why, "a layer holds an invalid quantized multiplier or shift");
        if (masters) {
            const int8_t *w = (const int8_t *)(image + L->weight);
            uint32_t count = (uint32_t)layout->sizes[l] * (uint32_t)layout->sizes[l + 1];
            for (uint32_t k = 0; k < count; ++k)
                if (w[k] != ef_weight_from_master((int16_t)ef_get_u16(image + L->weight_master + 2 * k)))
                    return fail(why, "int8 weights are not the rounding of their master weights");
        }
    }
    if (!ef_requantization_valid(image + layout->head_multiplier, image + layout->head_shift, n_classes))
        return fail(why, "the head holds an invalid quantized multiplier or shift");
    if (!masters)
        arrays(layout, 1, offset, size, 1);
    uint32_t scratch = 2u * (uint32_t)layout->sizes[0];
    for (int32_t l = 0; l < n; ++l)
        scratch += 2u * (uint32_t)(layout->sizes[l] + layout->sizes[l + 1]);
    uint32_t record = 2u + (uint32_t)layout->sizes[0];   /* the staging slots: a record and its bitmap each */
    layout->scratch_bytes = scratch + (uint32_t)layout->d_head + EF_STAGING_SLOTS * (record + (record + 7u) / 8u);
    if (layout->bytes > image_capacity || layout->scratch_bytes > scratch_capacity) {
        *detail = layout->bytes + layout->scratch_bytes;
        *why = "the model needs more RAM than this board has";
        return EF_IMAGE_NO_MEMORY;
    }
    return EF_IMAGE_OK;
}

/* memmove for a destination at or after the source */
static void move_up(uint8_t *dst, const uint8_t *src, uint32_t n)
{
    while (n--)
        dst[n] = src[n];
}

static void zero(uint8_t *image, uint32_t from, uint32_t to)
{
    for (uint32_t p = from; p < to; ++p)
        image[p] = 0;
}

void ef_image_normalize(uint8_t *image, const ef_image_layout *checked)
{
    ef_image_layout layout = *checked;
    int masters = image[EF_IMAGE_AT_FLAGS] & EF_IMAGE_FLAG_MASTERS;
    uint32_t from[MAX_ARRAYS], to[MAX_ARRAYS], size[MAX_ARRAYS], unused[MAX_ARRAYS], kept[MAX_ARRAYS];
    uint32_t count = 0, n_to = 0;
    arrays(&layout, masters, from, size, 0);
    arrays(&layout, 1, to, unused, 0);
    for (int32_t l = 0; l <= layout.n_layers; ++l) {      /* where each array now in the image goes */
        uint32_t all = l == layout.n_layers ? 4u : 6u, now = masters ? all : 4u;
        for (uint32_t a = 0; a < now; ++a)
            kept[count++] = n_to + a;
        n_to += all;
    }
    for (uint32_t i = count; i-- > 0;) {  /* back to front: every array stays or moves up */
        uint32_t dst = to[kept[i]];
        move_up(image + dst, image + from[i], size[i]);
        zero(image, dst + size[i], ef_image_align(dst + size[i]));
    }
    for (int32_t l = 0; l < layout.n_layers && !masters; ++l) {
        const ef_image_layer *L = &layout.layers[l];
        uint32_t d_out = (uint32_t)layout.sizes[l + 1], count_w = (uint32_t)layout.sizes[l] * d_out;
        const int8_t *w = (const int8_t *)(image + L->weight);
        uint8_t *m = image + L->weight_master;
        for (uint32_t k = 0; k < count_w; ++k) {
            uint32_t v = (uint32_t)(int32_t)(w[k] * (1 << EF_MASTER_FRAC_BITS));
            m[2 * k] = (uint8_t)v;
            m[2 * k + 1] = (uint8_t)(v >> 8);
        }
        zero(image, L->weight_master + 2u * count_w, ef_image_align(L->weight_master + 2u * count_w));
        for (uint32_t j = 0; j < d_out; ++j) {
            int64_t b = (int64_t)ef_get_i32(image + L->bias + 4 * j) * (1 << EF_MASTER_FRAC_BITS);
            ef_put_u32(image + L->bias_master + 4 * j, (uint32_t)(int32_t)(b > INT32_MAX ? INT32_MAX
                                                                       : b < INT32_MIN ? INT32_MIN : b));
        }
        zero(image, L->bias_master + 4u * d_out, ef_image_align(L->bias_master + 4u * d_out));
    }
    image[EF_IMAGE_AT_FLAGS] |= EF_IMAGE_FLAG_MASTERS;
    zero(image, EF_IMAGE_AT_HEAD_MASK + 1u, EF_IMAGE_AT_STEP);   /* the header's padding */
    zero(image, EF_IMAGE_FIXED_BYTES + 2u * (uint32_t)(layout.n_layers + 1), layout.layer_header);
    uint32_t h = layout.layer_header;
    for (int32_t l = 0; l < layout.n_layers; ++l, h += EF_IMAGE_LAYER_BYTES)
        zero(image, h + EF_IMAGE_LAYER_AT_NORM_BITS + 1u, h + EF_IMAGE_LAYER_AT_GOODNESS_MULTIPLIER);   /* padding */
    zero(image, h, ef_image_align(h));
}

void ef_image_bind(uint8_t *image, const ef_image_layout *layout, uint8_t *scratch, ef_ff_trainer *t,
                   ef_ff_head *head)
{
    int32_t n = layout->n_layers;
    t->n_layers = n;
    t->n_classes = layout->n_classes;
    t->n_inputs = layout->sizes[0];
    t->label_q = (int8_t)image[EF_IMAGE_AT_LABEL_Q];
    t->neutral_label_q = (int8_t)image[EF_IMAGE_AT_NEUTRAL_LABEL_Q];
    t->rounding = image[EF_IMAGE_AT_FLAGS] >> 3 & 1u;
    t->adaptive = (image[EF_IMAGE_AT_FLAGS] >> 1 & 3u) == 2u;
    t->coupling_q = n > 1 ? (256 + (n - 1) / 2) / (n - 1) : 256;   /* round(2^8 / (L - 1)) */
    t->sigmoid_lut = ef_sigmoid_q15;
    t->step = ef_image_step(image);
    t->input = (int8_t *)scratch;
    scratch += 2 * t->n_inputs;
    for (int32_t l = 0; l < n; ++l) {
        const uint8_t *h = image + layout->layer_header + EF_IMAGE_LAYER_BYTES * (uint32_t)l;
        const ef_image_layer *A = &layout->layers[l];
        ef_ff_layer *L = &t->layers[l];
        L->kind = EF_LAYER_DENSE;           /* the image has no kind field: every layer of this format is dense */
        L->d_in = layout->sizes[l];
        L->d_out = layout->sizes[l + 1];
        L->weight = (int8_t *)(image + A->weight);
        L->weight_master = (int16_t *)(void *)(image + A->weight_master);
        L->bias = (int32_t *)(void *)(image + A->bias);
        L->bias_master = (int32_t *)(void *)(image + A->bias_master);
        L->multiplier = (const int32_t *)(void *)(image + A->multiplier);
        L->shift = (const int32_t *)(void *)(image + A->shift);
        L->out_zero_point = (int8_t)h[EF_IMAGE_LAYER_AT_OUT_ZERO_POINT];
        L->act_min = L->out_zero_point;     /* the fused ReLU: max(-128, zero point) */
        L->goodness_multiplier = ef_get_i32(h + EF_IMAGE_LAYER_AT_GOODNESS_MULTIPLIER);
        L->goodness_shift = ef_get_i32(h + EF_IMAGE_LAYER_AT_GOODNESS_SHIFT);
        t->gamma_q[l] = ef_get_i32(h + EF_IMAGE_LAYER_AT_GAMMA_Q);
        L->normalized = (int8_t *)scratch;
        scratch += 2 * L->d_in;
        L->output = (int8_t *)scratch;
        scratch += 2 * L->d_out;
    }
    head->d_in = layout->d_head;
    head->layer_mask = layout->head_mask;
    head->weight = (const int8_t *)(image + layout->head_weight);
    head->bias = (const int32_t *)(void *)(image + layout->head_bias);
    head->multiplier = (const int32_t *)(void *)(image + layout->head_multiplier);
    head->shift = (const int32_t *)(void *)(image + layout->head_shift);
    head->input = (int8_t *)scratch;
}

void ef_image_store_state(uint8_t *image, const ef_image_layout *layout, const ef_ff_trainer *t)
{
    ef_put_u32(image + EF_IMAGE_AT_STEP, t->step);
    for (int32_t l = 0; l < layout->n_layers; ++l)
        ef_put_u32(image + layout->layer_header + EF_IMAGE_LAYER_BYTES * (uint32_t)l + EF_IMAGE_LAYER_AT_GAMMA_Q,
                (uint32_t)t->gamma_q[l]);
}

uint32_t ef_image_step(const uint8_t *image) { return ef_get_u32(image + EF_IMAGE_AT_STEP); }
