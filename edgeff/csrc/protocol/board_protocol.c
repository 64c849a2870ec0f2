/* The board side of the serial protocol: each request's handler, as firmware_bridge/board.py's _on_*. Format 1
 * (an FF MLP) and format 2 (a layered CwC model) differ in install, configure, train and infer; the rest is shared. */
#include "board_protocol.h"
#include "image_bytes.h"

#define CHECKPOINT_MAGIC 0x43464645u       /* "EFFC" */
#define CHECKPOINT_CRC_AT 52u              /* the slot's CRC covers the bytes before it and the image */
#define LAYERED EF_LAYERED_MODEL_FORMAT
#define MODEL_FORMATS (1u << (EF_MODEL_FORMAT - 1) | 1u << (LAYERED - 1))   /* INFO's mask: bit f - 1, format f */

/* payload lengths of the fixed-size requests, by type (-n: chunked, a header of n bytes and at least one byte) */
static const int16_t request_bytes[EF_LAST_REQUEST + 1] = EF_REQUEST_PAYLOAD_BYTES;

/* A reply: its type and payload, or an error (code, detail, message). */
typedef struct {
    uint8_t type;
    uint8_t payload[EF_MAX_PAYLOAD];
    uint32_t length;
    const uint8_t *data;                   /* DATA: bytes after the payload (inside the image) */
    uint32_t data_length;
    uint8_t error;
    uint32_t detail;
    const char *message;
} reply;

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_u16(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put_u32(uint8_t *p, uint32_t v)
{
    put_u16(p, v);
    put_u16(p + 2, v >> 16);
}

static void put_text(uint8_t *p, const char *s)
{
    uint32_t i = 0;
    for (; i < EF_TEXT_FIELD && s[i]; ++i)
        p[i] = (uint8_t)s[i];
    for (; i < EF_TEXT_FIELD; ++i)
        p[i] = 0;
}

static int refuse(reply *r, uint8_t code, uint32_t detail, const char *message)
{
    r->error = code;
    r->detail = detail;
    r->message = message;
    return 0;
}

static int ok(reply *r, uint32_t value)
{
    r->type = EF_REPLY_OK;
    put_u32(r->payload, value);
    r->length = EF_OK_BYTES;
    return 0;
}

/* ------------------------------------------------------------------ state */
static void empty_slots(ef_board *b)
{
    for (uint32_t i = 0; i < EF_STAGING_SLOTS; ++i) {
        b->slot_tag[i] = EF_EMPTY_SLOT;
        b->slot_held[i] = 0;
    }
}

static void empty(ef_board *b)
{
    b->loaded = b->configured = b->trained_since_install = b->loading = 0;
    b->run_id = b->applied = b->correct = b->checkpoint_applied = 0;
    b->recent_n = b->recent_next = 0;
    b->compute_us = 0;
    b->compute_ticks_left = 0;
    empty_slots(b);
    b->image_bytes = b->image_crc = 0;
}

/* The staging slots' bytes: each a record and a bit per byte of it */
static uint64_t slots_bytes(uint64_t record) { return EF_STAGING_SLOTS * (record + (record + 7u) / 8u); }

/* Format 1: checked, masters added, bound; board_image.c counts the staging slots at the end of its scratch. */
static int install_ff(ef_board *b, uint32_t length, reply *r)
{
    const char *why;
    uint32_t detail;
    ef_image_layout *layout = &b->model.ff.layout;
    int code = ef_image_check(b->image, length, b->image_capacity, b->scratch_capacity, layout, &why, &detail);
    if (code != EF_IMAGE_OK)
        return refuse(r, (uint8_t)code, detail, why);
    ef_image_normalize(b->image, layout);
    ef_image_bind(b->image, layout, b->scratch, &b->model.ff.trainer, &b->head);
    b->n_classes = (uint32_t)layout->n_classes;
    b->record_bytes = 2u + (uint32_t)layout->sizes[0];
    b->slots = b->scratch + layout->scratch_bytes - (uint32_t)slots_bytes(b->record_bytes);
    b->image_bytes = layout->bytes;
    b->memory_bytes = layout->bytes + layout->scratch_bytes;
    return 1;
}

/* Format 2: checked and bound as sent (it carries its masters); the staging slots follow the model's working
 * buffers, so the bytes needed (NO_MEMORY's detail) are the image, those buffers and the slots, as for format 1. */
static int install_cwc(ef_board *b, uint32_t length, reply *r)
{
    const char *why;
    uint32_t detail;
    ef_cwc_image_layout *layout = &b->model.cwc.layout;
    int code = ef_cwc_image_check(b->image, length, b->image_capacity, b->scratch_capacity, layout, &why, &detail);
    if (code == EF_CWC_IMAGE_BAD_MODEL)
        return refuse(r, (uint8_t)code, detail, why);
    const uint8_t *first = b->image + EF_CWC_IMAGE_FIXED_BYTES;   /* checked: the first layer's record */
    uint64_t inputs = (uint64_t)ef_get_u16(first + EF_CWC_IMAGE_LAYER_AT_IN_CHANNELS)
                      * ef_get_u16(first + EF_CWC_IMAGE_LAYER_AT_IN_HEIGHT)
                      * ef_get_u16(first + EF_CWC_IMAGE_LAYER_AT_IN_WIDTH);
    uint64_t scratch = layout->scratch_bytes + slots_bytes(2u + inputs), need = length + scratch;
    if (length > b->image_capacity || scratch > b->scratch_capacity)   /* 64-bit: u16 shapes can say 2^48 bytes */
        return refuse(r, EF_ERROR_NO_MEMORY, need > 0xFFFFFFFFu ? 0xFFFFFFFFu : (uint32_t)need,
                      "the model needs more RAM than this board has");
    ef_cwc_image_bind(b->image, layout, b->scratch, &b->model.cwc.model, &b->head);
    b->n_classes = (uint32_t)layout->n_classes;
    b->record_bytes = 2u + (uint32_t)inputs;
    b->slots = b->scratch + layout->scratch_bytes;
    b->image_bytes = length;
    b->memory_bytes = (uint32_t)need;
    return 1;
}

/* Installs the image in the image buffer (checked, bound; format 1 gets its masters); training starts
 * unconfigured. */
static int install(ef_board *b, uint32_t length, reply *r)
{
    b->format = length > EF_IMAGE_AT_FORMAT && b->image[EF_IMAGE_AT_FORMAT] == LAYERED ? LAYERED : EF_MODEL_FORMAT;
    if (!(b->format == LAYERED ? install_cwc(b, length, r) : install_ff(b, length, r)))
        return 0;
    b->loaded = 1;
    b->configured = b->trained_since_install = 0;
    b->run_id = b->applied = b->correct = b->checkpoint_applied = 0;
    empty_slots(b);
    b->image_crc = ef_crc32(0, b->image, b->image_bytes);
    return 1;
}

/* Format 1's settings (checked) into its trainer. */
static int configure_ff(ef_board *b, const uint8_t *p, reply *r)
{
    uint32_t lr_shift = p[EF_CONFIGURE_AT_LR_SHIFT], gamma_shift = p[EF_CONFIGURE_AT_GAMMA_SHIFT];
    uint32_t loss = p[EF_CONFIGURE_AT_LOSS], negatives = p[EF_CONFIGURE_AT_NEGATIVES];
    uint32_t rounding = p[EF_CONFIGURE_AT_ROUNDING];
    int32_t multiplier = (int32_t)get_u32(p + EF_CONFIGURE_AT_SIGMOID_MULTIPLIER);
    int32_t shift = (int32_t)get_u32(p + EF_CONFIGURE_AT_SIGMOID_SHIFT);
    if (loss > 1 || negatives > 1 || rounding > 1)
        return refuse(r, EF_ERROR_BAD_RANGE, 0, "loss, negatives or rounding code out of range");
    if (!(multiplier == 0 || multiplier >= (1 << 30)) || shift < -31 || shift > 30)
        return refuse(r, EF_ERROR_BAD_RANGE, 0, "sigmoid argument multiplier or shift out of range");
    if (lr_shift < EF_LR_SHIFT_MIN || lr_shift > EF_LR_SHIFT_MAX || gamma_shift < EF_GAMMA_SHIFT_MIN
        || gamma_shift > EF_GAMMA_SHIFT_MAX)
        return refuse(r, EF_ERROR_BAD_RANGE, 0, "lr_shift or gamma_shift outside the range a trainer takes");
    ef_ff_trainer *t = &b->model.ff.trainer;
    t->lr_shift = (int32_t)lr_shift;
    t->gamma_shift = (int32_t)gamma_shift;
    t->softplus = (int32_t)loss;
    t->stochastic = rounding == 0;
    t->seed = get_u32(p + EF_CONFIGURE_AT_SEED);
    t->arg_multiplier = multiplier;
    t->arg_shift = shift;
    t->theta_q = (int32_t)get_u32(p + EF_CONFIGURE_AT_THETA_Q);
    b->hard_negatives = negatives;
    return 1;
}

/* Format 2's settings (checked, as IntLayeredTrainer checks them) into its model: run id, lr_shift, rounding and
 * seed; the FF loss's fields must be 0 (a CwC model has none). */
static int configure_cwc(ef_board *b, const uint8_t *p, reply *r)
{
    const ef_cwc_image_layout *layout = &b->model.cwc.layout;
    uint32_t lr_shift = p[EF_CONFIGURE_AT_LR_SHIFT], rounding = p[EF_CONFIGURE_AT_ROUNDING];
    /* the largest lr_shift it trains with: in LR_SHIFT_RANGE, and the update's shift (lr_shift + a step shift) <= 62 */
    uint32_t bound = EF_CWC_IMAGE_STEP_SHIFT_MAX - (uint32_t)layout->max_step_shift;
    uint32_t largest = bound < EF_LR_SHIFT_MAX ? bound : EF_LR_SHIFT_MAX;
    if (layout->trained_mask == 0)
        return refuse(r, EF_ERROR_BAD_STATE, 0, "the model has no trained block: load one with masters to train");
    if (p[EF_CONFIGURE_AT_GAMMA_SHIFT] || p[EF_CONFIGURE_AT_LOSS] || p[EF_CONFIGURE_AT_NEGATIVES]
        || get_u32(p + EF_CONFIGURE_AT_SIGMOID_MULTIPLIER) || get_u32(p + EF_CONFIGURE_AT_SIGMOID_SHIFT)
        || get_u32(p + EF_CONFIGURE_AT_THETA_Q))
        return refuse(r, EF_ERROR_BAD_RANGE, 0, "a CwC model takes no gamma_shift, loss, negatives, sigmoid or theta");
    if (rounding > 1)
        return refuse(r, EF_ERROR_BAD_RANGE, 0, "rounding code out of range");
    if (lr_shift < EF_LR_SHIFT_MIN || lr_shift > largest)
        return refuse(r, EF_ERROR_BAD_RANGE, largest, "lr_shift outside the range this model trains with");
    ef_cwc_model *m = &b->model.cwc.model;
    m->lr_shift = (int32_t)lr_shift;
    m->stochastic = rounding == 0;
    m->seed = get_u32(p + EF_CONFIGURE_AT_SEED);
    return 1;
}

/* Applies CONFIGURE's settings (checked) to the installed model; training restarts at sample 0. */
static int configure(ef_board *b, const uint8_t *p, reply *r)
{
    if (!(b->format == LAYERED ? configure_cwc(b, p, r) : configure_ff(b, p, r)))
        return 0;
    b->run_id = get_u32(p + EF_CONFIGURE_AT_RUN_ID);
    for (uint32_t i = 0; i < EF_CONFIGURE_BYTES; ++i)
        b->configuration[i] = p[i];
    b->configured = 1;
    b->applied = b->correct = b->checkpoint_applied = 0;
    b->recent_n = b->recent_next = 0;
    empty_slots(b);                        /* records staged for another run's samples */
    return 1;
}

/* Storage slot i: magic, generation, applied, correct, configured, image bytes (u32 each), the CONFIGURE
 * payload, the CRC of all that and the image, padding to EF_CHECKPOINT_HEADER, then the image. The slot of
 * generation g is g % 2. */
static const uint8_t *slot(const ef_board *b, uint32_t i) { return b->storage + i * b->storage_slot_bytes; }

static int slot_valid(const ef_board *b, const uint8_t *s)
{
    uint32_t bytes = get_u32(s + 20);
    if (get_u32(s) != CHECKPOINT_MAGIC || bytes > b->image_capacity
        || bytes > b->storage_slot_bytes - EF_CHECKPOINT_HEADER)
        return 0;
    uint32_t crc = ef_crc32(ef_crc32(0, s, CHECKPOINT_CRC_AT), s + EF_CHECKPOINT_HEADER, bytes);
    return crc == get_u32(s + CHECKPOINT_CRC_AT);
}

static reply current, unused;             /* the reply being made; one for errors no one is told of */

void ef_board_boot(ef_board *b)
{
    empty(b);
    b->generation = 0;
    if (b->storage == 0)
        return;
    const uint8_t *best = 0;
    for (uint32_t i = 0; i < 2; ++i) {
        const uint8_t *s = slot(b, i);
        if (slot_valid(b, s) && (best == 0 || get_u32(s + 4) > get_u32(best + 4)))
            best = s;
    }
    if (best == 0)
        return;
    uint32_t bytes = get_u32(best + 20);
    for (uint32_t i = 0; i < bytes; ++i)
        b->image[i] = best[EF_CHECKPOINT_HEADER + i];
    if (!install(b, bytes, &unused) || (get_u32(best + 16) && !configure(b, best + 24, &unused))) {
        empty(b);                          /* a checkpoint this firmware cannot use: start empty */
        return;
    }
    b->applied = b->checkpoint_applied = get_u32(best + 8);
    b->correct = get_u32(best + 12);
    b->generation = get_u32(best + 4);
}

/* Writes the state to the slot that does not hold the newest checkpoint: the image first, the header with
 * its CRC last, so a write cut short leaves a slot that fails its CRC and the other one intact. */
int ef_board_install(ef_board *b, const uint8_t *image, uint32_t length)
{
    if (length > b->image_capacity)
        return 0;
    for (uint32_t i = 0; i < length; ++i)
        b->image[i] = image[i];
    if (install(b, length, &unused))
        return 1;
    empty(b);
    return 0;
}

static int checkpoint(ef_board *b, reply *r)
{
    if (!b->loaded)
        return refuse(r, EF_ERROR_BAD_STATE, 0, "no model loaded: nothing to checkpoint");
    if (b->storage == 0)
        return refuse(r, EF_ERROR_STORAGE, 0, "this board has no storage for checkpoints");
    if (b->image_bytes > b->storage_slot_bytes - EF_CHECKPOINT_HEADER)
        return refuse(r, EF_ERROR_STORAGE, b->image_bytes, "the storage slots are smaller than the model");
    uint8_t h[EF_CHECKPOINT_HEADER] = {0};
    uint32_t generation = b->generation + 1, target = generation % 2u * b->storage_slot_bytes;
    put_u32(h, CHECKPOINT_MAGIC);
    put_u32(h + 4, generation);
    put_u32(h + 8, b->applied);
    put_u32(h + 12, b->correct);
    put_u32(h + 16, (uint32_t)b->configured);
    put_u32(h + 20, b->image_bytes);
    for (uint32_t i = 0; i < EF_CONFIGURE_BYTES && b->configured; ++i)
        h[24 + i] = b->configuration[i];
    put_u32(h + CHECKPOINT_CRC_AT, ef_crc32(ef_crc32(0, h, CHECKPOINT_CRC_AT), b->image, b->image_bytes));
    if (b->storage_write(target + EF_CHECKPOINT_HEADER, b->image, b->image_bytes) != 0
        || b->storage_write(target, h, EF_CHECKPOINT_HEADER) != 0)
        return refuse(r, EF_ERROR_STORAGE, 0, "checkpoint not written");
    b->generation = generation;
    b->checkpoint_applied = b->applied;
    return 1;
}

/* ------------------------------------------------------------------ requests */
static int on_hello(ef_board *b, const uint8_t *p, reply *r)
{
    uint8_t highest = p[EF_HELLO_AT_MAX_VERSION], lowest = p[EF_HELLO_AT_MIN_VERSION];
    uint8_t version = highest < EF_PROTOCOL_MAX_VERSION ? highest : EF_PROTOCOL_MAX_VERSION;
    if (lowest < EF_PROTOCOL_MIN_VERSION)
        lowest = EF_PROTOCOL_MIN_VERSION;
    if (version < lowest)
        return refuse(r, EF_ERROR_VERSION, EF_PROTOCOL_MIN_VERSION << 8 | EF_PROTOCOL_MAX_VERSION,
                      "the board does not speak a protocol version the host offers");
    uint8_t *o = r->payload;
    uint32_t budget = b->image_capacity + b->scratch_capacity;
    o[EF_INFO_AT_VERSION] = version;
    o[EF_INFO_AT_MIN_VERSION] = EF_PROTOCOL_MIN_VERSION;
    o[EF_INFO_AT_MAX_VERSION] = EF_PROTOCOL_MAX_VERSION;
    put_u16(o + EF_INFO_AT_MAX_PAYLOAD, b->max_payload);
    put_u32(o + EF_INFO_AT_SRAM_BUDGET, budget);
    put_u32(o + EF_INFO_AT_FLASH_BUDGET, b->flash_budget);
    put_u32(o + EF_INFO_AT_SRAM_FREE, budget - (b->loaded ? b->memory_bytes : 0u));
    o[EF_INFO_AT_MODEL_FORMAT] = MODEL_FORMATS;
    o[EF_INFO_AT_FLAGS] = (uint8_t)(b->loaded | b->configured << 1);
    put_u32(o + EF_INFO_AT_RUN_ID, b->run_id);
    put_u32(o + EF_INFO_AT_APPLIED, b->applied);
    put_u32(o + EF_INFO_AT_CHECKPOINT_APPLIED, b->checkpoint_applied);
    put_u32(o + EF_INFO_AT_IMAGE_BYTES, b->loaded ? b->image_bytes : 0u);
    put_u32(o + EF_INFO_AT_IMAGE_CRC, b->loaded ? b->image_crc : 0u);
    put_text(o + EF_INFO_AT_NAME, b->name);
    put_text(o + EF_INFO_AT_FIRMWARE, b->firmware);
    r->type = EF_REPLY_INFO;
    r->length = EF_INFO_BYTES;
    return 0;
}

static int on_load_begin(ef_board *b, const uint8_t *p, reply *r)
{
    uint32_t total = get_u32(p + EF_LOAD_BEGIN_AT_TOTAL), crc = get_u32(p + EF_LOAD_BEGIN_AT_CRC);
    if (total > b->image_capacity)
        return refuse(r, EF_ERROR_NO_MEMORY, total, "the model cannot fit this board's RAM");
    if (!b->loading || b->load_bytes != total || b->load_crc != crc) {
        b->loading = 1;
        b->load_bytes = total;
        b->load_crc = crc;
        b->received = 0;
    }
    return ok(r, b->received);             /* the same image again: the host goes on from here */
}

/* Chunks are written into the model's own buffer: from the first one on, the board holds no model. */
static int on_load_chunk(ef_board *b, const uint8_t *p, uint32_t n, reply *r)
{
    if (!b->loading)
        return refuse(r, EF_ERROR_BAD_STATE, 0, "LOAD_CHUNK without LOAD_BEGIN");
    uint32_t offset = get_u32(p);
    n -= EF_OFFSET_BYTES;
    if (offset > b->received || offset + n > b->load_bytes || offset + n < offset)
        return refuse(r, EF_ERROR_BAD_RANGE, b->received, "chunk outside the bytes received so far or the image");
    b->loaded = b->configured = 0;
    b->run_id = 0;
    for (uint32_t i = 0; i < n; ++i)
        b->image[offset + i] = p[EF_OFFSET_BYTES + i];
    if (offset + n > b->received)
        b->received = offset + n;
    return ok(r, b->received);
}

static int on_load_end(ef_board *b, reply *r)
{
    if (!b->loading) {                     /* a repeated LOAD_END after success: answered as before */
        if (b->loaded)
            return ok(r, b->image_bytes);
        return refuse(r, EF_ERROR_BAD_STATE, 0, "LOAD_END without LOAD_BEGIN");
    }
    b->loading = 0;
    if (b->received != b->load_bytes || ef_crc32(0, b->image, b->load_bytes) != b->load_crc) {
        ef_board_boot(b);                  /* back to the last checkpoint */
        return refuse(r, EF_ERROR_BAD_MODEL, 0, "image incomplete or its CRC differs; load it again");
    }
    if (!install(b, b->load_bytes, r)) {
        reply keep = *r;
        ef_board_boot(b);
        *r = keep;
        return 0;
    }
    if (b->storage && !checkpoint(b, r))
        return 0;
    return ok(r, b->load_bytes);
}

static int on_configure(ef_board *b, const uint8_t *p, reply *r)
{
    if (!b->loaded)
        return refuse(r, EF_ERROR_BAD_STATE, 0, "no model loaded");
    int same = b->configured;
    for (uint32_t i = 0; i < EF_CONFIGURE_BYTES && same; ++i)
        same = b->configuration[i] == p[i];
    if (same)
        return ok(r, b->applied);          /* a repeat: training continues where it is */
    if (b->trained_since_install)
        return refuse(r, EF_ERROR_BAD_STATE, b->applied, "samples were applied since the model was loaded; load it "
                                                "again to start another run");
    if (!configure(b, p, r))
        return 0;
    if (b->storage && !checkpoint(b, r))
        return 0;
    return ok(r, 0);
}

/* slot i's record; its bitmap of received bytes follows it */
static uint8_t *slot_record(const ef_board *b, uint32_t i)
{
    uint32_t size = b->record_bytes;
    return b->slots + i * (size + (size + 7u) / 8u);
}

static int staged(ef_board *b, uint32_t i, reply *r)
{
    uint32_t size = b->record_bytes, missing = 0;
    const uint8_t *bits = slot_record(b, i) + size;
    while (missing < size && (bits[missing / 8u] >> (missing % 8u) & 1u))
        ++missing;
    r->type = EF_REPLY_STAGED;
    put_u32(r->payload + EF_STAGED_AT_APPLIED, b->applied);
    put_u32(r->payload + EF_STAGED_AT_HELD, b->slot_held[i]);
    put_u32(r->payload + EF_STAGED_AT_MISSING, missing);
    r->length = EF_STAGED_BYTES;
    return 0;
}

/* Bytes of a sample's record at an offset, into its slot, in any order (board.py's _on_stage says why). */
static int on_stage(ef_board *b, const uint8_t *p, uint32_t n, reply *r)
{
    if (!b->loaded)
        return refuse(r, EF_ERROR_BAD_STATE, 0, "no model loaded");
    uint32_t index = get_u32(p + EF_STAGE_AT_INDEX), offset = get_u32(p + EF_STAGE_AT_OFFSET);
    uint32_t size = b->record_bytes, i = index % EF_STAGING_SLOTS;
    n -= EF_STAGE_BYTES;
    if (offset + n > size || offset + n < offset)
        return refuse(r, EF_ERROR_BAD_RANGE, size, "stage outside the record");
    if (index < b->applied) {              /* applied already: a late resend, ignored */
        r->type = EF_REPLY_STAGED;
        put_u32(r->payload + EF_STAGED_AT_APPLIED, b->applied);
        put_u32(r->payload + EF_STAGED_AT_HELD, 0);
        put_u32(r->payload + EF_STAGED_AT_MISSING, 0);
        r->length = EF_STAGED_BYTES;
        return 0;
    }
    if (index - b->applied >= EF_STAGING_SLOTS)
        return refuse(r, EF_ERROR_SEQUENCE, b->applied, "a sample staged too far ahead of the ones applied");
    uint8_t *record = slot_record(b, i), *bits = record + size;
    if (b->slot_tag[i] != index) {         /* it held an earlier sample: start over for this one */
        for (uint32_t k = 0; k < size + (size + 7u) / 8u; ++k)
            record[k] = 0;
        b->slot_tag[i] = index;
        b->slot_held[i] = 0;
    }
    for (uint32_t k = 0; k < n; ++k) {
        uint32_t at = offset + k;
        record[at] = p[EF_STAGE_BYTES + k];
        if (!(bits[at / 8u] >> (at % 8u) & 1u)) {
            bits[at / 8u] = (uint8_t)(bits[at / 8u] | 1u << (at % 8u));
            ++b->slot_held[i];
        }
    }
    return staged(b, i, r);
}

/* the record staged as sample `index`, checked against the CRC the host sent; a whole record with another
 * CRC empties its slot (board.py's _staged_record says why) */
static uint8_t *staged_record(ef_board *b, uint32_t index, uint32_t crc, reply *r)
{
    uint32_t size = b->record_bytes, i = index % EF_STAGING_SLOTS;
    /* an empty slot's tag is no sample's, though INFER may name any index */
    uint32_t held = b->slot_tag[i] == index && index != EF_EMPTY_SLOT ? b->slot_held[i] : 0u;
    uint8_t *record = slot_record(b, i);
    if (held != size || ef_crc32(0, record, size) != crc) {
        if (held == size)
            b->slot_tag[i] = EF_EMPTY_SLOT;
        refuse(r, EF_ERROR_BAD_SAMPLE, held, "staged sample incomplete or its CRC differs; stage it again");
        return 0;
    }
    uint8_t label = record[0], negative = record[1];
    uint32_t detail = (uint32_t)label << 8 | negative;
    /* the record arrived intact, so its content is wrong: BAD_RANGE, which no restaging can mend */
    if (label >= b->n_classes || (negative != EF_NO_NEGATIVE && negative >= b->n_classes)) {
        refuse(r, EF_ERROR_BAD_RANGE, detail, "a label outside the model's classes");
        return 0;
    }
    if (b->format == LAYERED && negative != EF_NO_NEGATIVE) {
        refuse(r, EF_ERROR_BAD_RANGE, detail, "a CwC step takes no negative label (send 0xFF)");
        return 0;
    }
    if (negative == label) {
        refuse(r, EF_ERROR_BAD_RANGE, detail, "the negative label equals the label");
        return 0;
    }
    return record;
}

/* One training step on a whole record; returns whether the decision before the update was right, with the
 * image's state (step, collaboration strengths) written back. */
static int32_t train_ff(ef_board *b, const uint8_t *record)
{
    ef_ff_trainer *t = &b->model.ff.trainer;
    const uint8_t *image = record + 2;
    int32_t label = record[0], negative = record[1];
    int64_t scores[256];
    if (negative == EF_NO_NEGATIVE)
        negative = b->hard_negatives ? ef_ff_hardest_negative_label(t, image, label, scores)
                                     : ef_random_negative_label(t->seed, t->step, label, t->n_classes);
    int32_t correct = ef_ff_train_step(t, image, label, negative);
    ef_image_store_state(b->image, &b->model.ff.layout, t);
    return correct;
}

static int32_t train_cwc(ef_board *b, uint8_t *record)
{
    ef_cwc_model *m = &b->model.cwc.model;
    int32_t correct = ef_cwc_train_step(m, record + 2, record[0]);
    ef_cwc_restore_image(m, record + 2);   /* the record stays as staged: INFER may name it */
    ef_cwc_image_store_state(b->image, m);
    return correct;
}

static int on_train(ef_board *b, const uint8_t *p, reply *r)
{
    if (!b->loaded || !b->configured)
        return refuse(r, EF_ERROR_BAD_STATE, 0, "no model loaded and configured");
    uint32_t index = get_u32(p + EF_TRAIN_AT_INDEX);
    r->type = EF_REPLY_TRAINED;
    r->length = EF_TRAINED_BYTES;
    if (index < b->applied) {              /* already applied: not again */
        put_u32(r->payload + EF_TRAINED_AT_APPLIED, b->applied);
        r->payload[EF_TRAINED_AT_CORRECT] = 0;
        r->payload[EF_TRAINED_AT_DUPLICATE] = 1;
        return 0;
    }
    if (index > b->applied)
        return refuse(r, EF_ERROR_SEQUENCE, b->applied, "a sample ahead of the ones applied");
    uint8_t *record = staged_record(b, index, get_u32(p + EF_TRAIN_AT_CRC), r);
    if (record == 0)
        return 0;
    uint32_t start = b->ticks();
    int32_t correct = b->format == LAYERED ? train_cwc(b, record) : train_ff(b, record);
    uint32_t elapsed = b->ticks() - start + b->compute_ticks_left;   /* 32-bit division only */
    b->compute_us += elapsed / b->ticks_per_us;
    b->compute_ticks_left = elapsed % b->ticks_per_us;
    b->trained_since_install = 1;
    b->applied += 1;
    b->correct += (uint32_t)correct;
    b->recent[b->recent_next] = (uint8_t)correct;
    b->recent_next = (b->recent_next + 1) % EF_RECENT;
    if (b->recent_n < EF_RECENT)
        b->recent_n += 1;
    put_u32(r->payload + EF_TRAINED_AT_APPLIED, b->applied);
    r->payload[EF_TRAINED_AT_CORRECT] = (uint8_t)correct;
    r->payload[EF_TRAINED_AT_DUPLICATE] = 0;
    return 0;
}

static int on_infer(ef_board *b, const uint8_t *p, reply *r)
{
    if (!b->loaded)
        return refuse(r, EF_ERROR_BAD_STATE, 0, "no model loaded");
    uint8_t *record = staged_record(b, get_u32(p + EF_INFER_AT_INDEX), get_u32(p + EF_INFER_AT_CRC), r);
    if (record == 0)
        return 0;
    int64_t scores[256];
    int8_t logits[256];
    uint8_t *image = record + 2;
    int32_t n = (int32_t)b->n_classes, decision, one_pass;
    if (b->format == LAYERED) {            /* the decision and the head's class in one pass */
        decision = ef_cwc_infer(&b->model.cwc.model, &b->head, image, scores, logits, &one_pass);
        ef_cwc_restore_image(&b->model.cwc.model, image);
    } else {
        ef_ff_trainer *t = &b->model.ff.trainer;
        decision = ef_ff_multi_pass(t, image, b->model.ff.layout.eval_mask, scores);
        one_pass = ef_ff_one_pass(t, &b->head, image, logits);
    }
    r->payload[EF_SCORES_AT_MULTI_PASS] = (uint8_t)decision;
    r->payload[EF_SCORES_AT_ONE_PASS] = (uint8_t)one_pass;
    for (int32_t c = 0; c < n; ++c)
        put_u32(r->payload + EF_SCORES_BYTES + 4 * c, (uint32_t)(int32_t)(scores[c] > INT32_MAX ? INT32_MAX
                                                            : scores[c] < INT32_MIN ? INT32_MIN : scores[c]));
    r->type = EF_REPLY_SCORES;
    r->length = EF_SCORES_BYTES + 4u * (uint32_t)n;
    return 0;
}

static int on_metrics(ef_board *b, reply *r)
{
    uint8_t *o = r->payload;
    uint32_t recent = 0;
    for (uint32_t i = 0; i < b->recent_n; ++i)
        recent += b->recent[i];
    uint64_t us = b->compute_us;
    put_u32(o + EF_METRICS_AT_APPLIED, b->applied);
    put_u32(o + EF_METRICS_AT_CORRECT, b->correct);
    put_u32(o + EF_METRICS_AT_RECENT_CORRECT, recent);
    put_u32(o + EF_METRICS_AT_RECENT_N, b->recent_n);
    put_u32(o + EF_METRICS_AT_COMPUTE_US, (uint32_t)us);             /* a u64, little-endian */
    put_u32(o + EF_METRICS_AT_COMPUTE_US + 4, (uint32_t)(us >> 32));
    put_u32(o + EF_METRICS_AT_FRAMES_OK, b->frames_ok);
    put_u32(o + EF_METRICS_AT_FRAMES_BAD, b->frames_bad);
    put_u32(o + EF_METRICS_AT_ERRORS_SENT, b->errors_sent);
    r->type = EF_REPLY_METRICS;
    r->length = EF_METRICS_BYTES;
    return 0;
}

static int on_read(ef_board *b, const uint8_t *p, reply *r)
{
    if (!b->loaded)
        return refuse(r, EF_ERROR_BAD_STATE, 0, "no model loaded");
    uint32_t offset = get_u32(p + EF_READ_AT_OFFSET), bytes = b->image_bytes;
    uint32_t length = (uint32_t)p[EF_READ_AT_LENGTH] | (uint32_t)p[EF_READ_AT_LENGTH + 1] << 8;
    if (offset > bytes || length > b->max_payload - EF_DATA_BYTES)
        return refuse(r, EF_ERROR_BAD_RANGE, bytes, "read outside the image or longer than a frame");
    put_u32(r->payload + EF_DATA_AT_OFFSET, offset);
    put_u32(r->payload + EF_DATA_AT_TOTAL, bytes);
    r->type = EF_REPLY_DATA;
    r->length = EF_DATA_BYTES;
    r->data = b->image + offset;
    r->data_length = length < bytes - offset ? length : bytes - offset;
    return 0;
}

static void dispatch(ef_board *b, const ef_frame *f, reply *r)
{
    const uint8_t *p = f->payload;
    switch (f->type) {
    case EF_REQUEST_HELLO: on_hello(b, p, r); break;
    case EF_REQUEST_LOAD_BEGIN: on_load_begin(b, p, r); break;
    case EF_REQUEST_LOAD_CHUNK: on_load_chunk(b, p, f->payload_length, r); break;
    case EF_REQUEST_LOAD_END: on_load_end(b, r); break;
    case EF_REQUEST_CONFIGURE: on_configure(b, p, r); break;
    case EF_REQUEST_STAGE: on_stage(b, p, f->payload_length, r); break;
    case EF_REQUEST_TRAIN: on_train(b, p, r); break;
    case EF_REQUEST_INFER: on_infer(b, p, r); break;
    case EF_REQUEST_METRICS: on_metrics(b, r); break;
    case EF_REQUEST_READ: on_read(b, p, r); break;
    case EF_REQUEST_CHECKPOINT:
        if (checkpoint(b, r))
            ok(r, b->applied);
        break;
    case EF_REQUEST_RESTORE:               /* back to the last checkpoint; the link and its counters stay */
        ef_board_boot(b);
        ok(r, b->applied);
        break;
    default:                               /* RESET: the counters go, the checkpoint comes back, then a reboot */
        b->frames_ok = b->frames_bad = b->errors_sent = 0;
        ef_board_boot(b);
        ok(r, b->applied);
        b->reboot = 1;
        break;
    }
}

static uint32_t encode(ef_board *b, uint16_t seq, reply *r, uint8_t *out)
{
    if (r->error) {
        ++b->errors_sent;
        uint32_t n = 5, room = b->max_payload;
        r->payload[EF_ERROR_AT_CODE] = r->error;
        put_u32(r->payload + EF_ERROR_AT_DETAIL, r->detail);
        for (const char *m = r->message; *m && n < room; ++m)
            r->payload[n++] = (uint8_t)*m;
        return ef_frame_encode(EF_REPLY_ERROR, seq, r->payload, n, out);
    }
    if (r->data_length) {                  /* DATA: the header and the image bytes in one frame */
        for (uint32_t i = 0; i < r->data_length; ++i)
            r->payload[r->length + i] = r->data[i];
        r->length += r->data_length;
    }
    return ef_frame_encode(r->type, seq, r->payload, r->length, out);
}

uint32_t ef_board_reply(ef_board *b, int status, const ef_frame *f, uint8_t *out)
{
    reply *r = &current;
    r->error = 0;
    r->data_length = 0;
    if (status != EF_FRAME_OK) {
        uint8_t reason = (uint8_t)(status - 1);   /* EF_FRAME_BAD_COBS.. are the NAK reasons + 1 */
        ++b->frames_bad;
        return ef_frame_encode(EF_REPLY_NAK, EF_NAK_SEQ, &reason, 1, out);
    }
    ++b->frames_ok;
    if (f->type < EF_REQUEST_HELLO || f->type > EF_LAST_REQUEST)
        refuse(r, EF_ERROR_UNKNOWN_TYPE, f->type, "unknown request type");
    else if (request_bytes[f->type] >= 0 ? f->payload_length != (uint32_t)request_bytes[f->type]
                                         : f->payload_length < (uint32_t)-request_bytes[f->type] + 1u)
        refuse(r, EF_ERROR_BAD_LENGTH, f->payload_length, "wrong payload length for this request");
    else
        dispatch(b, f, r);
    return encode(b, f->seq, r, out);
}
