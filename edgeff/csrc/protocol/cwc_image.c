/* The board image of a layered CwC model in place: check, bind, store the step (cwc_image.h; the format is
 * firmware_bridge/board_image.py's format 2, each kind's record edgeff/ops/<kind>/board_image.py's). Every check
 * mirrors one of unpack_image's (its header and records), IntLayeredModel.from_tensors's (the loader's),
 * load_masters's, the conv facet's check_record's or layered_firmware.check's, so this accepts exactly the images the
 * host accepts (tests/test_cwc_image_c.py). */
#include "cwc_image.h"
#include "image_bytes.h"

/* One layer as its records give it: shapes unpadded, the conv block's parameters (a maxpool2d's size in pool). */
typedef struct {
    int32_t kind, in_c, in_h, in_w, out_c, out_h, out_w, zero_point, in_zero_point;
    int32_t kernel, stride, padding, pool, explicit_pad, act_min, conv_h, conv_w, weight_shift, bias_shift;
} layer_fields;

#define MULTI_CHANNEL "a multi-channel image read unpadded (the CwC firmware quantizes a one-channel image in place)"

static int fail(const char **why, const char *message)
{
    *why = message;
    return EF_CWC_IMAGE_BAD_MODEL;
}

static int64_t get_i64(const uint8_t *p)
{
    return (int64_t)((uint64_t)ef_get_u32(p) | (uint64_t)ef_get_u32(p + 4) << 32);
}

static uint32_t saturated(uint64_t v) { return v > 0xFFFFFFF0u ? 0xFFFFFFF0u : (uint32_t)v; }

static uint64_t volume(int32_t a, int32_t b, int32_t c) { return (uint64_t)a * (uint64_t)b * (uint64_t)c; }

/* n / d by shift and subtract: the board build links no libgcc helper (a 64-bit `/` calls __aeabi_uldivmod), and
 * the check divides only a few times per load. */
static uint64_t divide_u64(uint64_t n, uint32_t d)
{
    uint64_t q = 0, r = 0;
    for (int32_t i = 63; i >= 0; --i) {
        r = r << 1 | (n >> i & 1u);
        if (r >= d) {
            r -= d;
            q |= (uint64_t)1 << i;
        }
    }
    return q;
}

static int32_t ceil_log2(uint64_t v)   /* the smallest b with 2^b >= v */
{
    int32_t b = 0;
    while (((uint64_t)1 << b) < v)
        ++b;
    return b;
}

/* floor(x / 2^k) for k >= 0, as Python's x >> k */
static int64_t floor_shift(int64_t x, int64_t k)
{
    if (k >= 63)
        return x < 0 ? -1 : 0;
    return x >= 0 ? x >> k : -((-(x + 1)) >> k) - 1;
}

/* The layer's records at r (its common part, then its kind's): NULL when they describe a layer, else why not. */
static const char *read_layer(const uint8_t *r, layer_fields *L)
{
    const uint8_t *own = r + EF_CWC_IMAGE_LAYER_BYTES;
    *L = (layer_fields){0};   /* a maxpool2d has no kernel, padding or step shifts */
    L->kind = r[EF_CWC_IMAGE_LAYER_AT_KIND];
    L->zero_point = (int8_t)r[EF_CWC_IMAGE_LAYER_AT_OUT_ZERO_POINT];
    L->in_c = (int32_t)ef_get_u16(r + EF_CWC_IMAGE_LAYER_AT_IN_CHANNELS);
    L->in_h = (int32_t)ef_get_u16(r + EF_CWC_IMAGE_LAYER_AT_IN_HEIGHT);
    L->in_w = (int32_t)ef_get_u16(r + EF_CWC_IMAGE_LAYER_AT_IN_WIDTH);
    L->out_c = (int32_t)ef_get_u16(r + EF_CWC_IMAGE_LAYER_AT_OUT_CHANNELS);
    L->out_h = (int32_t)ef_get_u16(r + EF_CWC_IMAGE_LAYER_AT_OUT_HEIGHT);
    L->out_w = (int32_t)ef_get_u16(r + EF_CWC_IMAGE_LAYER_AT_OUT_WIDTH);
    int32_t c = L->in_c, h, w;
    if (L->in_c < 1 || L->in_h < 1 || L->in_w < 1)
        return "a layer's record gives it an empty input";
    if (L->kind == EF_CWC_MAXPOOL2D) {   /* MaxPool2dSpec */
        L->pool = own[EF_CWC_IMAGE_MAXPOOL2D_AT_SIZE];
        if (L->pool < 1 || L->pool > L->in_h || L->pool > L->in_w)
            return "a maxpool2d layer's size is 0 or larger than its input";
        h = L->in_h / L->pool;
        w = L->in_w / L->pool;
    } else {                              /* Conv2dSpec */
        L->kernel = own[EF_CWC_IMAGE_CONV2D_AT_KERNEL];
        L->stride = own[EF_CWC_IMAGE_CONV2D_AT_STRIDE];
        L->padding = own[EF_CWC_IMAGE_CONV2D_AT_PADDING];
        L->pool = own[EF_CWC_IMAGE_CONV2D_AT_POOL];
        L->explicit_pad = own[EF_CWC_IMAGE_CONV2D_AT_EXPLICIT_PAD];
        L->act_min = (int8_t)own[EF_CWC_IMAGE_CONV2D_AT_ACT_MIN];
        L->weight_shift = ef_get_i32(own + EF_CWC_IMAGE_CONV2D_AT_STEP_WEIGHT_SHIFT);
        L->bias_shift = ef_get_i32(own + EF_CWC_IMAGE_CONV2D_AT_STEP_BIAS_SHIFT);
        if (L->out_c < 1 || L->kernel < 1 || L->stride < 1 || L->pool < 1)
            return "a conv2d layer's channels, kernel, stride or pool is 0";
        if (L->padding >= L->kernel)
            return "a conv2d layer's padding is not below its kernel";
        if (L->in_h + 2 * L->padding < L->kernel || L->in_w + 2 * L->padding < L->kernel)
            return "a conv2d layer's kernel does not fit its input";
        L->conv_h = (L->in_h + 2 * L->padding - L->kernel) / L->stride + 1;
        L->conv_w = (L->in_w + 2 * L->padding - L->kernel) / L->stride + 1;
        if (L->conv_h < L->pool || L->conv_w < L->pool)
            return "a conv2d layer's pool is larger than its convolution's output";
        c = L->out_c;
        h = L->conv_h / L->pool;
        w = L->conv_w / L->pool;
    }
    if (c != L->out_c || h != L->out_h || w != L->out_w)
        return "a layer's record gives an output shape its input and parameters do not";
    return 0;
}

/* Python's check_scores_fit: the layers' largest mapped class goodness summed must fit int32. */
static int scores_fit(const uint8_t *image, const uint32_t *record, const layer_fields *L, int32_t n, int32_t classes)
{
    int64_t sum = 0;
    for (int32_t l = 0; l < n; ++l) {
        int64_t g = (int64_t)divide_u64(volume(L[l].out_c, L[l].out_h, L[l].out_w), (uint32_t)classes) * (255 * 255);
        int64_t m = ef_get_i32(image + record[l] + EF_CWC_IMAGE_LAYER_AT_CLASS_MULTIPLIER);
        int64_t s = ef_get_i32(image + record[l] + EF_CWC_IMAGE_LAYER_AT_CLASS_SHIFT);
        if (s >= 31 || (s > 0 && (g << s) > INT32_MAX))   /* g >= 1: shifted left it would leave int32 */
            sum += (int64_t)INT32_MAX + 1;
        else   /* ceil(g * m * 2^(s - 31)) + 1, as Python's -(-(g * m) >> (31 - s)) + 1 */
            sum += -floor_shift(-(g * m), 31 - s) + 1;
    }
    return sum <= INT32_MAX;
}

static uint32_t aligned_add(uint32_t *pos, uint64_t bytes)
{
    uint32_t at = *pos;
    uint64_t end = (uint64_t)at + bytes;
    *pos = end > 0xFFFFFFF0u ? 0xFFFFFFF8u : ef_image_align((uint32_t)end);
    return at;
}

/* The convolution as the block runs it: an explicitly padded input is VALID, else the kernel pads. */
static ef_conv2d_shape conv_shape(const layer_fields *L)
{
    return (ef_conv2d_shape){.in_h = L->in_h + 2 * L->explicit_pad, .in_w = L->in_w + 2 * L->explicit_pad,
                             .in_c = L->in_c, .out_h = L->conv_h, .out_w = L->conv_w, .out_c = L->out_c,
                             .kernel_h = L->kernel, .kernel_w = L->kernel, .stride_h = L->stride,
                             .stride_w = L->stride, .pad_h = L->padding - L->explicit_pad,
                             .pad_w = L->padding - L->explicit_pad};
}

static uint32_t max_u32(uint32_t a, uint32_t b) { return a > b ? a : b; }


/* The plan's working buffers (layered_training_plan, method "ff"; the caller holds the input image). */
static void plan_buffers(const layer_fields *L, int32_t n, int32_t classes, uint8_t trained, int32_t d_head,
                         ef_cwc_buffers *b)
{
    uint32_t size[EF_MAX_LAYERS + 1];
    for (int32_t j = 0; j < n; ++j)   /* a_j as layer j + 1 reads it */
        size[j] = saturated(volume(L[j].in_h + 2 * L[j].explicit_pad, L[j].in_w + 2 * L[j].explicit_pad, L[j].in_c));
    size[n] = saturated(volume(L[n - 1].out_c, L[n - 1].out_h, L[n - 1].out_w));
    int in_image = size[0] == saturated(volume(L[0].in_c, L[0].in_h, L[0].in_w));   /* a_0 is the image itself */
    *b = (ef_cwc_buffers){{0, 0}, 0, 4u * (uint32_t)classes, 4u * (uint32_t)classes, 0, 0, (uint32_t)d_head};
    for (int32_t j = in_image ? 1 : 0; j <= n; ++j)
        b->slot[j % 2] = max_u32(b->slot[j % 2], size[j]);
    for (int32_t l = 0; l < n; ++l) {
        if (L[l].kind != EF_CWC_CONV2D)
            continue;
        ef_conv2d_shape shape = conv_shape(&L[l]);
        if (L[l].pool > 1)
            b->prepool = max_u32(b->prepool, saturated(volume(L[l].conv_h, L[l].conv_w, L[l].out_c)));
        if (trained >> l & 1u)
            b->row_sums = max_u32(b->row_sums, saturated(4u * volume(L[l].kernel, L[l].kernel, L[l].in_c)));
        b->conv_scratch = max_u32(b->conv_scratch, (uint32_t)ef_conv2d_s8_scratch_bytes(&shape));
    }
}

static uint32_t buffers_bytes(const ef_cwc_buffers *b)
{
    const uint32_t *part = &b->slot[0];
    uint64_t total = 0;
    for (uint32_t i = 0; i < sizeof(*b) / sizeof(uint32_t); ++i)
        total += ef_image_align(part[i]);
    return saturated(total);
}

int ef_cwc_image_check(const uint8_t *image, uint32_t length, uint32_t image_capacity, uint32_t scratch_capacity,
                       ef_cwc_image_layout *layout, const char **why, uint32_t *detail)
{
    *detail = 0;
    if (length <= 4 || ef_get_u32(image + EF_CWC_IMAGE_AT_MAGIC) != EF_IMAGE_MAGIC)
        return fail(why, "not a board image (no 'EFFB' magic)");
    if (image[EF_CWC_IMAGE_AT_FORMAT] != EF_LAYERED_MODEL_FORMAT)
        return fail(why, "board image format is not 2, a layered CwC model's");
    if (length < EF_CWC_IMAGE_FIXED_BYTES)
        return fail(why, "board image is truncated inside its header");
    int32_t n = image[EF_CWC_IMAGE_AT_N_LAYERS], classes = image[EF_CWC_IMAGE_AT_N_CLASSES];
    layout->n_layers = n;
    layout->n_classes = classes;
    layout->flags = image[EF_CWC_IMAGE_AT_FLAGS];
    layout->eval_mask = image[EF_CWC_IMAGE_AT_EVAL_MASK];
    layout->head_mask = image[EF_CWC_IMAGE_AT_HEAD_MASK];
    layout->trained_mask = image[EF_CWC_IMAGE_AT_TRAINED_MASK];
    layout->max_step_shift = 0;
    if (n < 1 || n > EF_MAX_LAYERS || classes < 2 || (layout->flags & ~EF_IMAGE_FLAG_SINGLE_ROUNDING)
        || (layout->eval_mask | layout->head_mask | layout->trained_mask) >> n)
        return fail(why, "board image header is invalid (layers, classes, flags or masks)");
    layer_fields L[EF_MAX_LAYERS];
    uint32_t pos = EF_CWC_IMAGE_FIXED_BYTES, record[EF_MAX_LAYERS];
    for (int32_t l = 0; l < n; ++l) {
        if (pos + EF_CWC_IMAGE_LAYER_BYTES > length)
            return fail(why, "board image is truncated inside its header");
        int32_t kind = image[pos + EF_CWC_IMAGE_LAYER_AT_KIND];
        if (kind != EF_CWC_CONV2D && kind != EF_CWC_MAXPOOL2D)
            return fail(why, "a layer's kind is not conv2d or maxpool2d");
        uint32_t own = kind == EF_CWC_CONV2D ? EF_CWC_IMAGE_CONV2D_BYTES : EF_CWC_IMAGE_MAXPOOL2D_BYTES;
        if (pos + EF_CWC_IMAGE_LAYER_BYTES + own > length)
            return fail(why, "board image is truncated inside its header");
        const char *bad = read_layer(image + pos, &L[l]);
        if (bad)
            return fail(why, bad);
        record[l] = pos;
        pos += EF_CWC_IMAGE_LAYER_BYTES + own;
    }
    for (int32_t l = 1; l < n; ++l)
        if (L[l].in_c != L[l - 1].out_c || L[l].in_h != L[l - 1].out_h || L[l].in_w != L[l - 1].out_w)
            return fail(why, "the layers' shapes do not chain");
    pos = ef_image_align(pos);
    if (pos > length)
        return fail(why, "board image is truncated inside its header");
    /* the arrays, in image order (uint64 sizes: a record's u16 shapes could describe more than 4 GB) */
    uint64_t d_head = 0;
    for (int32_t l = 0; l < n; ++l) {
        ef_cwc_image_layer *A = &layout->layers[l];
        *A = (ef_cwc_image_layer){.record = record[l]};
        L[l].in_zero_point = l ? L[l - 1].zero_point : EF_INPUT_ZERO_POINT;
        if (layout->head_mask >> l & 1u)
            d_head += volume(L[l].out_c, L[l].out_h, L[l].out_w);
        if (L[l].kind != EF_CWC_CONV2D)
            continue;
        uint64_t o = (uint64_t)L[l].out_c, taps = (uint64_t)L[l].kernel * (uint64_t)L[l].kernel * (uint64_t)L[l].in_c;
        A->weight = aligned_add(&pos, o * taps);
        A->bias = aligned_add(&pos, 4u * o);
        A->multiplier = aligned_add(&pos, 4u * o);
        A->shift = aligned_add(&pos, 4u * o);
        A->pad_value = aligned_add(&pos, (uint64_t)L[l].in_c);
        if (layout->trained_mask >> l & 1u) {
            A->weight_master = aligned_add(&pos, 2u * o * taps);
            A->bias_master = aligned_add(&pos, 8u * o);
            A->step_multiplier = aligned_add(&pos, 16u * o);
        }
    }
    layout->head_weight = aligned_add(&pos, (uint64_t)classes * d_head);
    layout->head_bias = aligned_add(&pos, 4u * (uint32_t)classes);
    layout->head_multiplier = aligned_add(&pos, 4u * (uint32_t)classes);
    layout->head_shift = aligned_add(&pos, 4u * (uint32_t)classes);
    if (pos > length)
        return fail(why, "board image is truncated inside its tensors");
    if (pos < length)
        return fail(why, "board image has bytes after its last tensor");
    layout->bytes = length;
    layout->d_head = (int32_t)d_head;   /* the head's arrays fit the image */
    /* the loader's checks (IntLayeredModel.from_tensors) */
    if (image[EF_CWC_IMAGE_AT_GOODNESS_FRAC_BITS] != EF_CWC_GOODNESS_FRAC_BITS)
        return fail(why, "board image's goodness fixed point is not this firmware's");
    if (layout->eval_mask == 0 || layout->head_mask == 0)
        return fail(why, "board image has no evaluation or no head layer");
    for (int32_t l = 0; l < n; ++l) {
        const ef_cwc_image_layer *A = &layout->layers[l];
        if (L[l].out_c % classes)
            return fail(why, "a layer's channels do not split into the class groups");
        if (!ef_requantization_valid(image + record[l] + EF_CWC_IMAGE_LAYER_AT_CLASS_MULTIPLIER,
                                     image + record[l] + EF_CWC_IMAGE_LAYER_AT_CLASS_SHIFT, 1))
            return fail(why, "a layer's class goodness multiplier or shift is not a valid quantized multiplier");
        if (divide_u64(volume(L[l].out_c, L[l].out_h, L[l].out_w), (uint32_t)classes) > EF_CWC_MAX_GROUP_VALUES)
            return fail(why, "a layer's class goodness could overflow int32");
        if (L[l].kind == EF_CWC_MAXPOOL2D && L[l].zero_point != L[l].in_zero_point)
            return fail(why, "a maxpool2d layer's zero point is not its input's");
        if (L[l].kind != EF_CWC_CONV2D)
            continue;
        if (!ef_requantization_valid(image + A->multiplier, image + A->shift, L[l].out_c))
            return fail(why, "a layer holds an invalid quantized multiplier or shift");
        /* what a master rounds back to: filters in [-127, 127], biases above -2^31 */
        const int8_t *w = (const int8_t *)(image + A->weight);
        for (uint32_t k = 0, count = (uint32_t)volume(L[l].out_c, L[l].kernel * L[l].kernel, L[l].in_c); k < count; ++k)
            if (w[k] == -128)
                return fail(why, "a conv2d layer holds an int8 filter value of -128");
        for (int32_t j = 0; j < L[l].out_c; ++j)
            if (ef_get_i32(image + A->bias + 4u * (uint32_t)j) == INT32_MIN)
                return fail(why, "a conv2d layer holds an int32 bias of -2^31");
    }
    if (!scores_fit(image, record, L, n, classes))
        return fail(why, "the layers' summed class goodness could overflow int32");
    if (!ef_requantization_valid(image + layout->head_multiplier, image + layout->head_shift, classes))
        return fail(why, "the head holds an invalid quantized multiplier or shift");
    /* what the CwC firmware runs (layered_firmware.check; a first conv block's padding is checked below) */
    if (classes > EF_CWC_MAX_CLASSES)
        return fail(why, "the CwC firmware takes at most 64 classes");
    if (L[0].kind != EF_CWC_CONV2D && L[0].in_c > 1)
        return fail(why, MULTI_CHANNEL);
    /* the trained layers: the last k conv2d blocks (trainable_layers), as --last-k trains */
    int after_trained = 0;
    for (int32_t l = 0; l < n; ++l) {
        int trained = layout->trained_mask >> l & 1u;
        if (trained && L[l].kind != EF_CWC_CONV2D)
            return fail(why, "a layer marked trained is not a conv2d block");
        if (L[l].kind == EF_CWC_CONV2D && after_trained && !trained)
            return fail(why, "the trained blocks are not the last k trainable layers");
        after_trained |= trained;
    }
    /* each conv block's record against its tensors (check_record), its masters (load_masters) */
    for (int32_t l = 0; l < n; ++l) {
        const ef_cwc_image_layer *A = &layout->layers[l];
        const layer_fields *B = &L[l];
        if (B->kind != EF_CWC_CONV2D)
            continue;
        int pads = 0;
        for (int32_t c = 0; c < B->in_c && B->padding; ++c)
            pads |= (int8_t)image[A->pad_value + (uint32_t)c] != B->in_zero_point;
        if (l == 0 && B->in_c > 1 && !pads)
            return fail(why, MULTI_CHANNEL);
        if (B->act_min != B->zero_point)   /* max(-128, zero point) */
            return fail(why, "a conv2d record's act_min is not its output zero point");
        if (B->explicit_pad != (pads ? B->padding : 0))
            return fail(why, "a conv2d record's explicit_pad disagrees with its padding and pad values");
        if (!(layout->trained_mask >> l & 1u)) {
            if (B->weight_shift || B->bias_shift)
                return fail(why, "a frozen block has step shifts that are not 0");
            continue;
        }
        if (B->weight_shift < 0 || B->weight_shift > (int32_t)EF_CWC_IMAGE_STEP_SHIFT_MAX || B->bias_shift < 0
            || B->bias_shift > (int32_t)EF_CWC_IMAGE_STEP_SHIFT_MAX)
            return fail(why, "a trained block's step shifts are outside 0..62");
        int32_t larger = B->weight_shift > B->bias_shift ? B->weight_shift : B->bias_shift;
        if (larger > layout->max_step_shift)
            layout->max_step_shift = larger;
        /* gradient bits (conv2d runtime's gradient_bits): 2^15 * 255 per dz times the pooled positions, the
         * filter's times 255 again; a multiplier up to 2^(62 - bits - 1) keeps the product inside int64 */
        uint64_t positions = divide_u64((uint64_t)B->conv_h * (uint64_t)B->conv_w, (uint32_t)(B->pool * B->pool));
        int32_t bias_bits = 15 + 8 + ceil_log2(positions + 1u), weight_bits = bias_bits + 8;
        int32_t o = B->out_c;
        for (int32_t k = 0; k < 2 * o; ++k) {
            int64_t m = get_i64(image + A->step_multiplier + 8u * (uint32_t)k);
            int32_t bits = k < o ? weight_bits : bias_bits;
            if (m < 0 || m > (int64_t)1 << (EF_CWC_GRADIENT_PRODUCT_BITS - bits - 1))
                return fail(why, "a trained block's step multipliers could overflow the update's int64 products");
        }
        uint32_t count = (uint32_t)volume(o, B->kernel * B->kernel, B->in_c);   /* the filters fit the image */
        const int8_t *w = (const int8_t *)(image + A->weight);
        for (uint32_t k = 0; k < count; ++k)
            if (w[k] != ef_weight_from_master((int16_t)ef_get_u16(image + A->weight_master + 2u * k)))
                return fail(why, "int8 filters are not the rounding of their masters");
        for (int32_t j = 0; j < o; ++j) {   /* bias_from_master: RoundingDivideByPOT(master, 8) in int64, then int32 */
            int64_t b = get_i64(image + A->bias_master + 8u * (uint32_t)j);
            if (b > EF_BIAS_MASTER_LIMIT || b < -EF_BIAS_MASTER_LIMIT)   /* the update's clamp: rounds into int32 */
                return fail(why, "a trained block's bias master is beyond the update's clamp");
            int64_t r = floor_shift(b, EF_MASTER_FRAC_BITS) + ((b & 255) > 127 + (b < 0));
            if ((int32_t)(uint32_t)(uint64_t)r != ef_get_i32(image + A->bias + 4u * (uint32_t)j))
                return fail(why, "int32 biases are not the rounding of their masters");
        }
    }
    plan_buffers(L, n, classes, layout->trained_mask, layout->d_head, &layout->buffers);
    layout->scratch_bytes = buffers_bytes(&layout->buffers);
    if (length > image_capacity || layout->scratch_bytes > scratch_capacity) {
        *detail = length + layout->scratch_bytes;
        *why = "the model needs more RAM than this board has";
        return EF_CWC_IMAGE_NO_MEMORY;
    }
    return EF_CWC_IMAGE_OK;
}

void ef_cwc_image_bind(uint8_t *image, const ef_cwc_image_layout *layout, uint8_t *scratch, ef_cwc_model *m,
                       ef_ff_head *head)
{
    const ef_cwc_buffers *b = &layout->buffers;
    int32_t n = layout->n_layers;
    m->n_layers = n;
    m->n_classes = layout->n_classes;
    m->frac_bits = image[EF_CWC_IMAGE_AT_GOODNESS_FRAC_BITS];
    m->rounding = layout->flags & EF_IMAGE_FLAG_SINGLE_ROUNDING ? EF_ROUNDING_SINGLE : EF_ROUNDING_DOUBLE;
    m->eval_mask = layout->eval_mask;
    m->step = ef_get_u32(image + EF_CWC_IMAGE_AT_STEP);
    int32_t zero_point = EF_INPUT_ZERO_POINT;
    for (int32_t l = 0; l < n; ++l) {
        const ef_cwc_image_layer *A = &layout->layers[l];
        layer_fields F;
        read_layer(image + A->record, &F);
        const uint8_t *r = image + A->record;
        ef_cwc_layer *L = &m->layers[l];
        *L = (ef_cwc_layer){.kind = F.kind, .in_h = F.in_h, .in_w = F.in_w, .in_c = F.in_c, .out_h = F.out_h,
                            .out_w = F.out_w, .out_c = F.out_c, .out_zero_point = F.zero_point,
                            .class_multiplier = ef_get_i32(r + EF_CWC_IMAGE_LAYER_AT_CLASS_MULTIPLIER),
                            .class_shift = ef_get_i32(r + EF_CWC_IMAGE_LAYER_AT_CLASS_SHIFT), .pool = F.pool};
        if (F.kind == EF_CWC_CONV2D) {
            int trained = layout->trained_mask >> l & 1u;
            L->pool = 1;   /* a block pools by block.pool */
            L->explicit_pad = F.explicit_pad;
            L->pad_value = (const int8_t *)(image + A->pad_value);
            L->trained = trained;
            L->block = (ef_conv2d_block){.shape = conv_shape(&F), .in_zero_point = zero_point,
                                         .out_zero_point = F.zero_point, .act_min = F.act_min, .act_max = 127,
                                         .pool = F.pool, .rounding = m->rounding,
                                         .weight = (int8_t *)(image + A->weight),
                                         .bias = (int32_t *)(void *)(image + A->bias),
                                         .multiplier = (const int32_t *)(void *)(image + A->multiplier),
                                         .shift = (const int32_t *)(void *)(image + A->shift)};
            if (trained) {
                const int64_t *steps = (const int64_t *)(void *)(image + A->step_multiplier);
                L->block.weight_master = (int16_t *)(void *)(image + A->weight_master);
                L->block.bias_master = (int64_t *)(void *)(image + A->bias_master);
                L->block.step_weight_multiplier = steps;
                L->block.step_bias_multiplier = steps + F.out_c;
                L->block.step_weight_shift = F.weight_shift;
                L->block.step_bias_shift = F.bias_shift;
            }
        }
        zero_point = F.zero_point;
    }
    uint8_t *at = scratch;
    m->slot[0] = (int8_t *)at;
    at += ef_image_align(b->slot[0]);
    m->slot[1] = (int8_t *)at;
    at += ef_image_align(b->slot[1]);
    m->prepool = (int8_t *)at;
    at += ef_image_align(b->prepool);
    m->goodness = (int32_t *)(void *)at;
    at += ef_image_align(b->goodness);
    m->dgoodness = (int32_t *)(void *)at;
    at += ef_image_align(b->dgoodness);
    m->row_sums = (int32_t *)(void *)at;
    at += ef_image_align(b->row_sums);
    m->scratch = at;
    at += ef_image_align(b->conv_scratch);
    ef_bind_head(head, image, layout->d_head, layout->head_mask, layout->head_weight, layout->head_bias,
                 layout->head_multiplier, layout->head_shift, (int8_t *)at);
}

void ef_cwc_image_store_state(uint8_t *image, const ef_cwc_model *m)
{
    ef_put_u32(image + EF_CWC_IMAGE_AT_STEP, m->step);
}
